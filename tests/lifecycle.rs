//! A gateway stops everything it starts: 20 gateways started and shut down one after
//! another in one process leave no thread behind but rumqttd's router threads (one
//! per gateway: rumqttd 0.20's router keeps a sender to its own channel and has no
//! stop, see docs/configuration.md, "Embedding"). Its own test binary, so no other test's threads are
//! counted.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use hookline::config::SinkKind;
use hookline::{Config, Gateway};
use rumqttc::{AsyncClient, Event, MqttOptions, Packet, QoS};

/// Thread names of this process, counted.
fn threads() -> BTreeMap<String, usize> {
    let mut names = BTreeMap::new();
    for task in std::fs::read_dir("/proc/self/task").unwrap().flatten() {
        if let Ok(name) = std::fs::read_to_string(task.path().join("comm")) {
            *names.entry(name.trim().to_string()).or_default() += 1;
        }
    }
    names
}

/// The threads that are not rumqttd's routers.
fn without_routers(mut names: BTreeMap<String, usize>) -> BTreeMap<String, usize> {
    names.retain(|name, _| !name.starts_with("router-"));
    names
}

fn routers(names: &BTreeMap<String, usize>) -> usize {
    names.iter().filter(|(name, _)| name.starts_with("router-")).map(|(_, n)| n).sum()
}

/// The thread set once idle runtime threads have gone, or what it is after 10 s.
async fn settled(expected: &BTreeMap<String, usize>) -> BTreeMap<String, usize> {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let now = without_routers(threads());
        if &now == expected || Instant::now() > deadline {
            return now;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// One gateway's life: start (file sink, or Kafka), one client publishing and
/// receiving, one admin request, shutdown.
async fn one_gateway(kafka: Option<String>) {
    let dir = tempfile::tempdir().unwrap();
    let mut config = Config { node: "gateway@127.0.0.1".into(), data: dir.path().join("data"), ..Config::default() };
    config.broker.listen = "127.0.0.1:0".parse().unwrap();
    config.rules.dir = dir.path().join("rules");
    config.rules.workers = 2;
    config.sink.kind = kafka.is_some().then_some(SinkKind::Kafka);
    config.kafka.bootstrap_servers = kafka.unwrap_or_default();
    config.admin.listen = "127.0.0.1:0".parse().unwrap();
    config.auth.anonymous = true;
    let gateway = Gateway::start(config.validate().expect("valid config")).await.expect("gateway starts");

    let addr: SocketAddr = gateway.mqtt_addr();
    let (client, mut events) = AsyncClient::new(MqttOptions::new("lifecycle", addr.ip().to_string(), addr.port()), 10);
    client.subscribe("a/b", QoS::AtLeastOnce).await.unwrap();
    client.publish("a/b", QoS::AtLeastOnce, false, "x").await.unwrap();
    let received = tokio::time::timeout(Duration::from_secs(10), async {
        loop {
            if let Event::Incoming(Packet::Publish(_)) = events.poll().await.expect("connection") {
                return;
            }
        }
    });
    received.await.expect("the message comes back");
    let admin = gateway.admin_addr().unwrap();
    let mut http = tokio::net::TcpStream::connect(admin).await.unwrap();
    tokio::io::AsyncWriteExt::write_all(&mut http, b"GET /healthz HTTP/1.1\r\nhost: x\r\n\r\n").await.unwrap();

    gateway.shutdown().await.expect("clean shutdown");
    drop((client, events, http));
}

#[test]
fn twenty_gateways_started_and_stopped_leave_no_thread_behind() {
    // Idle blocking-pool threads leave after 50 ms instead of tokio's 10 s, so what
    // is left is what the gateways left.
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .thread_keep_alive(Duration::from_millis(50))
        .enable_all()
        .build()
        .unwrap();
    let cluster = rdkafka::mocking::MockCluster::new(1).unwrap();
    // The gateways' cluster topics (the mock cluster cannot be asked to create them).
    for (topic, partitions) in hookline::cluster::topics(&Default::default()) {
        cluster.create_topic(&topic, partitions, 1).unwrap();
    }
    let before = threads();
    runtime.block_on(async {
        // The first life creates the process-wide pools (wasmtime's compiler threads,
        // librdkafka's global state) that live as long as the process.
        one_gateway(None).await;
        let after_one = settled(&without_routers(before.clone())).await;
        let routers_after_one = routers(&threads());
        for i in 1..20 {
            let kafka = (i % 2 == 1).then(|| cluster.bootstrap_servers());
            one_gateway(kafka).await;
        }
        let after_twenty = settled(&after_one).await;
        let all = threads();
        println!(
            "threads: before {} ({} routers), after 1 gateway {} + {} routers, after 20 gateways {} ({} routers)",
            before.values().sum::<usize>(),
            routers(&before),
            after_one.values().sum::<usize>(),
            routers_after_one,
            all.values().sum::<usize>(),
            routers(&all),
        );
        println!("before: {before:?}\nafter 1: {after_one:?}\nafter 20: {all:?}");
        assert_eq!(after_twenty, after_one, "threads other than rumqttd's routers left by 19 more gateways");
        assert_eq!(routers(&all), 20, "one router thread per gateway, parked");
    });
}
