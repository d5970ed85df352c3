//! Hostile and broken MQTT input closes only the offending connection, is counted, and
//! leaves the broker up and every other client working.

use std::time::Duration;

use rumqttc::QoS;

use crate::support::fixtures::route_rule;
use crate::support::raw_mqtt::{self, RawClient};
use crate::support::scene::{wait_for, Device, Scene};

async fn scene() -> Scene {
    let rule = route_rule("message.publish", "devices/+/state", "message_state");
    Scene::start_with(&[("state.wat", rule.as_bytes())], None, |config| {
        config.broker.max_packet_size = 1024;
    })
    .await
}

/// A neighbour connecting after the hostile input publishes: its publish is
/// acknowledged and routed right after the `earlier` records (the hostile input added
/// none).
async fn neighbour_is_unaffected(scene: &Scene, name: &str, earlier: usize) {
    let mut neighbour = Device::connect(scene.addr, name).await;
    neighbour.publish(&format!("devices/{name}/state"), "ok", QoS::AtLeastOnce).await;
    neighbour.wait_pubacks(1).await;
    let records = scene.file_records(earlier + 1).await;
    assert_eq!(records.len(), earlier + 1, "nothing else is routed: {records:#?}");
    assert_eq!(records[earlier]["key"], name);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_oversized_publish_closes_only_that_connection() {
    let scene = scene().await;
    let mut neighbour = Device::connect(scene.addr, "neighbour").await;
    let big = Device::connect_with(scene.addr, "big", |o| {
        o.set_max_packet_size(1 << 20, 1 << 20);
    })
    .await;
    big.publish("devices/big/state", vec![b'x'; 4096], QoS::AtLeastOnce).await;
    assert!(wait_for(Duration::from_secs(5), || scene.counter("mqtt_protocol_errors") == 1).await);
    assert_eq!(scene.counter("mqtt_oversized_packets"), 1);

    neighbour.publish("devices/neighbour/state", "ok", QoS::AtLeastOnce).await;
    neighbour.wait_pubacks(1).await;
    let records = scene.file_records(1).await;
    assert_eq!(records.len(), 1, "the oversized publish is not routed: {records:#?}");
    assert_eq!(records[0]["key"], "neighbour");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn garbage_bytes_and_a_bad_remaining_length_are_refused() {
    let scene = scene().await;
    let mut garbage = RawClient::open(scene.addr).await;
    garbage.send(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n").await;
    assert!(garbage.closed_by_peer().await, "garbage is not MQTT");

    // A remaining length with a fifth continuation byte is malformed.
    let mut bad_length = RawClient::open(scene.addr).await;
    bad_length.send(&[0x10, 0xff, 0xff, 0xff, 0xff, 0x7f]).await;
    assert!(bad_length.closed_by_peer().await, "bad remaining length");

    // A CONNECT whose remaining length ends before its protocol level.
    let mut short_connect = RawClient::open(scene.addr).await;
    short_connect.send(&[0x10, 2, 0, 4]).await;
    assert!(short_connect.closed_by_peer().await, "truncated CONNECT");

    // A PUBLISH whose remaining length is shorter than its own topic, after a CONNECT.
    let mut lying_length = RawClient::connected(scene.addr, 4, "liar").await;
    lying_length.send(&[0x32, 3, 0, 20, b'd']).await;
    assert!(lying_length.closed_by_peer().await, "publish shorter than its topic");

    assert_eq!(scene.counter("mqtt_protocol_errors"), 4);
    neighbour_is_unaffected(&scene, "still-fine", 0).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn packets_only_a_server_may_send_close_the_connection() {
    let scene = scene().await;
    // rumqttd's MQTT 5 decoder panics on an UNSUBACK or CONNACK from a client.
    for (level, first) in [(5, 0xb0), (5, 0x20), (4, 0x90), (4, 0xd0)] {
        let mut client = RawClient::connected(scene.addr, level, &format!("server-{first:x}")).await;
        client.send(&raw_mqtt::frame(first, &[0, 1, 0])).await;
        assert!(client.closed_by_peer().await, "packet type {:x} from a client", first >> 4);
    }
    assert_eq!(scene.counter("mqtt_protocol_errors"), 4);
    neighbour_is_unaffected(&scene, "server-neighbour", 0).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_publish_topic_that_is_not_utf8_closes_the_connection_unacknowledged() {
    let scene = scene().await;
    let mut client = RawClient::connected(scene.addr, 4, "bad-utf8").await;
    client.send(&raw_mqtt::publish_qos1(b"devices/\xff\xfe/state", b"x")).await;
    assert_eq!(client.receive().await, None, "no PUBACK: the connection is closed");
    assert_eq!(scene.counter("mqtt_protocol_errors"), 1);
    assert_eq!(scene.counter("access_denied"), 0, "a protocol error, not an ACL refusal");
    neighbour_is_unaffected(&scene, "utf8-neighbour", 0).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_wildcard_in_a_publish_topic_closes_the_connection_unacknowledged() {
    let scene = scene().await;
    for topic in [&b"devices/+/state"[..], b"devices/#"] {
        let mut client = RawClient::connected(scene.addr, 4, "wild").await;
        client.send(&raw_mqtt::publish_qos1(topic, b"x")).await;
        assert_eq!(client.receive().await, None, "no PUBACK for {}", String::from_utf8_lossy(topic));
    }
    assert_eq!(scene.counter("mqtt_protocol_errors"), 2);
    neighbour_is_unaffected(&scene, "wild-neighbour", 0).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn empty_client_ids_get_an_assigned_id_or_a_refusal_as_mqtt_says() {
    let scene = scene().await;
    // MQTT 3.1.1, clean session: accepted; the gateway assigns the id `hookline-<random>`.
    let mut v4_clean = RawClient::open(scene.addr).await;
    v4_clean.send(&raw_mqtt::connect(4, "", true, 30)).await;
    assert_eq!(v4_clean.receive().await, Some((0x20, vec![0, 0])));
    v4_clean.send(&raw_mqtt::publish_qos1(b"devices/anonymous/state", b"x")).await;
    assert_eq!(v4_clean.receive().await, Some((0x40, vec![0, 1])), "PUBACK");

    // MQTT 3.1.1, persistent session: refused with return code 2, identifier rejected.
    let mut v4_persistent = RawClient::open(scene.addr).await;
    v4_persistent.send(&raw_mqtt::connect(4, "", false, 30)).await;
    assert_eq!(v4_persistent.receive().await, Some((0x20, vec![0, 2])));
    assert!(v4_persistent.closed_by_peer().await);

    // MQTT 5, clean start: accepted, the assigned id (property 0x12) in the CONNACK.
    let mut v5_clean = RawClient::open(scene.addr).await;
    v5_clean.send(&raw_mqtt::connect(5, "", true, 30)).await;
    let (first, body) = v5_clean.receive().await.expect("CONNACK");
    assert_eq!((first, body[1]), (0x20, 0), "accepted: {body:?}");
    assert!(body.windows(8).any(|w| w[0] == 0x12 && &w[3..] == b"hookl"), "assigned client id: {body:?}");

    // MQTT 5 without clean start: refused with reason 0x85, client identifier not valid.
    let mut v5_persistent = RawClient::open(scene.addr).await;
    v5_persistent.send(&raw_mqtt::connect(5, "", false, 30)).await;
    let (first, body) = v5_persistent.receive().await.expect("CONNACK");
    assert_eq!((first, body[1]), (0x20, 0x85), "{body:?}");
    assert!(v5_persistent.closed_by_peer().await);

    let records = scene.file_records(1).await;
    let assigned = records[0]["key"].as_str().unwrap();
    assert!(assigned.starts_with("hookline-"), "the record carries the assigned id, not an empty one: {records:#?}");
    assert_eq!(records[0]["value"]["client_id"], assigned);

    neighbour_is_unaffected(&scene, "id-neighbour", 1).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn thousands_of_connect_disconnect_cycles_leave_a_publisher_fully_routed() {
    const TASKS: usize = 6;
    const CYCLES_PER_TASK: usize = 500;
    let scene = scene().await;
    let addr = scene.addr;

    let mut publisher = Device::connect(addr, "steady").await;
    let mut bystander = Device::connect(addr, "bystander").await;
    bystander.subscribe("devices/steady/state").await;
    let churn: Vec<_> = (0..TASKS)
        .map(|task| {
            tokio::spawn(async move {
                for cycle in 0..CYCLES_PER_TASK {
                    // Every CONNECT gets its CONNACK (`connected` checks it).
                    let mut client = RawClient::connected(addr, 4, &format!("churn-{task}-{cycle}")).await;
                    // A third leave with DISCONNECT and close at once (the case that once
                    // disconnected bystanders in rumqttd's own server), a third wait for
                    // the gateway to close, a third just drop the TCP connection.
                    match cycle % 3 {
                        0 => client.send(&raw_mqtt::DISCONNECT).await,
                        1 => {
                            client.send(&raw_mqtt::DISCONNECT).await;
                            assert!(client.closed_by_peer().await, "churn-{task}-{cycle} closed after DISCONNECT");
                        }
                        _ => {}
                    }
                }
            })
        })
        .collect();

    let mut sent = 0;
    while churn.iter().any(|task| !task.is_finished()) {
        publisher.publish("devices/steady/state", format!("{sent}"), QoS::AtLeastOnce).await;
        sent += 1;
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    for task in churn {
        task.await.expect("every churn cycle connected");
    }
    publisher.wait_pubacks(sent).await;
    for i in 0..sent {
        let got = tokio::time::timeout(Duration::from_secs(5), bystander.inbox.recv()).await.expect("bystander still served").unwrap();
        assert_eq!(got.payload, format!("{i}").as_bytes(), "the bystander receives every publish, in order");
    }

    let records = scene.file_records(sent).await;
    assert_eq!(records.len(), sent, "every publish of the steady client routed, nothing else");
    assert!(records.iter().all(|r| r["key"] == "steady"));
    assert_eq!(scene.counter("hook_events{client.connected}"), (TASKS * CYCLES_PER_TASK + 2) as i64);
    assert!(
        wait_for(Duration::from_secs(10), || scene.counter("connections") == 2).await,
        "every churned connection is gone, the publisher and the bystander stay: {}",
        scene.counter("connections")
    );
    assert_eq!(scene.counter("mqtt_protocol_errors"), 0);
    eprintln!("churn: {} cycles, {sent} publishes, every one routed and delivered to the bystander", TASKS * CYCLES_PER_TASK);
    neighbour_is_unaffected(&scene, "late", sent).await;
}
