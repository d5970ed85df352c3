//! Nothing acknowledged is lost: a hung then dead Kafka, SIGTERM under load, and
//! `kill -9` under load with `fsync = "always"`. The gateway runs as its own process
//! (the real binary), Kafka is librdkafka's mock cluster with fault injection, and ten
//! locks publish numbered QoS 1 state reports the way real ones do: one at a time,
//! resending after a reconnect whatever was not acknowledged.
//!
//! Each test prints sent / received / duplicated and the gateway's peak RSS.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use base64::Engine as _;
use rumqttc::{AsyncClient, Event, MqttOptions, Packet, QoS};
use tokio::sync::watch;

use crate::support::ports::ClosedPort;
use crate::support::scene::{consume, shipped_rules, wait_for, GatewayBinary, MockKafka};

const LOCKS: usize = 10;

/// The hookline binary on the shipped rules, `config` (TOML) and `kafka`, with its
/// rules, data and log in `dir` (kept across restarts).
async fn start_gateway(dir: &Path, kafka: &str, config: &str) -> GatewayBinary {
    let rules = dir.join("rules");
    if !rules.exists() {
        std::fs::create_dir_all(&rules).unwrap();
        for (name, content) in shipped_rules() {
            std::fs::write(rules.join(name), content).unwrap();
        }
    }
    std::fs::write(dir.join("hookline.toml"), config).unwrap();
    let args = ["--config", "hookline.toml", "--rules", "rules", "--data", "data", "--kafka", kafka, "--node", "gateway@test"];
    GatewayBinary::start(dir, &[&args[..], &["--allow-anonymous"]].concat()).await
}

/// What one lock did: messages acknowledged, and how often it had to resend.
#[derive(Debug, Default, Clone, Copy)]
struct LockStats {
    acknowledged: u64,
    resent: u64,
}

/// Publishes `0..count` as `devices/<id>/state`, QoS 1, one in flight, `pace` apart,
/// reconnecting (to the gateway's address at the time: a restarted gateway has a new
/// port) and resending the unacknowledged one whenever the connection fails.
async fn run_lock(addr: watch::Receiver<SocketAddr>, id: String, count: u64, pace: Duration) -> LockStats {
    let mut stats = LockStats::default();
    let mut seq = 0;
    let give_up = Instant::now() + Duration::from_secs(120);
    'connection: while seq < count {
        assert!(Instant::now() < give_up, "{id} could not get {count} messages acknowledged within 120 s");
        let to = *addr.borrow();
        let mut options = MqttOptions::new(&id, to.ip().to_string(), to.port());
        options.set_keep_alive(Duration::from_secs(30));
        let (client, mut eventloop) = AsyncClient::new(options, 10);
        // Connect.
        loop {
            match eventloop.poll().await {
                Ok(Event::Incoming(Packet::ConnAck(_))) => break,
                Ok(_) => {}
                Err(_) => {
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue 'connection;
                }
            }
        }
        while seq < count {
            let payload = format!("{{\"lock\":\"{id}\",\"seq\":{seq}}}");
            client.try_publish(format!("devices/{id}/state"), QoS::AtLeastOnce, false, payload).unwrap();
            loop {
                match eventloop.poll().await {
                    Ok(Event::Incoming(Packet::PubAck(_))) => break,
                    Ok(_) => {}
                    Err(_) => {
                        stats.resent += 1;
                        tokio::time::sleep(Duration::from_millis(100)).await;
                        continue 'connection;
                    }
                }
            }
            seq += 1;
            stats.acknowledged = seq;
            tokio::time::sleep(pace).await;
        }
    }
    stats
}

struct Fleet {
    locks: Vec<tokio::task::JoinHandle<LockStats>>,
}

impl Fleet {
    fn start(addr: &watch::Sender<SocketAddr>, count: u64, pace: Duration) -> Fleet {
        let locks = (0..LOCKS).map(|i| tokio::spawn(run_lock(addr.subscribe(), format!("lock-{i}"), count, pace))).collect();
        Fleet { locks }
    }

    async fn finish(self) -> Vec<LockStats> {
        let mut stats = Vec::new();
        for lock in self.locks {
            stats.push(lock.await.unwrap());
        }
        stats
    }
}

/// Reads `message_state` back and checks every acknowledged message is there, each
/// lock's in order of first appearance. Returns (received, duplicated).
fn check_delivery(bootstrap: &str, stats: &[LockStats]) -> (usize, usize) {
    let sent: u64 = stats.iter().map(|s| s.acknowledged).sum();
    let records = consume(bootstrap, "message_state", sent as usize, Duration::from_secs(60), Duration::from_secs(2));
    let mut seen: HashMap<String, Vec<u64>> = HashMap::new();
    for record in &records {
        let envelope = record.json();
        let payload = base64::engine::general_purpose::STANDARD.decode(envelope["payload"].as_str().unwrap()).unwrap();
        let payload: serde_json::Value = serde_json::from_slice(&payload).unwrap();
        seen.entry(record.key.clone()).or_default().push(payload["seq"].as_u64().unwrap());
    }
    let mut duplicated = 0;
    for (i, lock) in stats.iter().enumerate() {
        let id = format!("lock-{i}");
        let got = seen.remove(&id).unwrap_or_default();
        let mut first = Vec::new();
        for seq in &got {
            if first.contains(seq) {
                duplicated += 1;
            } else {
                first.push(*seq);
            }
        }
        // Unacknowledged messages at the very end may or may not have been accepted.
        let expected: Vec<u64> = (0..lock.acknowledged).collect();
        assert_eq!(&first[..expected.len().min(first.len())], &expected[..expected.len().min(first.len())], "{id}: out of order");
        assert!(
            first.len() as u64 >= lock.acknowledged,
            "{id}: {} of {} acknowledged messages reached Kafka",
            first.len(),
            lock.acknowledged
        );
    }
    assert!(seen.is_empty(), "records from unknown locks: {:?}", seen.keys());
    (records.len(), duplicated)
}

fn report(test: &str, stats: &[LockStats], received: usize, duplicated: usize, peak_rss_mib: f64) {
    let sent: u64 = stats.iter().map(|s| s.acknowledged).sum();
    let resent: u64 = stats.iter().map(|s| s.resent).sum();
    println!(
        "{test}: acknowledged {sent}, resent after a reconnect {resent}, received {received}, duplicated {duplicated}, gateway peak RSS {peak_rss_mib:.0} MiB"
    );
}

const DELIVERED: &str = "hookline_records_delivered_total{topic=\"message_state\"}";

/// Waits until the locks' reports reach Kafka: the fleet is connected and publishing.
async fn flowing(gateway: &GatewayBinary) {
    let flowing = wait_for(Duration::from_secs(20), || gateway.metric(DELIVERED) >= 100.0).await;
    assert!(flowing, "fewer than 100 reports delivered after 20 s; {}:\n{}", gateway.log.display(), gateway.log_text());
}

/// Waits until records the sink was handed are not delivered yet: the slowed Kafka holds
/// them, so a signal now catches records on their way.
async fn in_flight(gateway: &GatewayBinary) {
    let held = wait_for(Duration::from_secs(20), || gateway.metric("hookline_records_sent_total") > gateway.metric(DELIVERED) + 10.0).await;
    assert!(held, "no records held by the slowed Kafka after 20 s; {}:\n{}", gateway.log.display(), gateway.log_text());
}

fn temp_dir() -> (tempfile::TempDir, PathBuf) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().to_path_buf();
    (dir, path)
}

/// Kafka first hangs (every request answered only after 4 s, past the producer's
/// 2 s request timeout) and then goes down, 12 s in all, while the locks keep
/// publishing: they are acknowledged throughout, the spool grows, and once Kafka is
/// back everything arrives, in order.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hung_then_dead_kafka_loses_nothing_and_keeps_order() {
    let kafka = MockKafka::new(&["message_state", "message_command"]);
    let (_dir, dir) = temp_dir();
    let config = "[kafka.properties]\n\"request.timeout.ms\" = \"2000\"\n\"socket.timeout.ms\" = \"2000\"\n";
    let gateway = start_gateway(&dir, &kafka.bootstrap(), config).await;
    let fleet = Fleet::start(&watch::Sender::new(gateway.addr), 600, Duration::from_millis(20));

    flowing(&gateway).await;
    // The outage is what is under test: hung for several of the producer's 2 s request
    // timeouts, then down, while the locks publish.
    kafka.cluster.broker_round_trip_time(1, Duration::from_secs(4)).unwrap();
    tokio::time::sleep(Duration::from_secs(6)).await;
    kafka.cluster.broker_round_trip_time(1, Duration::ZERO).unwrap();
    kafka.cluster.broker_down(1).unwrap();
    tokio::time::sleep(Duration::from_secs(6)).await;
    kafka.cluster.broker_up(1).unwrap();

    let stats = fleet.finish().await;
    let (received, duplicated) = check_delivery(&kafka.bootstrap(), &stats);
    report("hung then dead Kafka", &stats, received, duplicated, gateway.peak_rss_mib());
    assert!(stats.iter().all(|s| s.acknowledged == 600), "every lock got all its messages acknowledged during the outage");
    // Requests that timed out against the hung broker have an unknown outcome; the
    // producer retries them under a new epoch, so a few may be written twice.
    assert!(duplicated < received / 10, "{duplicated} duplicates of {received}");
}

/// SIGTERM while the locks publish and Kafka is slow: the gateway exits 0 with records
/// still undelivered in the spool; the next start delivers them and the locks finish.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_under_load_then_restart_loses_nothing() {
    let kafka = MockKafka::new(&["message_state", "message_command"]);
    let (_dir, dir) = temp_dir();
    let mut gateway = start_gateway(&dir, &kafka.bootstrap(), "").await;
    let addr = watch::Sender::new(gateway.addr);
    let fleet = Fleet::start(&addr, 400, Duration::from_millis(10));
    flowing(&gateway).await;
    // A Kafka this slow cannot take everything before the shutdown grace ends.
    kafka.cluster.broker_round_trip_time(1, Duration::from_secs(12)).unwrap();
    in_flight(&gateway).await;
    let first_peak = gateway.peak_rss_mib();
    gateway.signal("-TERM");
    let exit = gateway.wait_exit(Duration::from_secs(30)).await;
    assert!(exit.success(), "exit status after SIGTERM: {exit:?}");
    let log = gateway.log_text();
    assert!(log.contains("stay in the spool"), "the first run ended with records left in the spool:\n{log}");
    kafka.cluster.broker_round_trip_time(1, Duration::ZERO).unwrap();

    let gateway = start_gateway(&dir, &kafka.bootstrap(), "").await;
    addr.send_replace(gateway.addr);
    let stats = fleet.finish().await;
    let (received, duplicated) = check_delivery(&kafka.bootstrap(), &stats);
    report("SIGTERM under load, restart", &stats, received, duplicated, first_peak.max(gateway.peak_rss_mib()));
    let log = gateway.log_text();
    assert!(log.contains("resuming the spool"), "the second run resumed the spool:\n{log}");
}

/// `kill -9` while the locks publish, with the strictest durability setting: every
/// message a lock saw acknowledged reaches Kafka after the restart.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_9_under_load_with_fsync_always_loses_nothing_acknowledged() {
    let kafka = MockKafka::new(&["message_state", "message_command"]);
    let (_dir, dir) = temp_dir();
    let config = "[buffer]\nfsync = \"always\"\n";
    let mut gateway = start_gateway(&dir, &kafka.bootstrap(), config).await;
    let addr = watch::Sender::new(gateway.addr);
    let fleet = Fleet::start(&addr, 400, Duration::from_millis(10));
    flowing(&gateway).await;
    kafka.cluster.broker_round_trip_time(1, Duration::from_millis(500)).unwrap();
    in_flight(&gateway).await;
    let first_peak = gateway.peak_rss_mib();
    gateway.signal("-KILL");
    gateway.wait_exit(Duration::from_secs(10)).await;
    kafka.cluster.broker_round_trip_time(1, Duration::ZERO).unwrap();

    let gateway = start_gateway(&dir, &kafka.bootstrap(), config).await;
    addr.send_replace(gateway.addr);
    let stats = fleet.finish().await;
    let (received, duplicated) = check_delivery(&kafka.bootstrap(), &stats);
    report("kill -9 under load, fsync always", &stats, received, duplicated, first_peak.max(gateway.peak_rss_mib()));
}

/// With no Kafka and `when_full = "reject"`, a full spool refuses publishes: an MQTT 5
/// lock is told Quota exceeded (0x97), an MQTT 3.1.1 lock is disconnected before its
/// publish is acknowledged. Neither is acknowledged and then lost.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_spool_rejects_when_configured_to() {
    use rumqttc::v5::mqttbytes::v5::{Packet as V5Packet, PubAckReason};
    use rumqttc::v5::mqttbytes::QoS as V5QoS;

    let rules = shipped_rules();
    let no_kafka = ClosedPort::new();
    let scene = crate::support::scene::Scene::start_with(&rules, Some(no_kafka.addr()), |config| {
        config.buffer.max_bytes = 8 * 1024;
        config.buffer.segment_bytes = 4096;
        config.broker.max_packet_size = 1024;
        config.buffer.when_full = hookline::config::WhenFull::Reject;
        config.kafka.properties.insert("queue.buffering.max.messages".into(), "10".into());
    })
    .await;

    let options = rumqttc::v5::MqttOptions::new("lock-v5", scene.addr.ip().to_string(), scene.addr.port());
    let (client, mut eventloop) = rumqttc::v5::AsyncClient::new(options, 10);
    let deadline = Instant::now() + Duration::from_secs(20);
    let mut acknowledged = 0;
    let refusal = loop {
        assert!(Instant::now() < deadline, "no refusal after {acknowledged} acknowledged publishes");
        client.publish("devices/lock-v5/state", V5QoS::AtLeastOnce, false, vec![b'x'; 200]).await.unwrap();
        // rumqttc 0.25 hands a refusing PUBACK over as it is.
        let outcome = loop {
            match eventloop.poll().await {
                Ok(rumqttc::v5::Event::Incoming(V5Packet::PubAck(ack))) if ack.reason == PubAckReason::Success => break None,
                Ok(rumqttc::v5::Event::Incoming(V5Packet::PubAck(ack))) => break Some(format!("{:?}", ack.reason)),
                Ok(_) => {}
                Err(e) => break Some(e.to_string()),
            }
        };
        match outcome {
            None => acknowledged += 1,
            Some(error) => break error,
        }
    };
    assert!(refusal.contains("QuotaExceeded"), "{refusal}");

    let mut options = MqttOptions::new("lock-v4", scene.addr.ip().to_string(), scene.addr.port());
    options.set_keep_alive(Duration::from_secs(30));
    let (client, mut eventloop) = AsyncClient::new(options, 10);
    client.publish("devices/lock-v4/state", QoS::AtLeastOnce, false, vec![b'x'; 200]).await.unwrap();
    let closed = loop {
        match tokio::time::timeout(Duration::from_secs(5), eventloop.poll()).await.expect("an answer within 5 s") {
            Ok(Event::Incoming(Packet::PubAck(ack))) => panic!("acknowledged although the spool is full: {ack:?}"),
            Ok(_) => {}
            Err(e) => break e.to_string(),
        }
    };
    println!("full spool: MQTT 5 lock refused after {acknowledged} acknowledged ({refusal}); MQTT 3.1.1 lock disconnected ({closed})");
    assert!(scene.counter("spool_rejected") >= 2);
    assert_eq!(scene.counter("spool_dropped"), 0);
    assert!(scene.counter("spool_backlog_bytes") <= 8 * 1024);
}
