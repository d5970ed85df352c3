//! The admin endpoint serves Prometheus counters, per rule too, on its own address.

use rumqttc::QoS;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::scene::{repo_rules, Device, Scene};

async fn http_get(addr: std::net::SocketAddr, path: &str) -> String {
    let mut socket = tokio::net::TcpStream::connect(addr).await.unwrap();
    let request = format!("GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n");
    socket.write_all(request.as_bytes()).await.unwrap();
    let mut response = String::new();
    socket.read_to_string(&mut response).await.unwrap();
    response
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_count_hooks_records_and_rule_calls() {
    let rule = std::fs::read(repo_rules().join("message_state.wasm")).unwrap();
    let scene = Scene::start(&[("message_state.wasm", &rule)], None).await;
    let mut lock = Device::connect(scene.addr, "lock-m").await;
    for _ in 0..3 {
        lock.publish("devices/lock-m/state", "{}", QoS::AtLeastOnce).await;
    }
    lock.wait_pubacks(3).await;
    scene.file_records(3).await;

    let admin = scene.gateway().admin_addr().expect("admin endpoint enabled");
    assert!(admin.ip().is_loopback());
    let metrics = http_get(admin, "/metrics").await;
    assert!(metrics.starts_with("HTTP/1.1 200"), "{metrics}");
    for line in [
        "hookline_hook_events_total{hook=\"message.publish\"} 3",
        "hookline_rule_calls_total 3",
        "hookline_rule_calls_total{rule=\"message_state.wasm\"} 3",
        "hookline_rule_routes_total{rule=\"message_state.wasm\"} 3",
        "hookline_connections 1",
    ] {
        assert!(metrics.lines().any(|l| l == line), "missing {line:?} in\n{metrics}");
    }
    assert!(http_get(admin, "/healthz").await.ends_with("ok\n"));
}
