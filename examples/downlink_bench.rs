//! Downlink benchmark: commands produced to Kafka (librdkafka's mock cluster, in
//! process) and delivered by in-process gateway nodes (one cluster, `--nodes`) to MQTT
//! locks (rumqttc clients spread over the nodes, QoS 1 subscriptions, acknowledging each
//! command). Reports commands per second
//! received and acknowledged (offsets committable), and the latency from produce to
//! the lock's receipt, beside the reference measured in the same run: a plain Kafka
//! consumer of the same records (produce to consume, the floor any Kafka-to-device path
//! pays).
//!
//!   cargo run --release --example downlink_bench -- --locks 50 --commands 20000 --nodes 3

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use clap::Parser;
use hdrhistogram::Histogram;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::mocking::MockCluster;
use rdkafka::producer::{BaseProducer, BaseRecord, Producer};
use rdkafka::{ClientConfig, Message};
use rumqttc::{AsyncClient, Event, MqttOptions, Packet, QoS};

#[derive(Parser)]
struct Args {
    /// Locks (MQTT clients), each subscribed to its own command topic.
    #[arg(long, default_value_t = 50)]
    locks: usize,
    /// Commands produced, round-robin over the locks.
    #[arg(long, default_value_t = 20_000)]
    commands: usize,
    /// Partitions of `device_commands`.
    #[arg(long, default_value_t = 4)]
    partitions: i32,
    /// Commands produced per second; 0: as fast as the producer takes them.
    #[arg(long, default_value_t = 0)]
    rate: u64,
    /// Gateway nodes of the cluster; lock i connects to node i mod nodes.
    #[arg(long, default_value_t = 1)]
    nodes: usize,
}

fn now_us() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_micros() as u64
}

/// The produce time a command carries: `{"action":"unlock","seq":N,"sent_us":T}`.
fn sent_us(payload: &[u8]) -> Option<(u64, u64)> {
    let value: serde_json::Value = serde_json::from_slice(payload).ok()?;
    Some((value["seq"].as_u64()?, value["sent_us"].as_u64()?))
}

struct Received {
    latency: Histogram<u64>,
    seen: HashMap<u64, u32>,
    last_at: Option<Instant>,
}

fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build()?;
    let cluster = MockCluster::new(1)?;
    cluster.create_topic("device_commands", args.partitions, 1)?;
    // The gateways' cluster topics (the mock cluster cannot be asked to create them).
    for (topic, partitions) in hookline::cluster::topics(&Default::default()) {
        cluster.create_topic(&topic, partitions, 1)?;
    }
    let bootstrap = cluster.bootstrap_servers();
    let dir = tempfile::tempdir()?;
    // The shipped downlink rule: device_commands -> devices/{key}/command, QoS 1.
    std::fs::create_dir_all(dir.path().join("rules"))?;
    let shipped = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("rules/device_commands.wasm");
    std::fs::copy(&shipped, dir.path().join("rules/device_commands.wasm"))?;

    runtime.block_on(async {
        let mut gateways = Vec::new();
        for n in 0..args.nodes {
            let data = dir.path().join(format!("data-{n}"));
            let mut config = hookline::Config { node: format!("node-{n}"), data, ..Default::default() };
            config.broker.listen = "127.0.0.1:0".parse()?;
            config.rules.dir = dir.path().join("rules");
            config.kafka.bootstrap_servers = bootstrap.clone();
            config.sink.kind = Some(hookline::config::SinkKind::File);
            config.admin.enabled = false;
            config.auth.anonymous = true;
            gateways.push(hookline::Gateway::start(config.validate()?).await?);
        }

        let received = Arc::new(Mutex::new(Received { latency: Histogram::new(3)?, seen: HashMap::new(), last_at: None }));
        let mut clients = Vec::new();
        for i in 0..args.locks {
            let id = format!("lock-{i}");
            let addr = gateways[i % args.nodes].mqtt_addr();
            let mut options = MqttOptions::new(&id, addr.ip().to_string(), addr.port());
            options.set_keep_alive(Duration::from_secs(60));
            options.set_inflight(1000);
            let (client, mut events) = AsyncClient::new(options, 1000);
            client.subscribe(format!("devices/{id}/command"), QoS::AtLeastOnce).await?;
            let received = received.clone();
            let (subscribed_tx, subscribed_rx) = tokio::sync::oneshot::channel();
            tokio::spawn(async move {
                let mut subscribed = Some(subscribed_tx);
                while let Ok(event) = events.poll().await {
                    match event {
                        Event::Incoming(Packet::SubAck(_)) => {
                            if let Some(tx) = subscribed.take() {
                                let _ = tx.send(());
                            }
                        }
                        Event::Incoming(Packet::Publish(publish)) => {
                            if let Some((seq, sent)) = sent_us(&publish.payload) {
                                let mut received = received.lock().unwrap();
                                let _ = received.latency.record(now_us().saturating_sub(sent));
                                *received.seen.entry(seq).or_default() += 1;
                                received.last_at = Some(Instant::now());
                            }
                        }
                        _ => {}
                    }
                }
            });
            subscribed_rx.await?;
            clients.push(client);
        }

        // The reference: a plain consumer of the same records, in its own group.
        let floor = Arc::new(Mutex::new(Histogram::<u64>::new(3)?));
        let floor_done = Arc::new(AtomicBool::new(false));
        let reference = {
            let (floor, done, bootstrap, commands) = (floor.clone(), floor_done.clone(), bootstrap.clone(), args.commands);
            std::thread::spawn(move || -> anyhow::Result<()> {
                let consumer: BaseConsumer = ClientConfig::new()
                    .set("bootstrap.servers", &bootstrap)
                    .set("group.id", "reference")
                    .set("auto.offset.reset", "earliest")
                    // As the gateway's downlink consumer sets it.
                    .set("fetch.wait.max.ms", "10")
                    .create()?;
                consumer.subscribe(&["device_commands"])?;
                let mut count = 0;
                while count < commands && !done.load(Ordering::Relaxed) {
                    if let Some(Ok(message)) = consumer.poll(Duration::from_millis(100)) {
                        if let Some((_, sent)) = message.payload().and_then(sent_us) {
                            let _ = floor.lock().unwrap().record(now_us().saturating_sub(sent));
                            count += 1;
                        }
                    }
                }
                Ok(())
            })
        };
        // Give both consumer groups time to join before the clock starts.
        tokio::time::sleep(Duration::from_secs(4)).await;

        let producer: BaseProducer = ClientConfig::new().set("bootstrap.servers", &bootstrap).set("linger.ms", "1").create()?;
        let started = Instant::now();
        for seq in 0..args.commands {
            if args.rate > 0 {
                let due = started + Duration::from_secs_f64(seq as f64 / args.rate as f64);
                if let Some(wait) = due.checked_duration_since(Instant::now()) {
                    std::thread::sleep(wait);
                }
            }
            let key = format!("lock-{}", seq % args.locks);
            let value = format!("{{\"action\":\"unlock\",\"seq\":{seq},\"sent_us\":{}}}", now_us());
            let mut record = BaseRecord::to("device_commands").key(&key).payload(&value);
            loop {
                match producer.send(record) {
                    Ok(()) => break,
                    Err((_, back)) => {
                        record = back;
                        producer.poll(Duration::from_millis(1));
                    }
                }
            }
            producer.poll(Duration::ZERO);
        }
        producer.flush(Duration::from_secs(30))?;
        let produced_in = started.elapsed();

        let deadline = Instant::now() + Duration::from_secs(120);
        while received.lock().unwrap().seen.len() < args.commands && Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        let total = |counter: fn(&hookline::metrics::Metrics) -> &std::sync::atomic::AtomicU64| {
            gateways.iter().map(|g| hookline::metrics::Metrics::get(counter(g.metrics()))).sum::<u64>()
        };
        let done = || total(|m| &m.downlink_done);
        // The locks' PUBACKs, as the gateways raise them (`message.acked`).
        let acked = || total(|m| &m.hook_events[hookline::hooks::Hook::MessageAcked.code() as usize]);
        while (done() < args.commands as u64 || acked() < args.commands as u64) && Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        let acked_in = started.elapsed();
        floor_done.store(true, Ordering::Relaxed);
        let _ = reference.join();

        let received = std::mem::replace(&mut *received.lock().unwrap(), Received { latency: Histogram::new(3)?, seen: HashMap::new(), last_at: None });
        let received_in = received.last_at.map_or(Duration::ZERO, |t| t - started);
        let duplicates: u32 = received.seen.values().map(|n| n - 1).sum();
        let missing = args.commands - received.seen.len();
        let floor = floor.lock().unwrap().clone();
        let ms = |h: &Histogram<u64>, q: f64| h.value_at_quantile(q) as f64 / 1000.0;
        let rate = if args.rate > 0 { format!("{}/s", args.rate) } else { "as fast as possible".into() };
        println!(
            "downlink: {} commands to {} locks on {} node(s) over {} partitions, produced {rate} (in {:.2} s)",
            args.commands,
            args.locks,
            args.nodes,
            args.partitions,
            produced_in.as_secs_f64()
        );
        println!(
            "  hookline  received by the locks: {:.0} commands/s; acknowledged by the locks (PUBACK) and committed: {:.0} commands/s; missing {missing}, duplicates {duplicates}",
            args.commands as f64 / received_in.as_secs_f64(),
            acked().min(done()) as f64 / acked_in.as_secs_f64(),
        );
        println!("  latency produce -> lock receipt: p50 {:.1} ms, p99 {:.1} ms, max {:.1} ms", ms(&received.latency, 0.5), ms(&received.latency, 0.99), ms(&received.latency, 1.0));
        println!("  reference (plain Kafka consumer, same records): p50 {:.1} ms, p99 {:.1} ms, max {:.1} ms", ms(&floor, 0.5), ms(&floor, 0.99), ms(&floor, 1.0));
        drop(clients);
        for gateway in gateways {
            gateway.shutdown().await?;
        }
        anyhow::Ok(())
    })
}
