//! Malformed and oversized MQTT input closes only the offending connection, is counted,
//! and leaves every other client working.

use std::time::Duration;

use rumqttc::QoS;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::fixtures::route_rule;
use crate::scene::{wait_for, Device, Scene};

async fn scene() -> Scene {
    let rule = route_rule("message.publish", "devices/+/state", "message_state");
    Scene::start_with(&[("state.wat", rule.as_bytes())], None, |config| {
        config.broker.max_packet_size = 1024;
    })
    .await
}

/// The connection is closed by the broker: a read returns end of file (or an error).
async fn closed_by_peer(socket: &mut tokio::net::TcpStream) -> bool {
    let mut buf = [0u8; 64];
    loop {
        match tokio::time::timeout(Duration::from_secs(5), socket.read(&mut buf)).await {
            Ok(Ok(0)) | Ok(Err(_)) => return true,
            Ok(Ok(_)) => continue,
            Err(_) => return false,
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_oversized_publish_closes_only_that_connection() {
    let scene = scene().await;
    let mut neighbour = Device::connect(scene.addr, "neighbour").await;
    let big = Device::connect_with(scene.addr, "big", |o| {
        o.set_max_packet_size(1 << 20, 1 << 20);
    }).await;
    big.publish("devices/big/state", vec![b'x'; 4096], QoS::AtLeastOnce).await;
    assert!(wait_for(Duration::from_secs(5), || scene.counter("mqtt_protocol_errors") == 1).await);

    neighbour.publish("devices/neighbour/state", "ok", QoS::AtLeastOnce).await;
    neighbour.wait_pubacks(1).await;
    let records = scene.file_records(1).await;
    assert_eq!(records.len(), 1, "the oversized publish is not routed: {records:#?}");
    assert_eq!(records[0]["key"], "neighbour");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn garbage_bytes_and_a_bad_remaining_length_are_refused() {
    let scene = scene().await;
    let mut garbage = tokio::net::TcpStream::connect(scene.addr).await.unwrap();
    garbage.write_all(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n").await.unwrap();
    assert!(closed_by_peer(&mut garbage).await, "garbage is not MQTT");

    // A remaining length with a fifth continuation byte is malformed.
    let mut bad_length = tokio::net::TcpStream::connect(scene.addr).await.unwrap();
    bad_length.write_all(&[0x10, 0xff, 0xff, 0xff, 0xff, 0x7f]).await.unwrap();
    assert!(closed_by_peer(&mut bad_length).await, "bad remaining length");

    let mut device = Device::connect(scene.addr, "still-fine").await;
    device.publish("devices/still-fine/state", "ok", QoS::AtLeastOnce).await;
    device.wait_pubacks(1).await;
    assert_eq!(scene.file_records(1).await[0]["key"], "still-fine");
}
