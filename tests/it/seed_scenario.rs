//! The door-lock scenario of `docs/scenario.md`, end to end with the shipped default rules:
//! a state report lands on `message_state`, an acknowledged unlock command on
//! `message_command`, byte for byte in the documented envelope, keyed by the lock id.

use std::time::Duration;

use base64::Engine as _;
use rumqttc::QoS;

use crate::support::ports::ClosedPort;
use crate::support::scene::{consume, shipped_rules, wait_for, Device, MockKafka, Scene};
use crate::support::tansu::Tansu;

pub const LOCK: &str = "10083618796833171";
pub const STATE: &str =
    r#"{"process_id":"7802441525528958","action":"unlock","battery":83.4,"lock_state":1,"version":1.1,"client_id":"10083618796833171"}"#;
pub const COMMAND: &str =
    r#"{"process_id":"7802441525528958","action":"unlock","nonce_str":"u7u4p0n8","ts":1574744434,"sign":"e9f5af7deaa28563"}"#;

/// The scenario's traffic: the lock reports its state, the business app sends an unlock
/// command, the lock receives (and acknowledges) it.
pub async fn play(scene: &Scene) {
    let mut lock = Device::connect(scene.addr, LOCK).await;
    lock.subscribe(&format!("devices/{LOCK}/command")).await;
    lock.publish(&format!("devices/{LOCK}/state"), STATE, QoS::AtLeastOnce).await;
    lock.wait_pubacks(1).await;
    let mut app = Device::connect(scene.addr, "business-app-1").await;
    app.publish(&format!("devices/{LOCK}/command"), COMMAND, QoS::AtLeastOnce).await;
    app.wait_pubacks(1).await;
    let received = tokio::time::timeout(Duration::from_secs(5), lock.inbox.recv()).await.unwrap().unwrap();
    assert_eq!(&received.payload[..], COMMAND.as_bytes());
}

async fn run_scenario(bootstrap: String) {
    let rules = shipped_rules();
    let mut scene = Scene::start(&rules, Some(bootstrap.clone())).await;
    let started = hookline::hooks::now_ms();

    play(&scene).await;
    scene.shutdown().await;

    let b64 = |s: &str| base64::engine::general_purpose::STANDARD.encode(s);
    let read = |topic: &'static str| {
        let bootstrap = bootstrap.clone();
        tokio::task::spawn_blocking(move || consume(&bootstrap, topic, 1, Duration::from_secs(20), Duration::from_millis(500)))
    };
    let states = read("message_state").await.unwrap();
    assert_eq!(states.len(), 1, "{states:#?}");
    let state = &states[0];
    assert_eq!(state.key, LOCK);
    let ts = state.json()["ts"].as_u64().unwrap();
    assert!(ts >= started && ts <= hookline::hooks::now_ms(), "ts is the trigger time in ms");
    assert_eq!(
        state.value,
        format!(
            r#"{{"client_id":"{LOCK}","username":"","topic":"devices/{LOCK}/state","payload":"{}","qos":1,"node":"gateway@127.0.0.1","ts":{ts}}}"#,
            b64(STATE)
        )
    );

    let commands = read("message_command").await.unwrap();
    assert_eq!(commands.len(), 1, "one record per acknowledging subscriber: {commands:#?}");
    let command = &commands[0];
    assert_eq!(command.key, LOCK);
    let ts = command.json()["ts"].as_u64().unwrap();
    assert_eq!(
        command.value,
        format!(
            r#"{{"client_id":"{LOCK}","username":"","from":"business-app-1","topic":"devices/{LOCK}/command","payload":"{}","qos":1,"node":"gateway@127.0.0.1","ts":{ts}}}"#,
            b64(COMMAND)
        )
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn door_lock_scenario_through_the_mock_cluster() {
    let kafka = MockKafka::new(&["message_state", "message_command"]);
    run_scenario(kafka.bootstrap()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn door_lock_scenario_through_tansu() {
    let tansu = Tansu::start();
    tansu.create_topics(&["message_state", "message_command"]).await;
    run_scenario(tansu.bootstrap()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kafka_down_at_start_keeps_the_gateway_up_and_delivers_once_kafka_is_up() {
    let rules = shipped_rules();
    let kafka = ClosedPort::new();
    let mut scene = Scene::start(&rules, Some(kafka.addr())).await;

    let mut lock = Device::connect(scene.addr, LOCK).await;
    for i in 0..10 {
        lock.publish(&format!("devices/{LOCK}/state"), format!("{i}"), QoS::AtLeastOnce).await;
    }
    lock.wait_pubacks(10).await;
    // Kept, not a wait: the latency buckets below must see every record raised more
    // than a second before Kafka came up.
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert_eq!(scene.counter("records_delivered"), 0, "nothing can be delivered yet");

    let tansu = Tansu::start_on(kafka.release());
    tansu.create_topics(&["message_state"]).await;
    let metrics = scene.gateway().metrics().clone();
    scene.shutdown().await;
    // Latency runs from the hook event, so it spans the outage: every record was raised
    // before the 1 s wait and delivered after it.
    let text = hookline::admin::prometheus::render(&metrics, &Default::default());
    for line in ["hookline_delivery_latency_seconds_bucket{le=\"1\"} 0", "hookline_delivery_latency_seconds_count 10"] {
        assert!(text.lines().any(|l| l == line), "missing {line:?} in\n{text}");
    }
    let bootstrap = tansu.bootstrap();
    let records =
        tokio::task::spawn_blocking(move || consume(&bootstrap, "message_state", 10, Duration::from_secs(20), Duration::from_millis(500)))
            .await
            .unwrap();
    let payloads: Vec<String> = records.iter().map(|r| r.json()["payload"].as_str().unwrap().to_string()).collect();
    let expected: Vec<String> = (0..10).map(|i| base64::engine::general_purpose::STANDARD.encode(format!("{i}"))).collect();
    assert_eq!(payloads, expected, "all ten, in order, once");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_spool_holds_publishers_back_instead_of_dropping() {
    const SENT: usize = 200;
    let rules = shipped_rules();
    let kafka = ClosedPort::new();
    // A tiny disk budget and producer queue, and no Kafka yet: the spool fills within a
    // few dozen messages.
    let mut scene = Scene::start_with(&rules, Some(kafka.addr()), |config| {
        config.buffer.max_bytes = 8 * 1024;
        config.buffer.segment_bytes = 4096;
        config.broker.max_packet_size = 1024;
        config.rules.workers = 1;
        config.kafka.properties.insert("queue.buffering.max.messages".into(), "10".into());
    })
    .await;

    let mut lock = Device::connect(scene.addr, LOCK).await;
    for i in 0..SENT {
        lock.publish(&format!("devices/{LOCK}/state"), format!("{i}"), QoS::AtLeastOnce).await;
    }
    assert!(wait_for(Duration::from_secs(10), || scene.counter("spool_full_waits") > 0).await, "the connection waited for room");
    assert_eq!(scene.counter("spool_dropped"), 0);
    assert!(scene.counter("spool_backlog_bytes") <= 8 * 1024, "the budget holds");
    let acked = std::iter::from_fn(|| lock.acks.try_recv().ok()).filter(|p| matches!(p, rumqttc::Packet::PubAck(_))).count();
    assert!(acked < SENT, "publishes are held back while Kafka is away ({acked} of {SENT} acknowledged)");

    let tansu = Tansu::start_on(kafka.release());
    tansu.create_topics(&["message_state"]).await;
    lock.wait_pubacks(SENT - acked).await;
    scene.shutdown().await;
    let bootstrap = tansu.bootstrap();
    let records = tokio::task::spawn_blocking(move || {
        consume(&bootstrap, "message_state", SENT, Duration::from_secs(30), Duration::from_millis(500))
    })
    .await
    .unwrap();
    let payloads: Vec<String> = records.iter().map(|r| r.json()["payload"].as_str().unwrap().to_string()).collect();
    let expected: Vec<String> = (0..SENT).map(|i| base64::engine::general_purpose::STANDARD.encode(format!("{i}"))).collect();
    assert_eq!(payloads, expected, "all of them, in order, once");
}
