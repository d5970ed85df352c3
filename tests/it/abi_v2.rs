//! ABI v2 on the uplink, through a running gateway and the file sink: a positive return
//! accepts (v1 would reject), a negative one rejects, `route_value` sends the MQTT
//! payload as it is instead of the envelope, and `route_to` names a destination.

use std::time::Duration;

use rumqttc::QoS;

use crate::support::fixtures::RuleWat;
use crate::support::scene::{wait_for, Device, Scene};

/// Routes every state report to `raw` with its payload as the value, then returns `code`.
fn raw_payload_rule(abi: u8, code: i32) -> String {
    let on_event = format!(
        "(drop (call $route (i32.const 32) (i32.const 3) (i32.const 0) (i32.const -1)))
    (drop (call $route_value (i32.const 1) (i32.const 0) (i32.const 0)))
    (i32.const {code})"
    );
    let (hook, filter) = ("message.publish", "devices/+/state");
    RuleWat { abi, imports: &["route", "route_value"], hook, filter, data: &[(32, "raw")], on_event: &on_event, ..Default::default() }
        .build()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn v2_accepts_non_negative_results_and_routes_the_raw_payload() {
    let accepting = raw_payload_rule(2, 7);
    let rejecting = raw_payload_rule(2, -2);
    let v1 = raw_payload_rule(1, 7);
    let scene =
        Scene::start(&[("accepting.wat", accepting.as_bytes()), ("rejecting.wat", rejecting.as_bytes()), ("v1.wat", v1.as_bytes())], None)
            .await;
    let lock = Device::connect(scene.addr, "lock-1").await;
    let report = r#"{"battery":83.4,"lock_state":1}"#;
    lock.publish("devices/lock-1/state", report, QoS::AtLeastOnce).await;

    assert!(wait_for(Duration::from_secs(10), || scene.counter("rule_calls") == 3).await);
    assert_eq!(scene.counter("rule_errors"), 2, "the -2 of v2 and the 7 of v1 reject");
    let records = scene.file_records(1).await;
    let raw: Vec<_> = records.iter().filter(|r| r["topic"] == "raw").collect();
    assert_eq!(raw.len(), 1, "the accepting rule's route only: {records:#?}");
    assert_eq!(raw[0]["value_text"], report, "the payload as the lock sent it");
    assert!(raw[0].get("value").is_none());
}

/// Routes every state report with `route_to(destination, topic)`, accepting the event
/// whatever the host answers (a refused route voids the decision all the same).
fn route_to_rule(destination: &str, topic: &str) -> String {
    let on_event = format!(
        "(drop (call $route_to (i32.const 32) (i32.const {}) (i32.const 64) (i32.const {}) (i32.const 0) (i32.const -1)))
    (i32.const 0)",
        destination.len(),
        topic.len()
    );
    let (hook, filter, data) = ("message.publish", "devices/+/state", [(32, destination), (64, topic)]);
    RuleWat { abi: 2, imports: &["route_to"], hook, filter, data: &data, on_event: &on_event, ..Default::default() }.build()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn route_to_names_a_configured_destination_and_its_topic_rules() {
    let rules = [
        ("to_file.wat", route_to_rule("file", "via-file")),
        ("to_nowhere.wat", route_to_rule("nowhere", "via-file")),
        ("bad_exchange.wat", route_to_rule("rabbit", "bad/exchange")),
    ];
    let rules: Vec<(&str, &[u8])> = rules.iter().map(|(name, wat)| (*name, wat.as_bytes())).collect();
    // A RabbitMQ destination nobody listens for: the gateway starts all the same.
    let closed = crate::support::ports::ClosedPort::new();
    let unreachable = format!("amqp://guest:guest@{}/%2f", closed.addr());
    let mut scene = Scene::start_with(&rules, None, |config| {
        config.sink.kind = Some(hookline::config::SinkKind::File);
        let rabbit = hookline::config::RabbitMqConfig { uri: unreachable, ..Default::default() };
        config.sink.rabbitmq.insert("rabbit".into(), rabbit);
    })
    .await;
    let lock = Device::connect(scene.addr, "lock-1").await;
    lock.publish("devices/lock-1/state", "{}", QoS::AtLeastOnce).await;

    assert!(wait_for(Duration::from_secs(10), || scene.counter("rule_calls") == 3).await);
    assert_eq!(scene.counter("rule_invalid_output"), 2, "an unknown destination (-1) and an exchange name with `/` (-6)");
    let records = scene.file_records(1).await;
    assert_eq!(records.len(), 1, "{records:#?}");
    assert_eq!(records[0]["topic"], "via-file");
    scene.shutdown().await;
}
