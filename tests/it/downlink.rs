//! The downlink: a business system produces a command to Kafka and the lock receives it
//! over MQTT at QoS 1; its PUBACK raises `message.acked`, which the uplink rules send to
//! `message_command`. Offsets are committed only for records that are done: in the
//! mailbox of every session they are for (the cluster's mailbox topic), or for nobody.

use std::time::Duration;

use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::{ClientConfig, TopicPartitionList};

use crate::support::fixtures::downlink_rule;
use crate::support::scene::{consume, produce, repo_rules, wait_for, Device, MockKafka, Scene};

const COMMAND: &str = r#"{"process_id":"7802441525528958","action":"unlock","client_id":"lock-1"}"#;

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
async fn a_command_is_committed_once_in_its_sessions_mailbox_and_delivered_again_until_acknowledged() {
    let kafka = MockKafka::new(&["device_commands"]);
    let rule = downlink_rule("device_commands");
    let scene = Scene::start(&[("downlink.wat", rule.as_bytes())], Some(kafka.bootstrap())).await;
    // A lock that subscribes and never acknowledges.
    let silent_lock = |o: &mut rumqttc::MqttOptions| {
        o.set_clean_session(false);
        o.set_manual_acks(true);
    };
    let mut silent = Device::connect_with(scene.addr, "lock-9", silent_lock).await;
    silent.subscribe("devices/lock-9/command").await;

    produce(&kafka.bootstrap(), "device_commands", Some("nobody"), COMMAND);
    produce(&kafka.bootstrap(), "device_commands", Some("lock-9"), COMMAND);
    produce(&kafka.bootstrap(), "device_commands", None, COMMAND);
    let received = tokio::time::timeout(Duration::from_secs(15), silent.inbox.recv()).await.expect("command within 15 s").unwrap();
    assert_eq!(received.topic, "devices/lock-9/command");
    assert!(wait_for(Duration::from_secs(10), || scene.counter("downlink_records") == 3).await);
    assert_eq!(scene.counter("downlink_undeliverable"), 1, "`nobody` has no subscription");
    assert_eq!(scene.counter("rule_errors"), 1, "the record without a key is rejected by the rule");

    // The lock's session holds the command (in the cluster's mailbox topic): every record
    // is done, though the lock has not acknowledged.
    let bootstrap = kafka.bootstrap();
    assert!(wait_for(Duration::from_secs(10), || committed(&bootstrap, "device_commands") == Some(3)).await);

    // Unacknowledged when the lock leaves: sent again when it is back.
    silent.disconnect().await;
    let mut lock = Device::connect_with(scene.addr, "lock-9", |o| {
        o.set_clean_session(false);
    })
    .await;
    let again = tokio::time::timeout(Duration::from_secs(10), lock.inbox.recv()).await.expect("sent again on return").unwrap();
    assert_eq!(&again.payload[..], COMMAND.as_bytes());
    // Acknowledged now: not sent a third time.
    lock.disconnect().await;
    let mut lock = Device::connect_with(scene.addr, "lock-9", |o| {
        o.set_clean_session(false);
    })
    .await;
    assert!(tokio::time::timeout(Duration::from_secs(2), lock.inbox.recv()).await.is_err(), "an acknowledged command is not sent again");
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
    assert!(wait_for(Duration::from_secs(15), || scene.counter("downlink_messages") == 1).await, "posted to the lock's session");
    let bootstrap = kafka.bootstrap();
    assert!(
        wait_for(Duration::from_secs(10), || committed(&bootstrap, "device_commands") == Some(1)).await,
        "committed once durably in the away session's mailbox"
    );

    let mut lock = Device::connect_with(scene.addr, "lock-7", persistent).await;
    let command = tokio::time::timeout(Duration::from_secs(10), lock.inbox.recv()).await.expect("command on return").unwrap();
    assert_eq!(&command.payload[..], COMMAND.as_bytes());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_command_for_a_session_that_expires_before_its_lock_returns_is_counted_and_passed() {
    use crate::support::raw_mqtt::{connect_with, prop_u32, subscribe, RawClient};
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
