//! A rough door-lock load generator: N simulated locks each publish M state reports
//! (QoS 1) to a running gateway as fast as their in-flight window allows, then, with
//! `--kafka`, it reads `message_state` until every report is there.
//!
//! It prints acknowledged publishes per second and, with Kafka, end-to-end records per
//! second (first publish to last record readable). Stops by itself.
//!
//! With `--in-process` it starts the gateway itself (rules from `rules/`) in front of
//! `--kafka` or of librdkafka's mock cluster (`--mock-kafka`), and reports the rate at
//! which Kafka acknowledged the records (delivery reports, acks=all).
//!
//! ```text
//! cargo run --release --example loadgen -- --mqtt 127.0.0.1:1883 --devices 20 --messages 5000 \
//!     --kafka 127.0.0.1:9092
//! cargo run --release --example loadgen -- --in-process --mock-kafka
//! ```

use std::collections::HashMap;
use std::time::{Duration, Instant};

use clap::Parser;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::{ClientConfig, Message};
use rumqttc::{AsyncClient, Event, MqttOptions, Packet, QoS};

#[derive(Parser)]
struct Args {
    /// Gateway MQTT address.
    #[arg(long, default_value = "127.0.0.1:1883")]
    mqtt: String,
    /// Simulated locks (one MQTT connection each).
    #[arg(long, default_value_t = 20)]
    devices: usize,
    /// State reports per lock.
    #[arg(long, default_value_t = 5000)]
    messages: usize,
    /// Payload size in bytes.
    #[arg(long, default_value_t = 1024)]
    payload: usize,
    /// Unacknowledged publishes per lock.
    #[arg(long, default_value_t = 100)]
    inflight: u16,
    /// Kafka bootstrap servers: count records on `message_state` too.
    #[arg(long)]
    kafka: Option<String>,
    /// Start the gateway in this process (rules from ./rules) instead of using --mqtt.
    #[arg(long)]
    in_process: bool,
    /// With --in-process: produce to librdkafka's in-process mock cluster.
    #[arg(long)]
    mock_kafka: bool,
    /// Give up waiting for records after this many seconds.
    #[arg(long, default_value_t = 120)]
    timeout: u64,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let mut args = Args::parse();
    let mock = if args.mock_kafka {
        let cluster = rdkafka::mocking::MockCluster::new(1)?;
        cluster.create_topic("message_state", 1, 1)?;
        args.kafka = Some(cluster.bootstrap_servers());
        Some(cluster)
    } else {
        None
    };
    let gateway = if args.in_process {
        let port = std::net::TcpListener::bind("127.0.0.1:0")?.local_addr()?.port();
        args.mqtt = format!("127.0.0.1:{port}");
        let mut config = hookline::Config::default();
        config.broker.listen = args.mqtt.parse()?;
        config.kafka.bootstrap_servers = args.kafka.take().ok_or_else(|| anyhow::anyhow!("--in-process needs --kafka or --mock-kafka"))?;
        Some(hookline::Gateway::start(config).await?)
    } else {
        None
    };
    let (host, port) = args.mqtt.rsplit_once(':').ok_or_else(|| anyhow::anyhow!("--mqtt must be host:port"))?;
    let port: u16 = port.parse()?;
    let run = format!("{:x}", hookline::hooks::now_ms());
    let consumer = args.kafka.as_deref().map(kafka_consumer).transpose()?;

    let started = Instant::now();
    let mut tasks = Vec::new();
    for d in 0..args.devices {
        let client_id = format!("load-{run}-{d}");
        let mut options = MqttOptions::new(&client_id, host, port);
        options.set_inflight(args.inflight);
        options.set_keep_alive(Duration::from_secs(30));
        options.set_max_packet_size(args.payload + 1024, args.payload + 1024);
        let (client, mut eventloop) = AsyncClient::new(options, args.inflight as usize);
        let (messages, payload) = (args.messages, args.payload);
        tasks.push(tokio::spawn(async move {
            let topic = format!("devices/{client_id}/state");
            let publisher = tokio::spawn(async move {
                // Incompressible padding, so compression does not flatter the numbers.
                let mut seed = 0x9e37_79b9_7f4a_7c15_u64 ^ d as u64;
                for i in 0..messages {
                    let mut body = format!("{i:>10}").into_bytes();
                    while body.len() < payload {
                        seed ^= seed << 13;
                        seed ^= seed >> 7;
                        seed ^= seed << 17;
                        body.push(b'a' + (seed % 26) as u8);
                    }
                    client.publish(&topic, QoS::AtLeastOnce, false, body).await?;
                }
                anyhow::Ok(client)
            });
            let mut acked = 0;
            while acked < messages {
                match eventloop.poll().await {
                    Ok(Event::Incoming(Packet::PubAck(_))) => acked += 1,
                    Ok(_) => {}
                    Err(e) => anyhow::bail!("MQTT connection failed after {acked} acks: {e}"),
                }
            }
            publisher.await??;
            Ok(acked)
        }));
    }
    let mut acked = 0;
    for task in tasks {
        acked += task.await??;
    }
    let publish_time = started.elapsed();
    println!(
        "published and acknowledged: {acked} QoS 1 messages of {} B from {} devices in {:.2} s = {:.0} msg/s",
        args.payload,
        args.devices,
        publish_time.as_secs_f64(),
        acked as f64 / publish_time.as_secs_f64()
    );

    if let Some(gateway) = &gateway {
        let expected = acked as u64;
        let metrics = gateway.metrics();
        let deadline = Instant::now() + Duration::from_secs(args.timeout);
        let delivered = || hookline::metrics::Metrics::get(&metrics.records_delivered);
        while delivered() < expected && Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
        let total = started.elapsed();
        println!(
            "acknowledged by Kafka: {}/{expected} records in {:.2} s = {:.0} records/s end to end (failed {}, hook events dropped {})",
            delivered(),
            total.as_secs_f64(),
            delivered() as f64 / total.as_secs_f64(),
            hookline::metrics::Metrics::get(&metrics.records_failed),
            hookline::metrics::Metrics::get(&metrics.hook_events_dropped),
        );
    }
    drop(mock);

    if let Some(consumer) = consumer {
        let expected = args.devices * args.messages;
        let prefix = format!("load-{run}-");
        let deadline = Instant::now() + Duration::from_secs(args.timeout);
        let mut per_key: HashMap<Vec<u8>, usize> = HashMap::new();
        let mut received = 0;
        while received < expected && Instant::now() < deadline {
            if let Some(Ok(message)) = consumer.poll(Duration::from_millis(100)) {
                let key = message.key().unwrap_or_default();
                if key.starts_with(prefix.as_bytes()) {
                    *per_key.entry(key.to_vec()).or_default() += 1;
                    received += 1;
                }
            }
        }
        let total = started.elapsed();
        println!(
            "records on message_state: {received}/{expected} from {} devices in {:.2} s = {:.0} records/s end to end{}",
            per_key.len(),
            total.as_secs_f64(),
            received as f64 / total.as_secs_f64(),
            if received < expected { " (timed out)" } else { "" }
        );
    }
    Ok(())
}

fn kafka_consumer(bootstrap: &str) -> anyhow::Result<BaseConsumer> {
    let consumer: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .set("group.id", format!("loadgen-{}", hookline::hooks::now_ms()))
        .set("auto.offset.reset", "latest")
        .set("enable.auto.commit", "false")
        .set("session.timeout.ms", "6000")
        .set("heartbeat.interval.ms", "500")
        // Some Kafka-compatible brokers answer a fetch with one batch only; ask often.
        .set("fetch.wait.max.ms", "5")
        .create()?;
    consumer.subscribe(&["message_state"])?;
    // Join the group before publishing, so "latest" means "from now".
    let deadline = Instant::now() + Duration::from_secs(30);
    while consumer.assignment()?.count() == 0 && Instant::now() < deadline {
        consumer.poll(Duration::from_millis(100));
    }
    Ok(consumer)
}
