//! Logins verified recently, so a fleet reconnecting at once costs at most one password
//! hash per device per `auth.cache_ttl_s`.
//!
//! An entry is a keyed digest (HMAC-SHA256 under a key drawn at start, never stored)
//! of the user's stored hash and the password that matched it. It matches only while
//! the credentials file holds that same hash for the user: a changed password or a
//! removed user stops matching at once, without the cache hearing of it.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use argon2::password_hash::rand_core::{OsRng, RngCore};
use hmac::{Hmac, Mac};
use sha2::Sha256;
use subtle::ConstantTimeEq;

type Digest = [u8; 32];

pub struct LoginCache {
    key: [u8; 32],
    ttl: Duration,
    entries: Mutex<Entries>,
}

#[derive(Default)]
struct Entries {
    by_user: HashMap<String, (Digest, Instant)>,
    /// Size after the last sweep of expired entries: the next sweep comes when it doubles.
    swept_at: usize,
}

impl LoginCache {
    /// A cache keeping each login for `ttl`; zero keeps none.
    pub fn new(ttl: Duration) -> LoginCache {
        let mut key = [0u8; 32];
        OsRng.fill_bytes(&mut key);
        LoginCache { key, ttl, entries: Mutex::default() }
    }

    fn digest(&self, stored_hash: &str, password: &str) -> Digest {
        let mut mac = Hmac::<Sha256>::new_from_slice(&self.key).expect("HMAC takes a key of any length");
        mac.update(stored_hash.as_bytes());
        mac.update(&[0]);
        mac.update(password.as_bytes());
        mac.finalize().into_bytes().into()
    }

    /// Whether `user`, whose stored hash is `stored_hash`, logged in with `password`
    /// within the cache's lifetime.
    pub fn holds(&self, user: &str, stored_hash: &str, password: &str) -> bool {
        if self.ttl.is_zero() {
            return false;
        }
        let digest = self.digest(stored_hash, password);
        let entries = self.entries.lock().unwrap_or_else(|p| p.into_inner());
        entries.by_user.get(user).is_some_and(|(known, expires)| *expires > Instant::now() && bool::from(known.ct_eq(&digest)))
    }

    /// `password` was just verified against `user`'s `stored_hash`.
    pub fn insert(&self, user: &str, stored_hash: &str, password: &str) {
        if self.ttl.is_zero() {
            return;
        }
        let digest = self.digest(stored_hash, password);
        let now = Instant::now();
        let mut entries = self.entries.lock().unwrap_or_else(|p| p.into_inner());
        entries.by_user.insert(user.to_string(), (digest, now + self.ttl));
        if entries.by_user.len() >= 2 * entries.swept_at.max(1024) {
            entries.by_user.retain(|_, (_, expires)| *expires > now);
            entries.swept_at = entries.by_user.len();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_login_matches_only_with_the_same_stored_hash_and_password_within_its_lifetime() {
        let cache = LoginCache::new(Duration::from_secs(60));
        assert!(!cache.holds("lock-1", "$7$hash-a", "secret"));
        cache.insert("lock-1", "$7$hash-a", "secret");
        assert!(cache.holds("lock-1", "$7$hash-a", "secret"));
        assert!(!cache.holds("lock-1", "$7$hash-a", "other"), "another password");
        assert!(!cache.holds("lock-1", "$7$hash-b", "secret"), "the password was changed");
        assert!(!cache.holds("lock-2", "$7$hash-a", "secret"), "another user");

        let expired = LoginCache::new(Duration::from_nanos(1));
        expired.insert("lock-1", "$7$hash-a", "secret");
        std::thread::sleep(Duration::from_millis(1));
        assert!(!expired.holds("lock-1", "$7$hash-a", "secret"));
        let off = LoginCache::new(Duration::ZERO);
        off.insert("lock-1", "$7$hash-a", "secret");
        assert!(!off.holds("lock-1", "$7$hash-a", "secret"));
    }
}
