//! `[auth]` and `[auth.jwt]`: who may connect, and which topics each client may use.

use std::path::PathBuf;

use serde::{Deserialize, Serialize};

/// Client authentication and topic access control.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct AuthConfig {
    /// Let clients connect without a username (warned about at start).
    pub anonymous: bool,
    /// TOML file of users and their password hashes (argon2id, or Mosquitto's `$7$`
    /// PBKDF2), written by `hookline user add` and `hookline user import`.
    /// Default: absent: no users
    #[serde(skip_serializing_if = "Option::is_none")]
    pub credentials: Option<PathBuf>,
    /// Access-control list file, e.g. `examples/door-locks.acl`; default deny when set.
    /// Default: absent: no ACL, every client may use every topic
    #[serde(skip_serializing_if = "Option::is_none")]
    pub acl: Option<PathBuf>,
    /// Threads that check passwords and tokens, apart from the MQTT connections; 0: one
    /// per CPU core. An argon2id check holds 19 MiB while it runs.
    pub check_threads: usize,
    /// Logins waiting for a checking thread, at most; a CONNECT beyond them, or one that
    /// would wait longer than half of `broker.connect_timeout_ms`, is refused with CONNACK
    /// "server busy" (counted in `mqtt_refused_login_busy`).
    pub check_queue: usize,
    /// Seconds a verified login is remembered (a keyed digest, in memory), so a client
    /// logging in again costs no hash; a changed password or a removed user stops
    /// matching at once. 0: every login is checked.
    pub cache_ttl_s: u64,
    /// JSON Web Tokens as logins, sent as the MQTT password (see `docs/access-control.md`).
    pub jwt: JwtConfig,
}

impl Default for AuthConfig {
    fn default() -> Self {
        AuthConfig {
            anonymous: false,
            credentials: None,
            acl: None,
            check_threads: 0,
            check_queue: 1024,
            cache_ttl_s: 3600,
            jwt: JwtConfig::default(),
        }
    }
}

/// JSON Web Tokens as logins: on when one of `public_key`, `secret_file` and `jwks` is
/// set. A token must verify, be within its `exp` and `nbf`, and name the client id in
/// `client_id_claim`; the client then logs in as that name.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct JwtConfig {
    /// PEM file of the public key tokens are signed with: RSA (RS256/384/512,
    /// PS256/384/512), EC P-256 or P-384 (ES256, ES384) or Ed25519 (EdDSA).
    /// Default: absent
    #[serde(skip_serializing_if = "Option::is_none")]
    pub public_key: Option<PathBuf>,
    /// File holding the HMAC secret of HS256/384/512 tokens, its bytes as they are (one
    /// final newline dropped).
    /// Default: absent
    #[serde(skip_serializing_if = "Option::is_none")]
    pub secret_file: Option<PathBuf>,
    /// JWKS file, `{"keys": [...]}`; a token's `kid` picks its key.
    /// Default: absent
    #[serde(skip_serializing_if = "Option::is_none")]
    pub jwks: Option<PathBuf>,
    /// The claim that must equal the client id.
    pub client_id_claim: String,
    /// When set, the `iss` claim must equal it.
    /// Default: absent: not checked
    #[serde(skip_serializing_if = "Option::is_none")]
    pub issuer: Option<String>,
    /// When set, the `aud` claim must hold it.
    /// Default: absent: not checked
    #[serde(skip_serializing_if = "Option::is_none")]
    pub audience: Option<String>,
    /// Seconds of clock difference allowed when checking `exp` and `nbf`.
    pub leeway_s: u64,
}

impl Default for JwtConfig {
    fn default() -> Self {
        JwtConfig {
            public_key: None,
            secret_file: None,
            jwks: None,
            client_id_claim: "sub".into(),
            issuer: None,
            audience: None,
            leeway_s: 0,
        }
    }
}
