//! Logins that cannot exhaust the gateway: a flood beyond the login checks' queue is
//! refused with "server busy" (never closed unanswered), a login verified lately costs no
//! hash until its password changes or its user goes, and JSON Web Tokens minted by a
//! third-party library (PyJWT) log devices in by their client id.

use std::path::{Path, PathBuf};
use std::time::Duration;

use hookline::access::hash::{hash, HashKind};
use hookline::access::{Credentials, User};

use crate::support::raw_mqtt::{connect_with, RawClient};
use crate::support::scene::Scene;

/// The CONNACK code a CONNECT (MQTT `level`) with this login gets; `None`: closed
/// unanswered.
async fn connack(scene: &Scene, level: u8, client_id: &str, login: (&str, &str)) -> Option<u8> {
    let mut client = RawClient::open(scene.addr).await;
    client.send(&connect_with(level, client_id, true, &[], Some(login))).await;
    client.receive().await.filter(|(first, _)| *first == 0x20).and_then(|(_, body)| body.get(1).copied())
}

fn write_users(path: &Path, users: &[(&str, String, &[&str])]) {
    let mut credentials = Credentials::default();
    for (name, hashed, client_ids) in users {
        credentials.users.insert(name.to_string(), User::new(hashed.clone(), client_ids.iter().map(|c| c.to_string()).collect()));
    }
    credentials.save(path).unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_login_flood_beyond_the_check_queue_is_refused_as_server_busy() {
    let dir = tempfile::tempdir().unwrap();
    let users = dir.path().join("users.toml");
    write_users(&users, &[("app", hash(HashKind::Argon2id, "app-secret"), &[])]);
    let scene = Scene::start_with(&[], None, |config| {
        config.auth.anonymous = false;
        config.auth.credentials = Some(users.clone());
        config.auth.check_threads = 1;
        config.auth.check_queue = 2;
        // Every login is an argon2 check.
        config.auth.cache_ttl_s = 0;
    })
    .await;
    let flood: Vec<_> = (0..40)
        .map(|i| {
            let scene_addr = scene.addr;
            tokio::spawn(async move {
                let mut client = RawClient::open(scene_addr).await;
                client.send(&connect_with(4, &format!("app-{i}"), true, &[], Some(("app", "app-secret")))).await;
                client.receive().await.filter(|(first, _)| *first == 0x20).and_then(|(_, body)| body.get(1).copied())
            })
        })
        .collect();
    let mut codes = Vec::new();
    for client in flood {
        codes.push(client.await.unwrap());
    }
    let accepted = codes.iter().filter(|c| **c == Some(0)).count();
    let busy = codes.iter().filter(|c| **c == Some(3)).count();
    assert_eq!(accepted + busy, 40, "every CONNECT answered, accepted or server busy: {codes:?}");
    assert!(accepted >= 1 && busy >= 1, "{codes:?}");
    assert_eq!(scene.counter("mqtt_refused_login_busy"), busy as i64);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cached_login_stops_matching_when_its_password_changes_or_its_user_is_removed() {
    let dir = tempfile::tempdir().unwrap();
    let users = dir.path().join("users.toml");
    write_users(&users, &[("lock-1", hash(HashKind::Pbkdf2, "first"), &["%u"])]);
    let scene = Scene::start_with(&[], None, |config| {
        config.auth.anonymous = false;
        config.auth.credentials = Some(users.clone());
    })
    .await;
    assert_eq!(connack(&scene, 5, "lock-1", ("lock-1", "first")).await, Some(0));
    assert_eq!(connack(&scene, 5, "lock-1", ("lock-1", "first")).await, Some(0));
    assert_eq!((scene.counter("logins_checked"), scene.counter("logins_cached")), (1, 1), "the second login came from the cache");
    assert_eq!(connack(&scene, 5, "lock-2", ("lock-1", "first")).await, Some(0x87), "the cache keeps the client id binding");

    write_users(&users, &[("lock-1", hash(HashKind::Pbkdf2, "second"), &["%u"])]);
    assert_eq!(
        connack_becomes(&scene, "lock-1", ("lock-1", "first"), 0x86).await,
        Some(0x86),
        "the old password, once the file is read again"
    );
    assert_eq!(connack(&scene, 5, "lock-1", ("lock-1", "second")).await, Some(0));

    write_users(&users, &[]);
    assert_eq!(connack_becomes(&scene, "lock-1", ("lock-1", "second"), 0x86).await, Some(0x86), "a removed user");
}

/// Connects (MQTT 5) every 50 ms, for up to 10 s, until the CONNACK code is `want` (the
/// gateway has read a changed file); the last code.
async fn connack_becomes(scene: &Scene, client_id: &str, login: (&str, &str), want: u8) -> Option<u8> {
    let mut code = None;
    for _ in 0..200 {
        code = connack(scene, 5, client_id, login).await;
        if code == Some(want) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    code
}

/// Keys made and tokens signed by PyJWT and `cryptography`, in `dir`: the public keys
/// `rsa.pem`, `rsa-2.pem`, `ec.pem`, `ed.pem`, the HMAC secret `hmac.secret`, a JWKS
/// `jwks.json`, and the tokens by name.
fn mint(dir: &Path) -> serde_json::Value {
    const SCRIPT: &str = r#"
import json, sys, time
import jwt
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa

out = sys.argv[1]
def public(key, name):
    pem = key.public_key().public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
    open(f"{out}/{name}", "wb").write(pem)

rsa_key, rsa_2, other = (rsa.generate_private_key(public_exponent=65537, key_size=2048) for _ in range(3))
ec_key, ed_key = ec.generate_private_key(ec.SECP256R1()), ed25519.Ed25519PrivateKey.generate()
public(rsa_key, "rsa.pem"); public(rsa_2, "rsa-2.pem"); public(ec_key, "ec.pem"); public(ed_key, "ed.pem")
open(f"{out}/hmac.secret", "w").write("a shared secret of the fleet\n")
jwk = json.loads(jwt.algorithms.RSAAlgorithm.to_jwk(rsa_2.public_key()))
jwk.update(kid="fleet-2", alg="RS256", use="sig")
open(f"{out}/jwks.json", "w").write(json.dumps({"keys": [jwk]}))

now = int(time.time())
def sign(key, alg, sub="lock-1", **claims):
    return jwt.encode({"sub": sub, "exp": now + 600, **claims}, key, algorithm=alg)
print(json.dumps({
    "rs256": sign(rsa_key, "RS256"),
    "expired": jwt.encode({"sub": "lock-1", "exp": now - 600}, rsa_key, algorithm="RS256"),
    "not_yet": sign(rsa_key, "RS256", nbf=now + 600),
    "forged": sign(other, "RS256"),
    "lock_2": sign(rsa_key, "RS256", sub="lock-2"),
    "rs256_key_2": sign(rsa_2, "RS256"),
    "es256": sign(ec_key, "ES256"),
    "eddsa": sign(ed_key, "EdDSA"),
    "hs256": sign("a shared secret of the fleet", "HS256"),
    "jwks": jwt.encode({"sub": "lock-1", "exp": now + 600}, rsa_2, algorithm="RS256", headers={"kid": "fleet-2"}),
}))
"#;
    let python = std::env::var("PYTHON").unwrap_or_else(|_| "python3".to_string());
    let output = std::process::Command::new(&python)
        .args(["-c", SCRIPT, dir.to_str().unwrap()])
        .output()
        .unwrap_or_else(|e| panic!("cannot run {python}: {e}"));
    assert!(
        output.status.success(),
        "PyJWT minting failed (install it: `pip install PyJWT cryptography`, .ci/run does): {}",
        String::from_utf8_lossy(&output.stderr)
    );
    serde_json::from_slice(&output.stdout).unwrap()
}

/// A gateway whose logins are tokens checked against `jwt` (set up by `key`).
async fn jwt_gateway(key: impl FnOnce(&mut hookline::config::JwtConfig)) -> Scene {
    Scene::start_with(&[], None, |config| {
        config.auth.anonymous = false;
        key(&mut config.auth.jwt);
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_token_from_pyjwt_logs_its_lock_in_and_an_expired_forged_or_foreign_one_does_not() {
    let dir = tempfile::tempdir().unwrap();
    let tokens = mint(dir.path());
    let token = |name: &str| tokens[name].as_str().unwrap().to_string();
    let public_key: PathBuf = dir.path().join("key.pem");
    std::fs::copy(dir.path().join("rsa.pem"), &public_key).unwrap();
    let scene = jwt_gateway(|jwt| jwt.public_key = Some(public_key.clone())).await;

    // The username is whatever the device sends; the token decides.
    for level in [4, 5] {
        let (bad, foreign) = if level == 5 { (0x86, 0x87) } else { (4, 5) };
        assert_eq!(connack(&scene, level, "lock-1", ("lock-1", &token("rs256"))).await, Some(0), "MQTT {level}: a valid token");
        assert_eq!(connack(&scene, level, "lock-1", ("jwt", &token("expired"))).await, Some(bad), "MQTT {level}: expired");
        assert_eq!(connack(&scene, level, "lock-1", ("jwt", &token("not_yet"))).await, Some(bad), "MQTT {level}: not before");
        assert_eq!(connack(&scene, level, "lock-1", ("jwt", &token("forged"))).await, Some(bad), "MQTT {level}: another key's");
        assert_eq!(connack(&scene, level, "lock-1", ("jwt", &token("lock_2"))).await, Some(foreign), "MQTT {level}: lock-2's token");
    }

    // A new key file is read again: the old key's tokens stop, the new one's pass.
    std::fs::copy(dir.path().join("rsa-2.pem"), &public_key).unwrap();
    assert_eq!(connack_becomes(&scene, "lock-1", ("", &token("rs256_key_2")), 0).await, Some(0), "the new key's token");
    assert_eq!(connack(&scene, 5, "lock-1", ("", &token("rs256"))).await, Some(0x86));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tokens_signed_with_ec_ed25519_hmac_and_a_jwks_key_are_verified() {
    let dir = tempfile::tempdir().unwrap();
    let tokens = mint(dir.path());
    let token = |name: &str| tokens[name].as_str().unwrap().to_string();
    let cases = [
        ("es256", "public_key", "ec.pem"),
        ("eddsa", "public_key", "ed.pem"),
        ("hs256", "secret_file", "hmac.secret"),
        ("jwks", "jwks", "jwks.json"),
    ];
    for (name, key, file) in cases {
        let file = Some(dir.path().join(file));
        let scene = jwt_gateway(|jwt| match key {
            "public_key" => jwt.public_key = file,
            "secret_file" => jwt.secret_file = file,
            _ => jwt.jwks = file,
        })
        .await;
        assert_eq!(connack(&scene, 5, "lock-1", ("lock-1", &token(name))).await, Some(0), "{name}");
        assert_eq!(connack(&scene, 5, "lock-1", ("lock-1", &token("forged"))).await, Some(0x86), "{name}: a token of another key");
    }
}
