//! The way in holds while Kafka is slow, frozen, down or replaced: a cluster node answers
//! every CONNECT within `cluster.claim_wait_ms` (its claim deferred), acknowledges every
//! report, and once Kafka is back every acknowledged report is in Kafka and every claim
//! has taken effect. Two nodes that both served one client id during the outage settle
//! it with one DISCONNECT 0x8E. Shutdown keeps its bound with Kafka away. A node that
//! served a client alone while it could not catch up has the connection claim its
//! session once it can.

use std::time::{Duration, Instant};

use rumqttc::QoS;

use crate::support::raw_mqtt::{connect_with, prop_u32, RawClient};
use crate::support::scene::{consume, shipped_rules, wait_for, Device, MockKafka, Scene};
use crate::support::tansu::Tansu;

/// What the tests set `cluster.claim_wait_ms` to.
const CLAIM_WAIT_MS: u64 = 500;

/// A gateway node with the shipped rules on `kafka`.
async fn node(kafka: String, name: &str) -> Scene {
    let rules = shipped_rules();
    let name = name.to_string();
    Scene::start_with(&rules, Some(kafka), move |config| {
        config.node = name;
        config.cluster.claim_wait_ms = CLAIM_WAIT_MS;
    })
    .await
}

/// Connects lock `id` (MQTT 3.1.1), has it report its state once at QoS 1 and waits for
/// the PUBACK; returns the lock and how long its CONNACK took.
async fn lock_reporting(scene: &Scene, id: &str) -> (Device, Duration) {
    let started = Instant::now();
    let mut lock = Device::connect(scene.addr, id).await;
    let connack = started.elapsed();
    lock.publish(&format!("devices/{id}/state"), format!(r#"{{"lock":"{id}"}}"#), QoS::AtLeastOnce).await;
    lock.wait_pubacks(1).await;
    (lock, connack)
}

/// Reads `message_state` until every lock of `ids` has its report there.
async fn reports_in_kafka(bootstrap: String, ids: &[String]) {
    let n = ids.len();
    let records =
        tokio::task::spawn_blocking(move || consume(&bootstrap, "message_state", n, Duration::from_secs(60), Duration::from_millis(200)))
            .await
            .unwrap();
    let keys: std::collections::HashSet<&str> = records.iter().map(|r| r.key.as_str()).collect();
    let missing: Vec<&String> = ids.iter().filter(|id| !keys.contains(id.as_str())).collect();
    assert!(missing.is_empty(), "acknowledged reports missing from Kafka: {missing:?} ({} records read)", records.len());
}

/// Twenty new locks named `<phase>-<n>`, each reporting once (see `lock_reporting`);
/// their ids join `ids`.
async fn twenty_locks_reporting(scene: &Scene, phase: &str, ids: &mut Vec<String>) -> Vec<Device> {
    let mut locks = Vec::new();
    let mut slowest = Duration::ZERO;
    for i in 0..20 {
        let id = format!("{phase}-{i}");
        let (lock, connack) = lock_reporting(scene, &id).await;
        slowest = slowest.max(connack);
        locks.push(lock);
        ids.push(id);
    }
    eprintln!("Kafka {phase}: 20 locks connected, slowest CONNACK {slowest:?}");
    locks
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cluster_node_whose_kafka_is_slow_then_down_accepts_new_locks_and_loses_none_of_their_reports() {
    let kafka = MockKafka::new(&["message_state", "message_command"]);
    let mut scene = node(kafka.bootstrap(), "node-a").await;
    let mut ids = vec!["lock-0".to_string()];
    let (_first, _) = lock_reporting(&scene, "lock-0").await;
    assert!(wait_for(Duration::from_secs(20), || scene.counter("records_delivered") == 1).await, "Kafka up: the first report delivered");
    assert_eq!(scene.counter("cluster_claims_deferred"), 0, "Kafka up: the claim was read back");

    let mut locks = Vec::new();
    for (phase, fault) in [("slow", 0), ("down", 1)] {
        match fault {
            // Every answer takes 4 s: longer than the claim's bound, shorter than any
            // client timeout.
            0 => kafka.cluster.broker_round_trip_time(1, Duration::from_secs(4)).unwrap(),
            _ => kafka.cluster.broker_down(1).unwrap(),
        }
        locks.extend(twenty_locks_reporting(&scene, phase, &mut ids).await);
    }
    assert_eq!(scene.counter("cluster_claims_deferred"), 40, "every claim deferred while Kafka was slow or down");

    kafka.cluster.broker_round_trip_time(1, Duration::ZERO).unwrap();
    kafka.cluster.broker_up(1).unwrap();
    reports_in_kafka(kafka.bootstrap(), &ids).await;
    // The deferred claims took effect: the cluster holds every lock's session, connected.
    assert!(
        wait_for(Duration::from_secs(20), || scene.counter("cluster_sessions_connected") == 41).await,
        "sessions connected in the cluster: {}",
        scene.counter("cluster_sessions_connected")
    );

    kafka.cluster.broker_down(1).unwrap();
    let started = Instant::now();
    scene.shutdown().await;
    let took = started.elapsed();
    eprintln!("shutdown with Kafka down took {took:?}");
    assert!(took < Duration::from_secs(12), "shutdown keeps its 10 s bound with Kafka down: {took:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cluster_node_whose_kafka_process_is_frozen_accepts_new_locks_and_loses_none_of_their_reports() {
    let tansu = Tansu::start();
    tansu.create_topics(&["message_state", "message_command"]).await;
    let scene = node(tansu.bootstrap(), "node-a").await;
    let mut ids = vec!["lock-0".to_string()];
    let (_first, _) = lock_reporting(&scene, "lock-0").await;
    assert!(wait_for(Duration::from_secs(20), || scene.counter("records_delivered") == 1).await, "Kafka up: the first report delivered");

    tansu.freeze();
    let _locks = twenty_locks_reporting(&scene, "frozen", &mut ids).await;
    assert_eq!(scene.counter("cluster_claims_deferred"), 20);

    tansu.thaw();
    reports_in_kafka(tansu.bootstrap(), &ids).await;
    assert!(
        wait_for(Duration::from_secs(30), || scene.counter("cluster_sessions_connected") == 21).await,
        "the deferred claims took effect: {} sessions connected",
        scene.counter("cluster_sessions_connected")
    );
}

/// An MQTT 5 lock with a session that outlives its connection, connected to `scene`.
async fn lock_v5(scene: &Scene, id: &str) -> RawClient {
    let mut client = RawClient::open(scene.addr).await;
    client.send(&connect_with(5, id, false, &prop_u32(0x11, 300), None)).await;
    let (first, body) = client.receive().await.expect("CONNACK");
    assert_eq!((first, body.get(1)), (0x20, Some(&0)), "{id}: CONNACK accepting");
    client
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_nodes_that_served_one_lock_during_an_outage_keep_one_connection_and_close_the_other_with_0x8e() {
    let kafka = MockKafka::new(&["message_state", "message_command"]);
    let (a, b) = (node(kafka.bootstrap(), "node-a").await, node(kafka.bootstrap(), "node-b").await);
    // Both nodes know the cluster and each other.
    let _warm_a = lock_v5(&a, "warm-a").await;
    let _warm_b = lock_v5(&b, "warm-b").await;
    assert!(
        wait_for(Duration::from_secs(20), || a.counter("cluster_sessions_connected") == 2 && b.counter("cluster_sessions_connected") == 2)
            .await
    );

    kafka.cluster.broker_down(1).unwrap();
    let mut on_a = lock_v5(&a, "lock-1").await;
    let mut on_b = lock_v5(&b, "lock-1").await;
    // Longer than a node takes to count another as gone: an outage makes nobody look
    // dead, so no node adopts the other's sessions.
    tokio::time::sleep(hookline::cluster::NODE_TIMEOUT + Duration::from_secs(1)).await;
    kafka.cluster.broker_up(1).unwrap();

    let takeovers = || a.counter("cluster_takeovers") + b.counter("cluster_takeovers");
    assert!(wait_for(Duration::from_secs(30), || takeovers() >= 1).await, "the claims took effect once Kafka was back");
    assert_eq!(a.counter("cluster_adopted") + b.counter("cluster_adopted"), 0, "no session adopted: both nodes were alive");
    let (loser, winner) = match a.counter("cluster_takeovers") {
        1 => (&mut on_a, &mut on_b),
        _ => (&mut on_b, &mut on_a),
    };
    let goodbye = loser.receive().await.expect("the superseded connection hears why it closes");
    assert_eq!((goodbye.0, goodbye.1.first()), (0xe0, Some(&0x8e)), "DISCONNECT 0x8E Session taken over");
    // The other connection stays: it answers a ping, and nothing closes it meanwhile.
    tokio::time::sleep(Duration::from_secs(3)).await;
    winner.send(&[0xc0, 0]).await;
    assert_eq!(winner.receive().await.map(|(first, _)| first), Some(0xd0), "the remaining connection is served");
    assert_eq!(takeovers(), 1, "one connection closed");
    assert_eq!(a.counter("cluster_adopted") + b.counter("cluster_adopted"), 0, "and still no session adopted");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_started_without_kafka_listens_at_once_and_serves_its_clients_alone() {
    let unreachable = crate::support::ports::ClosedPort::new();
    let mut scene = node(unreachable.addr(), "node-a").await;
    let (_lock, connack) = lock_reporting(&scene, "lock-1").await;
    eprintln!("CONNACK without Kafka after {connack:?}");
    assert_eq!(scene.counter("cluster_served_alone"), 1);
    let started = Instant::now();
    scene.shutdown().await;
    let took = started.elapsed();
    eprintln!("shutdown without Kafka took {took:?}");
    assert!(took < Duration::from_secs(12), "shutdown keeps its 10 s bound without Kafka: {took:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lock_served_alone_by_a_node_catching_up_joins_its_session_and_gets_the_command_sent_meanwhile() {
    let kafka = MockKafka::new(&["message_state", "message_command"]);
    let a = node(kafka.bootstrap(), "node-a").await;
    let _warm = lock_v5(&a, "warm-a").await;
    assert!(wait_for(Duration::from_secs(20), || a.counter("cluster_sessions_connected") == 1).await);
    // The lock's session in the cluster: subscribed on node a, then away.
    let persistent = |options: &mut rumqttc::MqttOptions| {
        options.set_clean_session(false);
    };
    let mut lock = Device::connect_with(a.addr, "lock-1", persistent).await;
    lock.subscribe("devices/lock-1/command").await;
    lock.disconnect().await;
    assert!(wait_for(Duration::from_secs(20), || a.counter("cluster_sessions") == 2 && a.counter("cluster_sessions_connected") == 1).await);

    // Node b starts while Kafka is down: it cannot catch up, so it serves the lock alone.
    kafka.cluster.broker_down(1).unwrap();
    let b = node(kafka.bootstrap(), "node-b").await;
    let mut lock = Device::connect_with(b.addr, "lock-1", persistent).await;
    assert_eq!(b.counter("cluster_served_alone"), 1);
    // A command for the lock, sent meanwhile over MQTT on node a: for the lock's session.
    let mut app = Device::connect(a.addr, "app").await;
    app.publish("devices/lock-1/command", r#"{"action":"unlock"}"#, QoS::AtLeastOnce).await;
    app.wait_pubacks(1).await;

    kafka.cluster.broker_up(1).unwrap();
    assert!(wait_for(Duration::from_secs(30), || b.counter("cluster_alone_joined") == 1).await, "the connection claimed its session");
    let command = tokio::time::timeout(Duration::from_secs(20), lock.inbox.recv()).await;
    let command = command.expect("the command within 20 s of the claim").expect("the lock's inbox");
    assert_eq!((command.topic.as_str(), &command.payload[..]), ("devices/lock-1/command", &br#"{"action":"unlock"}"#[..]));
}
