//! Password hashes, as the credentials file keeps them. Two kinds are written:
//!
//! - `argon2id` (PHC string, `$argon2id$...`): memory-hard, for passwords people choose.
//!   About 19 MiB and tens of milliseconds per check, on purpose.
//! - `pbkdf2` (Mosquitto's `$7$<iterations>$<salt>$<hash>`, PBKDF2-HMAC-SHA512): fast,
//!   for machine secrets. A random 128-bit device secret cannot be guessed whatever the
//!   hash; a memory-hard one would only make every reconnect expensive.
//!
//! Mosquitto's older `$6$<salt>$<hash>` (one salted SHA-512) is read too, so a
//! Mosquitto password file moves over as it is; re-issue those secrets when you can.
//!
//! An argon2 check's working memory is a mapping of its own, unmapped as the check
//! ends: from the allocator, the 19 MiB blocks of a login storm stayed resident (its
//! heaps kept them, a few times over), 185 MiB after 200 logins on two threads.

use argon2::password_hash::rand_core::{OsRng, RngCore};
use argon2::password_hash::{PasswordHash, PasswordHasher, SaltString};
use argon2::{Algorithm, Argon2, Block, Params};
use base64::engine::general_purpose::STANDARD;
use base64::Engine;
use sha2::{Digest, Sha512};
use subtle::ConstantTimeEq;

/// Iterations of the `pbkdf2` hashes written here: Mosquitto's own default.
const PBKDF2_ITERATIONS: u32 = 101;
const PBKDF2_SALT: usize = 12;
const PBKDF2_LEN: usize = 64;

/// How a new password is hashed (`hookline user add --hash`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum HashKind {
    /// Memory-hard (argon2id): for passwords people choose.
    Argon2id,
    /// Fast salted PBKDF2-HMAC-SHA512, Mosquitto's `$7$`: for random machine secrets
    /// of 128 bits or more.
    Pbkdf2,
}

/// A stored hash, parsed.
enum Stored<'a> {
    Argon2(PasswordHash<'a>),
    Pbkdf2 { iterations: u32, salt: Vec<u8>, hash: Vec<u8> },
    Sha512 { salt: Vec<u8>, hash: Vec<u8> },
}

fn parse(stored: &str) -> Result<Stored<'_>, String> {
    if stored.starts_with("$argon2") {
        return match PasswordHash::new(stored) {
            Ok(hash) if hash.salt.is_some() && hash.hash.is_some() => Ok(Stored::Argon2(hash)),
            Ok(_) => Err("not an argon2 hash (no salt or no hash)".to_string()),
            Err(e) => Err(format!("not an argon2 hash ({e})")),
        };
    }
    let b64 = |part: &str, what: &str| STANDARD.decode(part).map_err(|e| format!("the {what} is not base64 ({e})"));
    let parts: Vec<&str> = stored.split('$').collect();
    match parts.as_slice() {
        ["", "7", iterations, salt, hash] => {
            let iterations = iterations.parse().ok().filter(|i| *i > 0).ok_or("the iteration count is not a positive number")?;
            Ok(Stored::Pbkdf2 { iterations, salt: b64(salt, "salt")?, hash: b64(hash, "hash")? })
        }
        ["", "6", salt, hash] => Ok(Stored::Sha512 { salt: b64(salt, "salt")?, hash: b64(hash, "hash")? }),
        _ => Err("not a password hash hookline knows: `$argon2id$...`, or Mosquitto's `$7$...` or `$6$...`".to_string()),
    }
}

/// Checks that `stored` is a hash `verify` can use; the error says what is wrong.
pub fn check(stored: &str) -> Result<(), String> {
    parse(stored).map(|_| ())
}

/// A new salted hash of `password`.
pub fn hash(kind: HashKind, password: &str) -> String {
    match kind {
        HashKind::Argon2id => {
            let salt = SaltString::generate(&mut OsRng);
            Argon2::default()
                .hash_password(password.as_bytes(), &salt)
                .expect("argon2 with default parameters hashes any password")
                .to_string()
        }
        HashKind::Pbkdf2 => {
            let mut salt = [0u8; PBKDF2_SALT];
            OsRng.fill_bytes(&mut salt);
            let hash = pbkdf2_sha512(password, &salt, PBKDF2_ITERATIONS);
            format!("$7${PBKDF2_ITERATIONS}${}${}", STANDARD.encode(salt), STANDARD.encode(hash))
        }
    }
}

/// Whether `password` matches `stored`; false for a hash that does not parse. As slow as
/// the hash is (argon2: on purpose): call it off the async threads.
pub fn verify(stored: &str, password: &str) -> bool {
    match parse(stored) {
        Ok(Stored::Argon2(hash)) => verify_argon2(&hash, password).unwrap_or(false),
        Ok(Stored::Pbkdf2 { iterations, salt, hash }) => {
            let mut computed = vec![0u8; hash.len()];
            pbkdf2::pbkdf2_hmac::<Sha512>(password.as_bytes(), &salt, iterations, &mut computed);
            bool::from(computed.ct_eq(&hash))
        }
        Ok(Stored::Sha512 { salt, hash }) => {
            let computed = Sha512::new().chain_update(password.as_bytes()).chain_update(&salt).finalize();
            bool::from(computed.as_slice().ct_eq(&hash))
        }
        Err(_) => false,
    }
}

/// Computes the argon2 hash of `password` with `stored`'s parameters and salt, in memory
/// mapped for this check alone, and compares it with `stored`'s; `None` when `stored`
/// cannot be used.
fn verify_argon2(stored: &PasswordHash<'_>, password: &str) -> Option<bool> {
    let algorithm = Algorithm::try_from(stored.algorithm).ok()?;
    let version = stored.version.map_or(Some(argon2::Version::default()), |v| argon2::Version::try_from(v).ok())?;
    let params = Params::try_from(stored).ok()?;
    let mut salt = [0u8; 64];
    let salt = stored.salt?.decode_b64(&mut salt).ok()?;
    let expected = stored.hash?;
    let mut memory = memmap2::MmapMut::map_anon(params.block_count() * Block::SIZE).ok()?;
    // SAFETY: the mapping is page-aligned (Block asks 64), holds exactly `block_count`
    // blocks, is zero-filled (all zeros is a valid Block, plain u64s) and outlives the
    // slice, which is the only reference to it.
    let blocks = unsafe { std::slice::from_raw_parts_mut(memory.as_mut_ptr().cast::<Block>(), params.block_count()) };
    let mut computed = vec![0u8; expected.len()];
    Argon2::new(algorithm, version, params).hash_password_into_with_memory(password.as_bytes(), salt, &mut computed, blocks).ok()?;
    Some(bool::from(computed.as_slice().ct_eq(expected.as_bytes())))
}

fn pbkdf2_sha512(password: &str, salt: &[u8], iterations: u32) -> [u8; PBKDF2_LEN] {
    let mut hash = [0u8; PBKDF2_LEN];
    pbkdf2::pbkdf2_hmac::<Sha512>(password.as_bytes(), salt, iterations, &mut hash);
    hash
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn both_kinds_verify_their_password_and_no_other() {
        for kind in [HashKind::Argon2id, HashKind::Pbkdf2] {
            let stored = hash(kind, "s3cret");
            assert_eq!(check(&stored), Ok(()));
            assert!(verify(&stored, "s3cret"), "{kind:?}");
            assert!(!verify(&stored, "s3cre"), "{kind:?}");
        }
        assert!(hash(HashKind::Pbkdf2, "x").starts_with("$7$101$"));
    }

    /// Hashes `mosquitto_passwd` 2.0.11 (Debian) wrote for the password `lock-secret`.
    #[test]
    fn mosquitto_password_hashes_verify() {
        let pbkdf2 = "$7$101$Vgeb5twGzXXgyuIA$sUIZovx1Ymgo4CDrB7Onm6uSowS68dySOBrczff5NDx3LX06qx3rzjbj99N1JyqfivsY/C1/RjdC5qH2qCo0RQ==";
        let sha512 = "$6$JlS8VUQPNaRKYUXD$APya9DgKsrHrUsM6Z6bWSPsrxeI0B69UFWdn2ASKK90X24xQOXWmu1shgsyAKHgOdlBVMV58CiGuTHni7b8JqA==";
        for stored in [pbkdf2, sha512] {
            assert!(verify(stored, "lock-secret"), "{stored}");
            assert!(!verify(stored, "lock-secreT"), "{stored}");
        }
    }

    #[test]
    fn what_is_not_a_hash_is_refused_with_the_kinds_known() {
        for bad in ["plain", "$7$0$AA==$AA==", "$7$x$AA==$AA==", "$6$@@$AA==", "$argon2id$nope"] {
            assert!(check(bad).is_err(), "{bad}");
        }
        assert!(check("plain").unwrap_err().contains("`$7$...`"));
    }
}
