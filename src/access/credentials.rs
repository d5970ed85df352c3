//! Who may connect: usernames with salted password hashes (`hash`), from a TOML file, and
//! which client ids each user may connect as.
//!
//! ```toml
//! [users]
//! business-app = "$argon2id$v=19$m=19456,t=2,p=1$..."          # any client id
//! 10083618796833171 = { hash = "$7$101$...", client_ids = ["%u"] }  # only its own
//! ```
//!
//! A `client_ids` entry is an exact id, `%u` (the username itself) or a prefix ending in
//! `*`. `hookline user add|remove|hash|import` writes the file; the gateway re-reads it
//! when it changes.

use std::collections::BTreeMap;
use std::path::Path;

use serde::{Deserialize, Serialize};

use super::error::AccessError;
use super::hash;

#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct Credentials {
    /// Username -> its password hash, and the client ids it may use.
    #[serde(default)]
    pub users: BTreeMap<String, User>,
}

/// A user: its password hash alone (any client id), or with the client ids it may use.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize)]
#[serde(untagged)]
pub enum User {
    Any(String),
    Bound(BoundUser),
}

#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct BoundUser {
    /// Password hash (`hash`): argon2 PHC string, or Mosquitto's `$7$` or `$6$`.
    pub hash: String,
    /// Client ids this user may connect as: exact, `%u` for the username, or `prefix*`.
    pub client_ids: Vec<String>,
}

impl User {
    /// A user with `hash`, bound to `client_ids` unless that is empty.
    pub fn new(hash: String, client_ids: Vec<String>) -> User {
        match client_ids.is_empty() {
            true => User::Any(hash),
            false => User::Bound(BoundUser { hash, client_ids }),
        }
    }

    pub fn hash(&self) -> &str {
        match self {
            User::Any(hash) => hash,
            User::Bound(bound) => &bound.hash,
        }
    }

    /// Whether this user (named `username`) may connect as `client_id`.
    pub fn may_use(&self, username: &str, client_id: &str) -> bool {
        let User::Bound(bound) = self else { return true };
        bound.client_ids.iter().any(|pattern| match pattern.as_str() {
            "%u" => client_id == username,
            p => match p.strip_suffix('*') {
                Some(prefix) => client_id.starts_with(prefix),
                None => client_id == p,
            },
        })
    }
}

/// Why a login was refused, as the CONNACK tells it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LoginRefused {
    /// Unknown user, wrong password, or a token that does not verify (MQTT 3.1.1 code 4,
    /// MQTT 5 0x86).
    BadCredentials,
    /// The login is valid but may not be used here: no username where one is needed,
    /// or a client id the user or token is not bound to (code 5, 0x87).
    NotAuthorized,
    /// The login could not be checked now: the checks' queue is full (code 3, 0x89).
    Busy,
}

impl Credentials {
    pub fn from_file(path: &Path) -> Result<Credentials, String> {
        let text = std::fs::read_to_string(path).map_err(|e| format!("cannot read credentials file {}: {e}", path.display()))?;
        let credentials: Credentials =
            toml::from_str(&text).map_err(|e| format!("credentials file {}: {}", path.display(), e.message()))?;
        for (user, entry) in &credentials.users {
            hash::check(entry.hash()).map_err(|e| {
                format!(
                    "credentials file {}: user {user:?}: {e}; create it with `hookline user add` or `hookline user import`",
                    path.display()
                )
            })?;
        }
        Ok(credentials)
    }

    /// Writes the file atomically (temp file + rename), so the gateway never reads half.
    pub fn save(&self, path: &Path) -> Result<(), AccessError> {
        let text = toml::to_string(self)?;
        let tmp = path.with_extension("tmp");
        std::fs::write(&tmp, text).map_err(AccessError::WriteTemporary)?;
        std::fs::rename(&tmp, path).map_err(AccessError::Replace)?;
        Ok(())
    }

    /// Checks a login: the password, then whether the user may use `client_id`. As slow
    /// as the user's hash (argon2: on purpose); call it off the async threads.
    pub fn login(&self, username: &str, password: &str, client_id: &str) -> Result<(), LoginRefused> {
        let Some(user) = self.users.get(username) else { return Err(LoginRefused::BadCredentials) };
        if !hash::verify(user.hash(), password) {
            return Err(LoginRefused::BadCredentials);
        }
        match user.may_use(username, client_id) {
            true => Ok(()),
            false => Err(LoginRefused::NotAuthorized),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    use crate::access::hash::HashKind;

    #[test]
    fn a_hashed_password_verifies_and_a_wrong_one_does_not() {
        let mut credentials = Credentials::default();
        credentials.users.insert("app".into(), User::Any(hash::hash(HashKind::Pbkdf2, "s3cret")));
        assert_eq!(credentials.login("app", "s3cret", "any"), Ok(()));
        assert_eq!(credentials.login("app", "s3cre", "any"), Err(LoginRefused::BadCredentials));
        assert_eq!(credentials.login("nobody", "s3cret", "any"), Err(LoginRefused::BadCredentials));
    }

    #[test]
    fn a_bound_user_may_connect_only_as_its_client_ids() {
        let text = format!(
            "[users]\nlock-1 = {{ hash = \"{}\", client_ids = [\"%u\"] }}\napp = {{ hash = \"{}\", client_ids = [\"app-*\", \"console\"] }}\n",
            hash::hash(HashKind::Argon2id, "p1"),
            hash::hash(HashKind::Pbkdf2, "p2")
        );
        let credentials: Credentials = toml::from_str(&text).unwrap();
        assert_eq!(credentials.login("lock-1", "p1", "lock-1"), Ok(()));
        assert_eq!(credentials.login("lock-1", "p1", "lock-2"), Err(LoginRefused::NotAuthorized));
        assert_eq!(credentials.login("lock-1", "p2", "lock-1"), Err(LoginRefused::BadCredentials));
        assert_eq!(credentials.login("app", "p2", "app-7"), Ok(()));
        assert_eq!(credentials.login("app", "p2", "console"), Ok(()));
        assert_eq!(credentials.login("app", "p2", "lock-1"), Err(LoginRefused::NotAuthorized));
    }

    #[test]
    fn a_plain_text_password_in_the_file_is_refused_with_the_fix() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("users.toml");
        std::fs::write(&path, "[users]\napp = \"plain\"\n").unwrap();
        let err = Credentials::from_file(&path).unwrap_err();
        assert!(err.contains("hookline user add"), "{err}");
    }
}
