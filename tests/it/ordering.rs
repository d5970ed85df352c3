//! Per-device order survives the whole path: events of one client id reach Kafka in
//! the order they were published, with the client id as key.

use std::collections::HashMap;
use std::time::Duration;

use rumqttc::QoS;

use crate::support::fixtures::route_rule;
use crate::support::scene::{consume, Device, MockKafka, Scene};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ten_devices_times_a_thousand_interleaved_publishes_arrive_in_order_per_device() {
    const DEVICES: usize = 10;
    const EACH: usize = 1000;
    let kafka = MockKafka::new(&["message_state"]);
    let rule = route_rule("message.publish", "devices/+/state", "message_state");
    let mut scene = Scene::start(&[("state.wat", rule.as_bytes())], Some(kafka.bootstrap())).await;

    let mut devices = Vec::new();
    for d in 0..DEVICES {
        devices.push(Device::connect(scene.addr, &format!("lock-{d}")).await);
    }
    for i in 0..EACH {
        for (d, device) in devices.iter().enumerate() {
            device.publish(&format!("devices/lock-{d}/state"), format!("{i}"), QoS::AtLeastOnce).await;
        }
    }
    for device in &mut devices {
        device.wait_pubacks(EACH).await;
    }
    let metrics = scene.gateway().metrics().clone();
    scene.shutdown().await;

    let bootstrap = kafka.bootstrap();
    let records = tokio::task::spawn_blocking(move || {
        consume(&bootstrap, "message_state", DEVICES * EACH, Duration::from_secs(60), Duration::from_millis(500))
    })
    .await
    .unwrap();
    assert_eq!(records.len(), DEVICES * EACH, "every publish exactly once; gateway counters: {:?}", metrics.snapshot());
    let mut next: HashMap<String, usize> = HashMap::new();
    for record in &records {
        let value = record.json();
        assert_eq!(value["client_id"], record.key.as_str(), "key is the client id");
        let payload = base64_decode(value["payload"].as_str().unwrap());
        let seq: usize = String::from_utf8(payload).unwrap().parse().unwrap();
        let expected = next.entry(record.key.clone()).or_default();
        assert_eq!(seq, *expected, "{} out of order", record.key);
        *expected += 1;
    }
    assert_eq!(next.len(), DEVICES);
}

pub fn base64_decode(text: &str) -> Vec<u8> {
    use base64::Engine as _;
    base64::engine::general_purpose::STANDARD.decode(text).unwrap()
}
