//! The downlink: a business system produces a command to Kafka and the lock receives it
//! over MQTT at QoS 1; its PUBACK raises `message.acked`, which the uplink rules send to
//! `message_command`. Offsets are committed only for records that are done.

use std::time::Duration;

use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::producer::{BaseProducer, BaseRecord, Producer};
use rdkafka::{ClientConfig, TopicPartitionList};

use crate::fixtures::downlink_rule;
use crate::scene::{consume, repo_rules, wait_for, Device, MockKafka, Scene};

const COMMAND: &str = r#"{"process_id":"7802441525528958","action":"unlock","client_id":"lock-1"}"#;

fn produce(bootstrap: &str, topic: &str, key: Option<&str>, value: &str) {
    let producer: BaseProducer = ClientConfig::new().set("bootstrap.servers", bootstrap).create().expect("producer");
    let mut record = BaseRecord::to(topic).payload(value);
    if let Some(key) = key {
        record = record.key(key);
    }
    producer.send(record).map_err(|(e, _)| e).expect("produce");
    producer.flush(Duration::from_secs(10)).expect("flush");
}

/// The downlink group's committed offset of partition 0 of `topic`.
fn committed(bootstrap: &str, topic: &str) -> Option<i64> {
    let consumer: BaseConsumer =
        ClientConfig::new().set("bootstrap.servers", bootstrap).set("group.id", "hookline-downlink").create().expect("consumer");
    let mut partitions = TopicPartitionList::new();
    partitions.add_partition(topic, 0);
    let offsets = consumer.committed_offsets(partitions, Duration::from_secs(5)).ok()?;
    offsets.elements().first().and_then(|e| e.offset().to_raw()).filter(|o| *o >= 0)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_command_produced_to_kafka_reaches_its_lock_and_its_acknowledgement_reaches_message_command() {
    let kafka = MockKafka::new(&["device_commands", "message_command", "message_state"]);
    let rule = downlink_rule("device_commands");
    let command_rule = std::fs::read(repo_rules().join("message_command.wat")).unwrap();
    let scene = Scene::start(&[("downlink.wat", rule.as_bytes()), ("message_command.wat", &command_rule)], Some(kafka.bootstrap())).await;
    let mut lock = Device::connect_with(scene.addr, "lock-1", |o| {
        o.set_clean_session(false);
    })
    .await;
    lock.subscribe("devices/lock-1/command").await;

    produce(&kafka.bootstrap(), "device_commands", Some("lock-1"), COMMAND);
    let command = match tokio::time::timeout(Duration::from_secs(15), lock.inbox.recv()).await {
        Ok(command) => command.unwrap(),
        Err(_) => panic!("no command within 15 s; counters: {:?}", scene.gateway().metrics().snapshot()),
    };
    assert_eq!(command.topic, "devices/lock-1/command");
    assert_eq!(command.qos, rumqttc::QoS::AtLeastOnce);
    assert_eq!(&command.payload[..], COMMAND.as_bytes());

    // The lock's PUBACK: message.acked, routed to message_command, naming the origin.
    let bootstrap = kafka.bootstrap();
    let acked =
        tokio::task::spawn_blocking(move || consume(&bootstrap, "message_command", 1, Duration::from_secs(15), Duration::from_millis(500)))
            .await
            .unwrap();
    assert_eq!(acked.len(), 1, "{acked:?}");
    let envelope = acked[0].json();
    assert_eq!(envelope["client_id"], "lock-1");
    assert_eq!(envelope["from"], "kafka:device_commands");
    assert_eq!(envelope["topic"], "devices/lock-1/command");

    // Done once acknowledged: the offset moves past it.
    let bootstrap = kafka.bootstrap();
    let moved = wait_for(Duration::from_secs(10), || committed(&bootstrap, "device_commands") == Some(1)).await;
    assert!(moved, "committed offset {:?}, expected 1", committed(&kafka.bootstrap(), "device_commands"));
    assert_eq!(scene.counter("downlink_records"), 1);
    assert_eq!(scene.counter("downlink_messages"), 1);
    assert_eq!(scene.counter("downlink_done"), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unacknowledged_command_holds_the_offset_and_one_without_a_subscriber_is_counted_and_passed() {
    let kafka = MockKafka::new(&["device_commands"]);
    let rule = downlink_rule("device_commands");
    let scene = Scene::start(&[("downlink.wat", rule.as_bytes())], Some(kafka.bootstrap())).await;
    // A lock that subscribes and then goes away without acknowledging: a raw client
    // that never sends PUBACK.
    let mut silent = Device::connect_with(scene.addr, "lock-9", |o| {
        o.set_clean_session(false);
        o.set_manual_acks(true);
    })
    .await;
    silent.subscribe("devices/lock-9/command").await;

    produce(&kafka.bootstrap(), "device_commands", Some("nobody"), COMMAND);
    produce(&kafka.bootstrap(), "device_commands", Some("lock-9"), COMMAND);
    produce(&kafka.bootstrap(), "device_commands", None, COMMAND);
    let received = tokio::time::timeout(Duration::from_secs(15), silent.inbox.recv()).await.expect("command within 15 s").unwrap();
    assert_eq!(received.topic, "devices/lock-9/command");
    assert!(wait_for(Duration::from_secs(10), || scene.counter("downlink_records") == 3).await);
    assert_eq!(scene.counter("downlink_undeliverable"), 1, "`nobody` has no subscription");
    assert_eq!(scene.counter("rule_errors"), 1, "the record without a key is rejected by the rule");

    // The first record is done, the second waits for its PUBACK: the offset stops at 1.
    let bootstrap = kafka.bootstrap();
    assert!(wait_for(Duration::from_secs(10), || committed(&bootstrap, "device_commands") == Some(1)).await);
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert_eq!(committed(&kafka.bootstrap(), "device_commands"), Some(1), "no commit past an unacknowledged command");

    // The PUBACK arrives: the rest is done.
    silent.client.ack(&received).await.unwrap();
    let bootstrap = kafka.bootstrap();
    assert!(wait_for(Duration::from_secs(10), || committed(&bootstrap, "device_commands") == Some(3)).await);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lock_offline_with_a_persistent_session_gets_its_command_when_it_comes_back() {
    let kafka = MockKafka::new(&["device_commands"]);
    let rule = downlink_rule("device_commands");
    let scene = Scene::start(&[("downlink.wat", rule.as_bytes())], Some(kafka.bootstrap())).await;
    let persistent = |o: &mut rumqttc::MqttOptions| {
        o.set_clean_session(false);
    };
    let mut lock = Device::connect_with(scene.addr, "lock-7", persistent).await;
    lock.subscribe("devices/lock-7/command").await;
    lock.disconnect().await;

    produce(&kafka.bootstrap(), "device_commands", Some("lock-7"), COMMAND);
    assert!(wait_for(Duration::from_secs(15), || scene.counter("downlink_messages") == 1).await, "published into the lock's session");
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(committed(&kafka.bootstrap(), "device_commands"), None, "not committed while the lock is away");

    let mut lock = Device::connect_with(scene.addr, "lock-7", persistent).await;
    let command = tokio::time::timeout(Duration::from_secs(10), lock.inbox.recv()).await.expect("command on return").unwrap();
    assert_eq!(&command.payload[..], COMMAND.as_bytes());
    let bootstrap = kafka.bootstrap();
    assert!(wait_for(Duration::from_secs(10), || committed(&bootstrap, "device_commands") == Some(1)).await);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_command_for_a_session_that_expires_before_its_lock_returns_is_counted_and_passed() {
    use crate::raw_mqtt::{connect_with, prop_u32, subscribe, RawClient};
    let kafka = MockKafka::new(&["device_commands"]);
    let rule = downlink_rule("device_commands");
    let scene = Scene::start(&[("downlink.wat", rule.as_bytes())], Some(kafka.bootstrap())).await;
    // An MQTT 5 lock whose session lasts 10 s after it leaves (the consumer group takes
    // a few seconds to form).
    let mut lock = RawClient::open(scene.addr).await;
    lock.send(&connect_with(5, "lock-e", false, &prop_u32(0x11, 10), None)).await;
    assert_eq!(lock.receive().await.map(|(first, _)| first), Some(0x20));
    lock.send(&subscribe(5, 1, "devices/lock-e/command", 1)).await;
    assert_eq!(lock.receive().await.map(|(first, _)| first), Some(0x90));
    lock.send(&[0xe0, 0]).await;
    drop(lock);

    produce(&kafka.bootstrap(), "device_commands", Some("lock-e"), COMMAND);
    assert!(wait_for(Duration::from_secs(15), || scene.counter("downlink_messages") == 1).await, "kept for the session");
    assert!(wait_for(Duration::from_secs(20), || scene.counter("sessions_expired") == 1).await);
    assert_eq!(scene.counter("downlink_expired"), 1, "the command its session never received");
    let bootstrap = kafka.bootstrap();
    assert!(wait_for(Duration::from_secs(10), || committed(&bootstrap, "device_commands") == Some(1)).await, "and its record committed");
}
