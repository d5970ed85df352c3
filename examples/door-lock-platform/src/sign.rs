//! The command signature: HMAC-SHA256 with the lock's secret over
//! `action|nonce_str|process_id|ts` (fields in alphabetical order, `|`-joined, `ts` in
//! decimal seconds), hex-encoded and truncated to the first 16 hex characters (8 bytes),
//! as in the scenario's example command. The business app signs with it; the lock and
//! the auditor verify with it.

use hmac::{Hmac, Mac};
use sha2::Sha256;

use crate::envelope::Command;

/// Hex characters of a signature (8 bytes of the MAC).
pub const SIGN_HEX_LEN: usize = 16;

/// The exact bytes that are signed.
pub fn canonical(action: &str, nonce_str: &str, process_id: &str, ts: i64) -> String {
    format!("{action}|{nonce_str}|{process_id}|{ts}")
}

fn mac(secret: &str, action: &str, nonce_str: &str, process_id: &str, ts: i64) -> Hmac<Sha256> {
    // HMAC accepts keys of any length, so this cannot fail.
    let mut mac = Hmac::<Sha256>::new_from_slice(secret.as_bytes()).expect("HMAC takes any key length");
    mac.update(canonical(action, nonce_str, process_id, ts).as_bytes());
    mac
}

/// The `sign` field for these command fields.
pub fn sign(secret: &str, action: &str, nonce_str: &str, process_id: &str, ts: i64) -> String {
    let tag = mac(secret, action, nonce_str, process_id, ts).finalize().into_bytes();
    hex::encode(&tag[..SIGN_HEX_LEN / 2])
}

/// Does `command.sign` match its other fields under `secret`? Compared in constant time.
pub fn verify(secret: &str, command: &Command) -> bool {
    let Ok(given) = hex::decode(&command.sign) else {
        return false;
    };
    given.len() == SIGN_HEX_LEN / 2
        && mac(secret, &command.action, &command.nonce_str, &command.process_id, command.ts).verify_truncated_left(&given).is_ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn command(secret: &str) -> Command {
        Command {
            process_id: "7802441525528958".into(),
            action: "unlock".into(),
            nonce_str: "u7u4p0n8".into(),
            ts: 1574744434,
            sign: sign(secret, "unlock", "u7u4p0n8", "7802441525528958", 1574744434),
        }
    }

    #[test]
    fn signature_is_sixteen_hex_chars_of_hmac_sha256() {
        // Computed independently: printf 'unlock|u7u4p0n8|7802441525528958|1574744434' |
        //   openssl dgst -sha256 -hmac secret-1, first 16 hex characters.
        let signed = command("secret-1");
        assert_eq!(signed.sign, "bd8cce44e3eae878");
        assert!(verify("secret-1", &signed));
    }

    #[test]
    fn any_changed_field_or_secret_fails_verification() {
        let signed = command("secret-1");
        assert!(!verify("secret-2", &signed));
        assert!(!verify("secret-1", &Command { ts: signed.ts + 1, ..signed.clone() }));
        assert!(!verify("secret-1", &Command { process_id: "1".into(), ..signed.clone() }));
        assert!(!verify("secret-1", &Command { nonce_str: "x".into(), ..signed.clone() }));
        assert!(!verify("secret-1", &Command { sign: "zz".into(), ..signed.clone() }));
        assert!(!verify("secret-1", &Command { sign: signed.sign[..8].into(), ..signed }));
    }
}
