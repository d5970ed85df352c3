//! Every refused CONNECT is answered with a CONNACK carrying its code, in MQTT 3.1.1
//! and 5, and counted by reason; a login binds the client ids it may use, so no lock
//! can log in as another.

use std::path::Path;

use hookline::access::hash::{hash, HashKind};
use hookline::access::{Credentials, User};

use crate::support::raw_mqtt::{connect_with, RawClient};
use crate::support::scene::Scene;

/// Users: `lock-1` may connect only as itself, `app` as any client id.
fn write_users(path: &Path) {
    let mut credentials = Credentials::default();
    credentials.users.insert("lock-1".into(), User::new(hash(HashKind::Argon2id, "p1"), vec!["%u".into()]));
    credentials.users.insert("lock-2".into(), User::new(hash(HashKind::Argon2id, "p2"), vec!["%u".into()]));
    credentials.users.insert("app".into(), User::Any(hash(HashKind::Argon2id, "pa")));
    credentials.save(path).unwrap();
}

/// The CONNACK's reason code for `bytes` sent as a first packet, and the connection.
async fn connack_code(scene: &Scene, bytes: &[u8]) -> (u8, RawClient) {
    let mut client = RawClient::open(scene.addr).await;
    client.send(bytes).await;
    let (first, body) = client.receive().await.expect("a CONNACK, not a silent close");
    assert_eq!(first, 0x20, "CONNACK expected, got {first:#x} {body:?}");
    (body[1], client)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_refusal_gets_a_connack_with_its_code_in_both_versions() {
    let files = tempfile::tempdir().unwrap();
    write_users(&files.path().join("users.toml"));
    let users = files.path().join("users.toml");
    let scene = Scene::start_with(&[], None, |config| {
        config.auth.anonymous = false;
        config.auth.credentials = Some(users);
        config.broker.max_connections = 2;
    })
    .await;
    let long_id = "x".repeat(300);
    // (what, MQTT 3.1.1 code, MQTT 5 code, CONNECT for a level)
    type Case = (&'static str, u8, u8, Box<dyn Fn(u8) -> Vec<u8>>);
    let cases: [Case; 5] = [
        ("wrong password", 0x04, 0x86, Box::new(|l| connect_with(l, "lock-1", true, &[], Some(("lock-1", "wrong"))))),
        ("unknown user", 0x04, 0x86, Box::new(|l| connect_with(l, "x", true, &[], Some(("nobody", "p1"))))),
        ("no login", 0x05, 0x87, Box::new(|l| connect_with(l, "lock-1", true, &[], None))),
        ("another lock's client id", 0x05, 0x87, Box::new(|l| connect_with(l, "lock-1", true, &[], Some(("lock-2", "p2"))))),
        ("client id over 256 bytes", 0x02, 0x85, Box::new(move |l| connect_with(l, &long_id, true, &[], Some(("app", "pa"))))),
    ];
    for (what, v4_code, v5_code, connect) in &cases {
        for (level, code) in [(4, *v4_code), (5, *v5_code)] {
            let (got, mut client) = connack_code(&scene, &connect(level)).await;
            assert_eq!(got, code, "{what}, MQTT level {level}");
            assert!(client.closed_by_peer().await, "{what}: closed after the CONNACK");
        }
    }
    // MQTT 3.1.1 lets a persistent session only have a client-chosen id.
    let (got, _) = connack_code(&scene, &connect_with(4, "", false, &[], Some(("app", "pa")))).await;
    assert_eq!(got, 0x02, "empty client id with clean session 0");
    // Protocol levels this gateway does not speak: 3 (MQTT 3.1) and 6.
    assert_eq!(connack_code(&scene, &connect_with(3, "old", true, &[], None)).await.0, 0x01);
    assert_eq!(connack_code(&scene, &connect_with(6, "new", true, &[], None)).await.0, 0x84);

    // broker.max_connections = 2: the third client is told the server is busy.
    let (ok_1, _first) = connack_code(&scene, &connect_with(4, "lock-1", true, &[], Some(("lock-1", "p1")))).await;
    let (ok_2, _second) = connack_code(&scene, &connect_with(5, "app-1", true, &[], Some(("app", "pa")))).await;
    assert_eq!((ok_1, ok_2), (0, 0), "the right logins are accepted");
    assert_eq!(connack_code(&scene, &connect_with(4, "app-2", true, &[], Some(("app", "pa")))).await.0, 0x03);
    assert_eq!(connack_code(&scene, &connect_with(5, "app-3", true, &[], Some(("app", "pa")))).await.0, 0x89);

    let counts = [
        "mqtt_refused_bad_credentials",
        "mqtt_refused_not_authorized",
        "mqtt_refused_client_id",
        "mqtt_refused_protocol_version",
        "mqtt_refused_server_busy",
    ]
    .map(|name| scene.counter(name));
    assert_eq!(counts, [4, 4, 3, 2, 2], "refusals counted by reason");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn anonymous_access_without_a_credentials_file_accepts_a_username() {
    let scene = Scene::start(&[], None).await;
    let (code, _client) = connack_code(&scene, &connect_with(4, "dev-1", true, &[], Some(("someone", "anything")))).await;
    assert_eq!(code, 0);
}
