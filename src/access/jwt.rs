//! JSON Web Tokens as logins (`auth.jwt`), for fleets whose identities live elsewhere:
//! a device sends a token its platform signed as its MQTT password; the token's
//! signature, `exp` and `nbf` (and `iss`, `aud` when configured) are checked, and its
//! `auth.jwt.client_id_claim` must be the client id. The login's username is then that
//! identity, whatever the device sent as its username.
//!
//! The keys: one PEM public key (RSA, EC or Ed25519), an HMAC secret, or a JWKS file whose
//! keys a token picks by `kid`. Like the credentials file, they are re-read on change.

use std::path::Path;

use jsonwebtoken::jwk::JwkSet;
use jsonwebtoken::{Algorithm, DecodingKey, Validation};

use super::LoginRefused;
use crate::config::JwtConfig;

/// The verifying keys and the checks of `auth.jwt`.
pub struct Jwt {
    keys: Vec<Key>,
    client_id_claim: String,
    validation: Validation,
}

/// A key, the algorithms it verifies and, from a JWKS, its id.
struct Key {
    id: Option<String>,
    key: DecodingKey,
    algorithms: Vec<Algorithm>,
}

const RSA: [Algorithm; 6] = [Algorithm::RS256, Algorithm::RS384, Algorithm::RS512, Algorithm::PS256, Algorithm::PS384, Algorithm::PS512];
const EC: [Algorithm; 2] = [Algorithm::ES256, Algorithm::ES384];
const HMAC: [Algorithm; 3] = [Algorithm::HS256, Algorithm::HS384, Algorithm::HS512];

fn read(path: &Path, key: &str) -> Result<Vec<u8>, String> {
    std::fs::read(path).map_err(|e| format!("{key}: cannot read {}: {e}", path.display()))
}

impl Jwt {
    /// Reads the keys `config` names; `None` when it names none (JWT logins off).
    pub fn load(config: &JwtConfig) -> Result<Option<Jwt>, String> {
        let keys = match (&config.public_key, &config.secret_file, &config.jwks) {
            (None, None, None) => return Ok(None),
            (Some(path), None, None) => vec![public_key(&read(path, "auth.jwt.public_key")?, path)?],
            (None, Some(path), None) => {
                let mut secret = read(path, "auth.jwt.secret_file")?;
                if secret.ends_with(b"\n") {
                    secret.pop();
                }
                if secret.is_empty() {
                    return Err(format!("auth.jwt.secret_file: {} is empty", path.display()));
                }
                let key = DecodingKey::from_secret(&secret).map_err(|e| format!("auth.jwt.secret_file: {e}"))?;
                vec![Key { id: None, key, algorithms: HMAC.to_vec() }]
            }
            (None, None, Some(path)) => jwks(&read(path, "auth.jwt.jwks")?, path)?,
            _ => return Err("auth.jwt: set one of public_key, secret_file and jwks".to_string()),
        };
        let mut validation = Validation::new(Algorithm::RS256);
        validation.leeway = config.leeway_s;
        validation.validate_nbf = true;
        validation.validate_aud = config.audience.is_some();
        if let Some(audience) = &config.audience {
            validation.set_audience(&[audience]);
        }
        if let Some(issuer) = &config.issuer {
            validation.set_issuer(&[issuer]);
        }
        Ok(Some(Jwt { keys, client_id_claim: config.client_id_claim.clone(), validation }))
    }

    /// Whether `password` has the shape of a token (three base64url parts), so that a
    /// login with it is a JWT login.
    pub fn looks_like(password: &str) -> bool {
        let parts: Vec<&str> = password.split('.').collect();
        parts.len() == 3
            && parts[0].starts_with("eyJ")
            && parts.iter().all(|p| !p.is_empty() && p.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_'))
    }

    /// Checks `token` for `client_id`; the identity it names (the client id).
    pub fn verify(&self, token: &str, client_id: &str) -> Result<String, LoginRefused> {
        let header = jsonwebtoken::decode_header(token).map_err(|_| LoginRefused::BadCredentials)?;
        let candidates = self
            .keys
            .iter()
            .filter(|k| k.algorithms.contains(&header.alg))
            .filter(|k| header.kid.is_none() || k.id.is_none() || k.id == header.kid);
        let mut validation = self.validation.clone();
        validation.algorithms = vec![header.alg];
        let claims = candidates
            .filter_map(|k| jsonwebtoken::decode::<serde_json::Map<String, serde_json::Value>>(token, &k.key, &validation).ok())
            .map(|data| data.claims)
            .next()
            .ok_or(LoginRefused::BadCredentials)?;
        let identity = match claims.get(&self.client_id_claim) {
            Some(serde_json::Value::String(s)) => s.clone(),
            Some(serde_json::Value::Number(n)) => n.to_string(),
            _ => return Err(LoginRefused::NotAuthorized),
        };
        match identity == client_id {
            true => Ok(identity),
            false => Err(LoginRefused::NotAuthorized),
        }
    }
}

/// Reads a PEM public key of one kind.
type PemParser = fn(&[u8]) -> jsonwebtoken::errors::Result<DecodingKey>;

/// A PEM public key of any kind jsonwebtoken verifies with.
fn public_key(pem: &[u8], path: &Path) -> Result<Key, String> {
    let tries: [(PemParser, &[Algorithm]); 3] =
        [(DecodingKey::from_rsa_pem, &RSA), (DecodingKey::from_ec_pem, &EC), (DecodingKey::from_ed_pem, &[Algorithm::EdDSA])];
    tries
        .into_iter()
        .find_map(|(parse, algorithms)| parse(pem).ok().map(|key| Key { id: None, key, algorithms: algorithms.to_vec() }))
        .ok_or_else(|| format!("auth.jwt.public_key: {} holds no RSA, EC or Ed25519 public key in PEM", path.display()))
}

fn jwks(json: &[u8], path: &Path) -> Result<Vec<Key>, String> {
    let set: JwkSet = serde_json::from_slice(json).map_err(|e| format!("auth.jwt.jwks: {} is not a JWKS ({e})", path.display()))?;
    let mut keys = Vec::new();
    for jwk in &set.keys {
        let key = DecodingKey::from_jwk(jwk).map_err(|e| format!("auth.jwt.jwks: {}: a key it cannot use ({e})", path.display()))?;
        let algorithms = match jwk.common.key_algorithm.and_then(|a| a.to_string().parse::<Algorithm>().ok()) {
            Some(algorithm) => vec![algorithm],
            None => match &jwk.algorithm {
                jsonwebtoken::jwk::AlgorithmParameters::RSA(_) => RSA.to_vec(),
                jsonwebtoken::jwk::AlgorithmParameters::EllipticCurve(_) => EC.to_vec(),
                jsonwebtoken::jwk::AlgorithmParameters::OctetKeyPair(_) => vec![Algorithm::EdDSA],
                _ => HMAC.to_vec(),
            },
        };
        keys.push(Key { id: jwk.common.key_id.clone(), key, algorithms });
    }
    if keys.is_empty() {
        return Err(format!("auth.jwt.jwks: {} holds no key", path.display()));
    }
    Ok(keys)
}
