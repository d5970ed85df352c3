//! Who may connect: usernames with salted argon2 password hashes, from a TOML file.
//!
//! ```toml
//! [users]
//! business-app = "$argon2id$v=19$m=19456,t=2,p=1$..."
//! ```
//!
//! `hookline user add|remove|hash` writes it; the gateway re-reads it when it changes.

use std::collections::BTreeMap;
use std::path::Path;

use argon2::password_hash::rand_core::OsRng;
use argon2::password_hash::{PasswordHash, PasswordHasher, PasswordVerifier, SaltString};
use argon2::Argon2;
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct Credentials {
    /// Username -> argon2 hash in PHC string format.
    #[serde(default)]
    pub users: BTreeMap<String, String>,
}

impl Credentials {
    pub fn from_file(path: &Path) -> Result<Credentials, String> {
        let text = std::fs::read_to_string(path).map_err(|e| format!("cannot read credentials file {}: {e}", path.display()))?;
        let credentials: Credentials =
            toml::from_str(&text).map_err(|e| format!("credentials file {}: {}", path.display(), e.message()))?;
        for (user, hash) in &credentials.users {
            PasswordHash::new(hash).map_err(|e| {
                format!("credentials file {}: user {user:?}: not an argon2 hash ({e}); create it with `hookline user add`", path.display())
            })?;
        }
        Ok(credentials)
    }

    /// Writes the file atomically (temp file + rename), so the gateway never reads half.
    pub fn save(&self, path: &Path) -> anyhow::Result<()> {
        let text = toml::to_string(self)?;
        let tmp = path.with_extension("tmp");
        std::fs::write(&tmp, text)?;
        std::fs::rename(&tmp, path)?;
        Ok(())
    }

    /// A salted argon2id hash of `password` (PHC string).
    pub fn hash(password: &str) -> String {
        let salt = SaltString::generate(&mut OsRng);
        Argon2::default()
            .hash_password(password.as_bytes(), &salt)
            .expect("argon2 with default parameters hashes any password")
            .to_string()
    }

    /// Whether `password` is `username`'s. Slow on purpose (argon2); call it off the
    /// async threads.
    pub fn verify(&self, username: &str, password: &str) -> bool {
        let Some(hash) = self.users.get(username) else { return false };
        PasswordHash::new(hash).is_ok_and(|hash| Argon2::default().verify_password(password.as_bytes(), &hash).is_ok())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_hashed_password_verifies_and_a_wrong_one_does_not() {
        let mut credentials = Credentials::default();
        credentials.users.insert("app".into(), Credentials::hash("s3cret"));
        assert!(credentials.verify("app", "s3cret"));
        assert!(!credentials.verify("app", "s3cre"));
        assert!(!credentials.verify("nobody", "s3cret"));
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
