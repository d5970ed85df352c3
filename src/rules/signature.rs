//! Optional signed rules: with `rules.public_key` set, a rule is loaded only if the
//! detached ed25519 signature beside it (`<module file>.sig`, hex) verifies over the
//! module's bytes followed by its settings file's bytes (if any). Write access to the
//! rules directory alone then cannot change routing.

use std::path::{Path, PathBuf};

use ed25519_dalek::{Signature, Signer, SigningKey, Verifier, VerifyingKey};

/// Where the signature of `module` lives: `foo.wasm` -> `foo.wasm.sig`.
pub fn signature_path(module: &Path) -> PathBuf {
    let mut name = module.as_os_str().to_owned();
    name.push(".sig");
    PathBuf::from(name)
}

fn read_hex<const N: usize>(path: &Path, what: &str) -> Result<[u8; N], String> {
    let text = std::fs::read_to_string(path).map_err(|e| format!("cannot read {what} {}: {e}", path.display()))?;
    let bytes = hex::decode(text.trim()).map_err(|e| format!("{what} {}: not hex ({e})", path.display()))?;
    bytes.try_into().map_err(|b: Vec<u8>| format!("{what} {}: {} bytes, expected {N}", path.display(), b.len()))
}

pub fn read_public_key(path: &Path) -> Result<VerifyingKey, String> {
    let bytes = read_hex::<32>(path, "public key")?;
    VerifyingKey::from_bytes(&bytes).map_err(|e| format!("public key {}: {e}", path.display()))
}

pub fn read_private_key(path: &Path) -> Result<SigningKey, String> {
    Ok(SigningKey::from_bytes(&read_hex::<32>(path, "private key")?))
}

/// Checks the signature beside `module_path` over `module` + `settings`.
pub fn verify(key: &VerifyingKey, module_path: &Path, module: &[u8], settings: &[u8]) -> Result<(), String> {
    let sig_path = signature_path(module_path);
    if !sig_path.exists() {
        return Err(format!(
            "unsigned: {} is missing (rules.public_key is set, so every rule must be signed: `hookline rule sign`)",
            sig_path.display()
        ));
    }
    let signature = Signature::from_bytes(&read_hex::<64>(&sig_path, "signature")?);
    key.verify(&[module, settings].concat(), &signature).map_err(|_| {
        format!("signature {} does not match the module and its settings (tampered, or signed with another key)", sig_path.display())
    })
}

/// Signs `module` + `settings` and writes the signature beside the module.
pub fn sign(key: &SigningKey, module_path: &Path, module: &[u8], settings: &[u8]) -> std::io::Result<PathBuf> {
    let signature = key.sign(&[module, settings].concat());
    let sig_path = signature_path(module_path);
    std::fs::write(&sig_path, hex::encode(signature.to_bytes()) + "\n")?;
    Ok(sig_path)
}

/// A new key pair, as hex text: (private, public).
pub fn generate() -> (String, String) {
    let key = SigningKey::generate(&mut rand_core::OsRng);
    (hex::encode(key.to_bytes()), hex::encode(key.verifying_key().to_bytes()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn signed_rules_verify_and_any_change_breaks_them() {
        let dir = tempfile::tempdir().unwrap();
        let (private, public) = generate();
        std::fs::write(dir.path().join("k.key"), &private).unwrap();
        std::fs::write(dir.path().join("k.pub"), &public).unwrap();
        let signing = read_private_key(&dir.path().join("k.key")).unwrap();
        let verifying = read_public_key(&dir.path().join("k.pub")).unwrap();
        let module = dir.path().join("r.wasm");
        assert!(verify(&verifying, &module, b"mod", b"").unwrap_err().starts_with("unsigned"));
        sign(&signing, &module, b"mod", b"topic = \"a\"").unwrap();
        verify(&verifying, &module, b"mod", b"topic = \"a\"").unwrap();
        assert!(verify(&verifying, &module, b"mod", b"topic = \"b\"").unwrap_err().contains("does not match"));
        assert!(verify(&verifying, &module, b"mud", b"topic = \"a\"").is_err());
    }
}
