//! Locks touch only their own topics: the shipped door-lock ACL enforced for MQTT 3.1.1
//! and 5 clients, passwords checked, refusals counted, raised as `access.denied` and
//! never turned into Kafka records.

use std::time::Duration;

use rumqttc::QoS;

use crate::support::fixtures::{route_rule, RuleWat};
use crate::support::scene::{repo_rules, Device, Scene};

const APP_PASSWORD: &str = "correct horse battery staple";

/// A gateway with the door-lock ACL, a `business-app` user, anonymous locks, the state
/// rule, and a rule routing every refusal to a `security` topic.
async fn scene(files: &tempfile::TempDir) -> Scene {
    let acl = std::fs::read(repo_rules().join("../examples/door-locks.acl")).unwrap();
    std::fs::write(files.path().join("door-locks.acl"), acl).unwrap();
    let mut credentials = hookline::access::Credentials::default();
    credentials.users.insert(
        "business-app".into(),
        hookline::access::User::Any(hookline::access::hash::hash(hookline::access::hash::HashKind::Argon2id, APP_PASSWORD)),
    );
    credentials.save(&files.path().join("users.toml")).unwrap();

    let state = route_rule("message.publish", "devices/+/state", "message_state");
    let security = route_rule("access.denied", "#", "security");
    let (acl, users) = (files.path().join("door-locks.acl"), files.path().join("users.toml"));
    Scene::start_with(&[("state.wat", state.as_bytes()), ("security.wat", security.as_bytes())], None, |config| {
        config.auth.acl = Some(acl);
        config.auth.credentials = Some(users);
    })
    .await
}

async fn app(scene: &Scene, password: &str) -> Result<Device, String> {
    let password = password.to_string();
    let addr = scene.addr;
    tokio::spawn(async move {
        Device::connect_with(addr, "app-1", |o| {
            o.set_credentials("business-app", password);
        })
        .await
    })
    .await
    .map_err(|e| e.to_string())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn locks_cannot_touch_each_others_topics() {
    let files = tempfile::tempdir().unwrap();
    let scene = scene(&files).await;
    let mut lock_a = Device::connect(scene.addr, "lock-a").await;
    let mut lock_b = Device::connect(scene.addr, "lock-b").await;
    lock_b.subscribe("devices/lock-b/command").await;
    let mut attempts = 0;

    // A reports B's state, and its own command topic: both refused, nothing routed.
    for topic in ["devices/lock-b/state", "devices/lock-a/command", "$hookline/denied"] {
        lock_a.publish(topic, "forged", QoS::AtLeastOnce).await;
        attempts += 1;
    }
    lock_a.wait_pubacks(3).await;
    // A tries to read B's commands, or everyone's.
    for filter in ["devices/lock-b/command", "devices/+/command", "devices/#", "#", "$hookline/#"] {
        lock_a.client.subscribe(filter, QoS::AtLeastOnce).await.unwrap();
        attempts += 1;
        lock_a.wait_ack(|p| matches!(p, rumqttc::Packet::SubAck(ack) if ack.return_codes == [rumqttc::SubscribeReasonCode::Failure])).await;
    }
    // Its own topics work.
    lock_a.subscribe("devices/lock-a/command").await;
    lock_a.publish("devices/lock-a/state", "mine", QoS::AtLeastOnce).await;
    lock_a.wait_pubacks(1).await;

    // The business app commands B; only B hears it.
    let app = app(&scene, APP_PASSWORD).await.expect("the business app logs in");
    app.publish("devices/lock-b/command", "unlock", QoS::AtLeastOnce).await;
    let command = tokio::time::timeout(Duration::from_secs(5), lock_b.inbox.recv()).await.unwrap().unwrap();
    assert_eq!(&command.payload[..], b"unlock");
    assert!(tokio::time::timeout(Duration::from_millis(500), lock_a.inbox.recv()).await.is_err(), "A got B's command");

    // Refusals on `$` topics match no leading wildcard (MQTT rule), so the security rule's
    // `#` sees all but the two `$hookline` attempts; the counter sees all.
    let dollar_attempts = 2;
    let records = scene.file_records(1 + attempts - dollar_attempts).await;
    let state: Vec<_> = records.iter().filter(|r| r["topic"] == "message_state").collect();
    assert_eq!(state.len(), 1, "only A's own state is routed: {records:#?}");
    assert_eq!(state[0]["value"]["topic"], "devices/lock-a/state");
    let security: Vec<_> = records.iter().filter(|r| r["topic"] == "security").collect();
    assert_eq!(security.len(), attempts - dollar_attempts, "every refusal reaches the audit topic");
    assert!(security.iter().all(|r| r["key"] == "lock-a"));
    assert_eq!(scene.counter("access_denied"), attempts as i64);
    eprintln!("cross-device attempts: {attempts}, got through: 0");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_mqtt5_lock_is_told_not_authorized() {
    use rumqttc::v5::mqttbytes::v5::{Packet as V5Packet, PubAckReason, SubscribeReasonCode};
    use rumqttc::v5::mqttbytes::QoS as V5QoS;
    use rumqttc::v5::{AsyncClient, Event, MqttOptions};

    let files = tempfile::tempdir().unwrap();
    let scene = scene(&files).await;
    let mut options = MqttOptions::new("lock-v5", scene.addr.ip().to_string(), scene.addr.port());
    options.set_keep_alive(Duration::from_secs(30));
    let (client, mut eventloop) = AsyncClient::new(options, 10);
    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    client.subscribe("devices/lock-other/command", V5QoS::AtLeastOnce).await.unwrap();
    // The acknowledgements carry the refusal: rumqttc 0.25 hands them over as they are.
    async fn ack(eventloop: &mut rumqttc::v5::EventLoop, deadline: tokio::time::Instant) -> V5Packet {
        loop {
            match tokio::time::timeout_at(deadline, eventloop.poll()).await.expect("ack within 5 s") {
                Ok(Event::Incoming(packet @ (V5Packet::SubAck(_) | V5Packet::PubAck(_)))) => return packet,
                Ok(_) => {}
                Err(e) => panic!("connection failed: {e}"),
            }
        }
    }
    let V5Packet::SubAck(suback) = ack(&mut eventloop, deadline).await else { panic!("a SUBACK") };
    assert_eq!(suback.return_codes, [SubscribeReasonCode::NotAuthorized]);
    client.publish("devices/lock-other/state", V5QoS::AtLeastOnce, false, "forged").await.unwrap();
    let V5Packet::PubAck(puback) = ack(&mut eventloop, deadline).await else { panic!("a PUBACK") };
    assert_eq!(puback.reason, PubAckReason::NotAuthorized);
    assert_eq!(scene.counter("access_denied"), 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_wrong_password_and_an_unknown_user_are_refused() {
    let files = tempfile::tempdir().unwrap();
    let scene = scene(&files).await;
    assert!(app(&scene, "wrong").await.is_err(), "wrong password refused");
    let addr = scene.addr;
    let stranger = tokio::spawn(async move {
        Device::connect_with(addr, "x", |o| {
            o.set_credentials("stranger", APP_PASSWORD);
        })
        .await
    })
    .await;
    assert!(stranger.is_err(), "unknown user refused");
    assert!(app(&scene, APP_PASSWORD).await.is_ok(), "the right password still works");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_a_public_key_only_signed_untampered_rules_load() {
    use crate::support::scene::wait_for;
    let keys = tempfile::tempdir().unwrap();
    let hookline = || std::process::Command::new(env!("CARGO_BIN_EXE_hookline"));
    assert!(hookline().args(["rule", "keygen", "--out"]).arg(keys.path().join("ops")).status().unwrap().success());
    let public_key = keys.path().join("ops.pub");

    let v1 = route_rule("message.publish", "devices/+/state", "message_state");
    let scene = Scene::start_with(&[("state.wat", v1.as_bytes())], None, |config| {
        config.rules.public_key = Some(public_key);
    })
    .await;
    assert_eq!(scene.gateway().rules().modules.len(), 0, "unsigned: refused");
    assert_eq!(scene.counter("rule_load_failures"), 1);

    let module = scene.rules_dir().join("state.wat");
    let sign = || hookline().args(["rule", "sign"]).arg(&module).arg("--key").arg(keys.path().join("ops.key")).status().unwrap();
    assert!(sign().success());
    assert!(wait_for(Duration::from_secs(3), || scene.gateway().rules().modules.len() == 1).await, "signed: loaded");

    // Tampered: another topic, same signature. Refused; the signed version keeps routing.
    std::fs::write(&module, route_rule("message.publish", "devices/+/state", "stolen")).unwrap();
    assert!(wait_for(Duration::from_secs(3), || scene.counter("rule_load_failures") == 2).await, "tampered: refused");
    let lock = Device::connect(scene.addr, "lock-sig").await;
    lock.publish("devices/lock-sig/state", "{}", QoS::AtLeastOnce).await;
    assert_eq!(scene.file_records(1).await[0]["topic"], "message_state");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_wildcard_subscriber_never_receives_a_topic_it_may_not_read() {
    let files = tempfile::tempdir().unwrap();
    let acl = files.path().join("deny-then-allow.acl");
    std::fs::write(&acl, "deny all subscribe test/nosubscribe\nallow all all #\n").unwrap();
    let scene = Scene::start_with(&[], None, |config| config.auth.acl = Some(acl)).await;
    let mut readers = Vec::new();
    for (i, filter) in ["#", "test/+", "test/#"].into_iter().enumerate() {
        let mut reader = Device::connect(scene.addr, &format!("reader-{i}")).await;
        reader.subscribe(filter).await;
        readers.push(reader);
    }
    let writer = Device::connect(scene.addr, "writer").await;
    writer.publish("test/nosubscribe", "secret", QoS::AtLeastOnce).await;
    writer.publish("test/other", "public", QoS::AtLeastOnce).await;
    for reader in &mut readers {
        let got = tokio::time::timeout(Duration::from_secs(5), reader.inbox.recv()).await.unwrap().unwrap();
        assert_eq!((&got.topic[..], &got.payload[..]), ("test/other", &b"public"[..]));
    }
    assert_eq!(scene.counter("mqtt_deliveries_denied"), 3);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rule_reads_the_peer_address_of_a_refused_client() {
    // Routes every refusal to `security`, keyed by the client's address (field 5).
    let on_event = "(local $len i32)
    (local.set $len (call $event_read (i32.const 5) (i32.const 1024) (i32.const 256)))
    (drop (call $route (i32.const 512) (i32.const 8) (i32.const 1024) (local.get $len)))
    (i32.const 0)";
    let (hook, filter, data) = ("access.denied", "#", [(512, "security")]);
    let rule = RuleWat { abi: 1, imports: &["event_read", "route"], hook, filter, data: &data, on_event, ..Default::default() }.build();
    let files = tempfile::tempdir().unwrap();
    let acl = files.path().join("locks.acl");
    std::fs::write(&acl, "allow all publish devices/%c/state\ndeny all all #\n").unwrap();
    let scene = Scene::start_with(&[("security.wat", rule.as_bytes())], None, |config| config.auth.acl = Some(acl)).await;
    let mut intruder = crate::support::raw_mqtt::RawClient::connected(scene.addr, 4, "lock-x").await;
    let peer = intruder.socket.local_addr().unwrap().to_string();
    intruder.send(&crate::support::raw_mqtt::publish_qos1(b"devices/lock-y/state", b"forged")).await;
    let records = scene.file_records(1).await;
    assert_eq!((records[0]["topic"].as_str(), records[0]["key"].as_str()), (Some("security"), Some(peer.as_str())));
}
