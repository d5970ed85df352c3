//! Destinations benchmark: door-lock state reports per second the gateway delivers,
//! confirmed by the destination, into Kafka, into RabbitMQ (publisher confirms) and into
//! both at once (one rule routing each report to both), beside the references measured
//! in the same run against the same brokers: a bare librdkafka producer (idempotent,
//! acks=all) and a bare lapin publisher (persistent messages, confirms, the gateway's
//! window of unconfirmed messages). The gateway runs in this process; its MQTT clients
//! (rumqttc, QoS 1) publish as fast as their in-flight window allows, and the time runs
//! from the first publish until the destinations have confirmed every record. Run by
//! `bench/destinations.sh`, which starts tansu and rabbitmq-server.
//!
//!   cargo run --release --example destinations_bench -- --kafka 127.0.0.1:9092 \
//!       --amqp amqp://guest:guest@127.0.0.1:5672/%2f --locks 10 --messages 5000

use std::collections::VecDeque;
use std::time::{Duration, Instant};

use clap::Parser;
use hookline::config::{Config, RabbitMqConfig, SinkKind};
use hookline::gateway::Gateway;
use lapin::options::{
    BasicPublishOptions, ConfirmSelectOptions, ExchangeDeclareOptions, QueueBindOptions, QueueDeclareOptions, QueuePurgeOptions,
};
use lapin::types::FieldTable;
use lapin::{BasicProperties, Connection, ConnectionProperties, ExchangeKind};
use rdkafka::producer::{BaseRecord, Producer, ThreadedProducer};
use rdkafka::ClientConfig;
use rumqttc::{AsyncClient, Event, MqttOptions, Packet, QoS};

#[derive(Parser)]
struct Args {
    /// Kafka bootstrap servers (tansu in bench/destinations.sh).
    #[arg(long)]
    kafka: String,
    /// RabbitMQ URI.
    #[arg(long)]
    amqp: String,
    /// Locks (MQTT clients) publishing at once.
    #[arg(long, default_value_t = 10)]
    locks: usize,
    /// State reports per lock.
    #[arg(long, default_value_t = 5000)]
    messages: usize,
    /// Bytes per report (incompressible padding).
    #[arg(long, default_value_t = 1024)]
    payload: usize,
}

const TOPIC: &str = "message_state";
const QUEUE: &str = "bench-states";
/// The shipped rules route state reports with `route`, to the first destination.
const SHIPPED_RULES: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/rules");
const BOTH_RULE: &str = include_str!("rules/state_to_kafka_and_rabbitmq.wat");

/// Bytes that do not compress: a report's padding.
fn payload(size: usize, seed: usize) -> Vec<u8> {
    let mut state = seed as u64 * 0x9E37_79B9_7F4A_7C15 + 1;
    (0..size)
        .map(|_| {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            b'a' + (state % 26) as u8
        })
        .collect()
}

fn bare_kafka(args: &Args, total: usize) -> anyhow::Result<f64> {
    let producer: ThreadedProducer<_> = ClientConfig::new()
        .set("bootstrap.servers", &args.kafka)
        .set("enable.idempotence", "true")
        .set("acks", "all")
        .set("compression.type", "lz4")
        .set("linger.ms", "5")
        .create()?;
    let body = payload(args.payload, 1);
    let started = Instant::now();
    for i in 0..total {
        let key = format!("lock-{}", i % args.locks);
        let mut record = BaseRecord::to(TOPIC).key(&key).payload(&body);
        while let Err((_, returned)) = producer.send(record) {
            record = returned;
            std::thread::sleep(Duration::from_millis(1));
        }
    }
    producer.flush(Duration::from_secs(120))?;
    Ok(total as f64 / started.elapsed().as_secs_f64())
}

/// The bench's topic, 4 partitions, unless it exists.
async fn kafka_topic(bootstrap: &str) -> anyhow::Result<()> {
    use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
    let admin: AdminClient<rdkafka::client::DefaultClientContext> = ClientConfig::new().set("bootstrap.servers", bootstrap).create()?;
    let results = admin.create_topics(&[NewTopic::new(TOPIC, 4, TopicReplication::Fixed(1))], &AdminOptions::new()).await?;
    for result in results {
        match result {
            Ok(_) | Err((_, rdkafka::types::RDKafkaErrorCode::TopicAlreadyExists)) => {}
            Err((topic, code)) => anyhow::bail!("cannot create topic {topic}: {code}"),
        }
    }
    Ok(())
}

/// The bench's exchange, bound to a durable queue, emptied.
async fn rabbit_topology(uri: &str) -> anyhow::Result<()> {
    let connection = Connection::connect(uri, ConnectionProperties::default()).await?;
    let channel = connection.create_channel().await?;
    let durable = ExchangeDeclareOptions { durable: true, ..Default::default() };
    channel.exchange_declare(TOPIC.into(), ExchangeKind::Topic, durable, FieldTable::default()).await?;
    channel.exchange_declare("lock-events".into(), ExchangeKind::Topic, durable, FieldTable::default()).await?;
    let queue = QueueDeclareOptions { durable: true, ..Default::default() };
    channel.queue_declare(QUEUE.into(), queue, FieldTable::default()).await?;
    for exchange in [TOPIC, "lock-events"] {
        channel.queue_bind(QUEUE.into(), exchange.into(), "#".into(), QueueBindOptions::default(), FieldTable::default()).await?;
    }
    channel.queue_purge(QUEUE.into(), QueuePurgeOptions::default()).await?;
    connection.close(200, "ready".into()).await?;
    Ok(())
}

async fn bare_rabbit(args: &Args, total: usize, window: usize) -> anyhow::Result<f64> {
    let connection = Connection::connect(&args.amqp, ConnectionProperties::default()).await?;
    let channel = connection.create_channel().await?;
    channel.confirm_select(ConfirmSelectOptions::default()).await?;
    let body = payload(args.payload, 1);
    let mut in_flight = VecDeque::with_capacity(window);
    let started = Instant::now();
    for i in 0..total {
        if in_flight.len() == window {
            let confirm: lapin::PublisherConfirm = in_flight.pop_front().expect("full");
            anyhow::ensure!(confirm.await?.is_ack(), "RabbitMQ refused a message");
        }
        let properties = BasicProperties::default().with_delivery_mode(2);
        let key = format!("lock-{}", i % args.locks);
        let options = BasicPublishOptions { mandatory: true, immediate: false };
        in_flight.push_back(channel.basic_publish(TOPIC.into(), key.into(), options, &body, properties).await?);
    }
    for confirm in in_flight {
        anyhow::ensure!(confirm.await?.is_ack(), "RabbitMQ refused a message");
    }
    let rate = total as f64 / started.elapsed().as_secs_f64();
    connection.close(200, "done".into()).await?;
    Ok(rate)
}

/// Runs a gateway configured by `setup` with `rules` (file name, content), publishes
/// the load through it, and returns records confirmed per second once `records` are.
async fn through_gateway(args: &Args, rules: &[(String, Vec<u8>)], records: usize, setup: impl FnOnce(&mut Config)) -> anyhow::Result<f64> {
    let dir = tempfile::tempdir()?;
    let rules_dir = dir.path().join("rules");
    std::fs::create_dir_all(&rules_dir)?;
    for (name, content) in rules {
        std::fs::write(rules_dir.join(name), content)?;
    }
    let port = std::net::TcpListener::bind("127.0.0.1:0")?.local_addr()?.port();
    let mut config = Config { node: "bench@127.0.0.1".into(), data: dir.path().join("data"), ..Config::default() };
    config.broker.listen = format!("127.0.0.1:{port}").parse()?;
    config.rules.dir = rules_dir;
    config.admin.enabled = false;
    config.auth.anonymous = true;
    setup(&mut config);
    let gateway = Gateway::start(config.validate()?).await?;
    let delivered = |gateway: &Gateway| gateway.metrics().snapshot().get("records_delivered").copied().unwrap_or(0) as usize;

    let started = Instant::now();
    let mut locks = Vec::new();
    for l in 0..args.locks {
        let mut options = MqttOptions::new(format!("lock-{l}"), "127.0.0.1", port);
        options.set_inflight(100).set_max_packet_size(args.payload + 4096, args.payload + 4096);
        let (client, mut eventloop) = AsyncClient::new(options, 200);
        let (messages, body) = (args.messages, payload(args.payload, l + 2));
        locks.push(tokio::spawn(async move {
            let publishing = tokio::spawn(async move {
                for _ in 0..messages {
                    client
                        .publish(format!("devices/lock-{l}/state"), QoS::AtLeastOnce, false, body.clone())
                        .await
                        .expect("queue a publish");
                }
                client
            });
            let mut acked = 0;
            while acked < messages {
                if let Event::Incoming(Packet::PubAck(_)) = eventloop.poll().await.expect("MQTT connection") {
                    acked += 1;
                }
            }
            let client = publishing.await.expect("publisher");
            client.disconnect().await.ok();
        }));
    }
    for lock in locks {
        lock.await?;
    }
    let deadline = Instant::now() + Duration::from_secs(300);
    while delivered(&gateway) < records {
        anyhow::ensure!(Instant::now() < deadline, "only {} of {records} records confirmed after 300 s", delivered(&gateway));
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let rate = records as f64 / started.elapsed().as_secs_f64();
    gateway.shutdown().await?;
    Ok(rate)
}

fn shipped_rules() -> anyhow::Result<Vec<(String, Vec<u8>)>> {
    let mut rules = Vec::new();
    for entry in std::fs::read_dir(SHIPPED_RULES)? {
        let path = entry?.path();
        let name = path.file_name().unwrap_or_default().to_string_lossy().into_owned();
        if name.starts_with("message_") {
            rules.push((name, std::fs::read(&path)?));
        }
    }
    Ok(rules)
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let total = args.locks * args.messages;
    let window = RabbitMqConfig::default().max_in_flight;
    let shipped = shipped_rules()?;
    let rabbit = |config: &mut Config| {
        config.sink.rabbitmq.insert("rabbit".into(), RabbitMqConfig { uri: args.amqp.clone(), ..RabbitMqConfig::default() });
    };
    let kafka = |config: &mut Config| {
        config.sink.kind = Some(SinkKind::Kafka);
        config.kafka.bootstrap_servers = args.kafka.clone();
    };

    rabbit_topology(&args.amqp).await?;
    kafka_topic(&args.kafka).await?;
    let bare_kafka = tokio::task::block_in_place(|| bare_kafka(&args, total))?;
    let bare_rabbit = bare_rabbit(&args, total, window).await?;
    rabbit_topology(&args.amqp).await?;
    let to_kafka = through_gateway(&args, &shipped, total, kafka).await?;
    let to_rabbit = through_gateway(&args, &shipped, total, rabbit).await?;
    rabbit_topology(&args.amqp).await?;
    let both = [("both.wat".to_string(), BOTH_RULE.as_bytes().to_vec())];
    let to_both = through_gateway(&args, &both, 2 * total, |config| {
        kafka(config);
        rabbit(config);
    })
    .await?;
    rabbit_topology(&args.amqp).await?;

    println!("{} locks x {} QoS 1 reports of {} B = {total} records per target", args.locks, args.messages, args.payload);
    println!("| target | records/s confirmed | vs its bare client |");
    println!("| --- | ---: | ---: |");
    println!("| bare librdkafka producer (idempotent, acks=all) -> Kafka | {bare_kafka:.0} | 1.00x |");
    println!("| hookline -> Kafka | {to_kafka:.0} | {:.2}x |", to_kafka / bare_kafka);
    println!("| bare lapin publisher (persistent, confirms, window {window}) -> RabbitMQ | {bare_rabbit:.0} | 1.00x |");
    println!("| hookline -> RabbitMQ | {to_rabbit:.0} | {:.2}x |", to_rabbit / bare_rabbit);
    println!("| hookline -> Kafka and RabbitMQ (each report to both) | {to_both:.0} ({:.0} reports/s) | - |", to_both / 2.0);
    Ok(())
}
