//! The admin endpoint serves Prometheus counters (per rule too), health and readiness,
//! and the dashboard's API: loaded rules, live stats, and the live tail of routed records.

use std::net::SocketAddr;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use rumqttc::QoS;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::fixtures::route_rule;
use crate::scene::{repo_rules, Device, Scene};

async fn http_get(addr: SocketAddr, path: &str) -> String {
    let mut socket = send_get(addr, path).await;
    let mut response = String::new();
    socket.read_to_string(&mut response).await.unwrap();
    response
}

async fn send_get(addr: SocketAddr, path: &str) -> TcpStream {
    let mut socket = TcpStream::connect(addr).await.unwrap();
    let request = format!("GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n");
    socket.write_all(request.as_bytes()).await.unwrap();
    socket
}

/// The body of a complete (not chunked) HTTP response.
fn body(response: &str) -> &str {
    response.split_once("\r\n\r\n").map_or("", |(_, body)| body)
}

/// An open Server-Sent-Events response, read as raw text as it arrives.
struct EventStream {
    socket: TcpStream,
    text: String,
}

impl EventStream {
    async fn open(addr: SocketAddr, path: &str) -> EventStream {
        EventStream { socket: send_get(addr, path).await, text: String::new() }
    }

    /// Reads until `needle` has arrived (5 s at most); returns everything read so far.
    async fn read_until(&mut self, needle: &str) -> &str {
        let mut buf = [0u8; 8192];
        while !self.text.contains(needle) {
            let n = tokio::time::timeout(Duration::from_secs(5), self.socket.read(&mut buf))
                .await
                .unwrap_or_else(|_| panic!("{needle:?} not received within 5 s; got:\n{}", self.text))
                .unwrap();
            assert!(n > 0, "stream closed before {needle:?}; got:\n{}", self.text);
            self.text.push_str(&String::from_utf8_lossy(&buf[..n]));
        }
        &self.text
    }
}

/// A gateway with the shipped `message_state.wasm`, after `client_id` published `n`
/// state reports and they were routed (in the file sink). The device stays connected.
async fn scene_after_state_reports(client_id: &str, n: usize) -> (Scene, Device) {
    let rule = std::fs::read(repo_rules().join("message_state.wasm")).unwrap();
    let scene = Scene::start(&[("message_state.wasm", &rule)], None).await;
    let mut lock = Device::connect(scene.addr, client_id).await;
    for _ in 0..n {
        lock.publish(&format!("devices/{client_id}/state"), "{}", QoS::AtLeastOnce).await;
    }
    lock.wait_pubacks(n).await;
    scene.file_records(n).await;
    (scene, lock)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_count_hooks_records_and_rule_calls() {
    let (scene, _lock) = scene_after_state_reports("lock-m", 3).await;

    let admin = scene.gateway().admin_addr().expect("admin endpoint enabled");
    assert!(admin.ip().is_loopback());
    let metrics = http_get(admin, "/metrics").await;
    assert!(metrics.starts_with("HTTP/1.1 200"), "{metrics}");
    for line in [
        "hookline_hook_events_total{hook=\"message.publish\"} 3",
        "hookline_hook_events_total{hook=\"client.connected\"} 1",
        "hookline_rule_calls_total 3",
        "hookline_rule_calls_total{rule=\"message_state.wasm\"} 3",
        "hookline_rule_routes_total{rule=\"message_state.wasm\"} 3",
        "hookline_connections 1",
        "hookline_tail_dropped_total 0",
    ] {
        assert!(metrics.lines().any(|l| l == line), "missing {line:?} in\n{metrics}");
    }
    assert!(http_get(admin, "/healthz").await.ends_with("ok\n"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn readyz_is_ready_once_started_and_not_ready_once_shutting_down() {
    let mut scene = Scene::start(&[], None).await;
    let admin = scene.gateway().admin_addr().unwrap();
    let ready = http_get(admin, "/readyz").await;
    assert!(ready.starts_with("HTTP/1.1 200") && body(&ready) == "ready\n", "{ready}");

    // The admin endpoint outlives the gateway's shutdown in this runtime.
    scene.shutdown().await;
    let stopping = http_get(admin, "/readyz").await;
    assert!(stopping.starts_with("HTTP/1.1 503"), "{stopping}");
    assert_eq!(body(&stopping), "not ready:\nshutting down: no new connections accepted\n");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn api_rules_lists_each_loaded_rule_with_hash_load_time_subscriptions_and_counters() {
    let before_ms = SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_millis() as u64;
    let (scene, _lock) = scene_after_state_reports("lock-r", 2).await;

    let response = http_get(scene.gateway().admin_addr().unwrap(), "/api/rules").await;
    assert!(response.contains("content-type: application/json"), "{response}");
    let rules: serde_json::Value = serde_json::from_str(body(&response)).expect("JSON body");
    let loaded = &scene.gateway().rules().modules[0];
    let rule = &rules[0];
    assert_eq!(rules.as_array().unwrap().len(), 1, "{rules:#}");
    assert_eq!(rule["file"], "message_state.wasm");
    assert_eq!(rule["hash"], format!("{:016x}", loaded.hash));
    let loaded_at = rule["loaded_at_ms"].as_u64().unwrap();
    let now_ms = SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_millis() as u64;
    assert!((before_ms..=now_ms).contains(&loaded_at), "loaded_at_ms {loaded_at} outside {before_ms}..={now_ms}");
    assert_eq!(rule["subscriptions"], serde_json::json!([{ "hook": "message.publish", "filter": "devices/+/state" }]));
    assert_eq!(rule["counters"]["calls"], 2);
    assert_eq!(rule["counters"]["routes"], 2);
    assert_eq!(rule["counters"]["errors"], 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn api_stats_streams_message_and_record_totals() {
    let (scene, _lock) = scene_after_state_reports("lock-s", 4).await;

    let mut stats = EventStream::open(scene.gateway().admin_addr().unwrap(), "/api/stats").await;
    let text = stats.read_until("\n\n").await;
    assert!(text.contains("content-type: text/event-stream"), "{text}");
    let data = text.lines().find_map(|l| l.strip_prefix("data: ")).expect("a data line");
    let event: serde_json::Value = serde_json::from_str(data).unwrap();
    assert_eq!(event["messages_in"], 4, "{event}");
    assert_eq!(event["records_routed"], 4, "{event}");
    assert_eq!(event["connections"], 1, "{event}");
    assert!(text.contains("event: stats\n"), "{text}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn api_tail_streams_routed_records_matching_its_filter() {
    let state_rule = std::fs::read(repo_rules().join("message_state.wasm")).unwrap();
    let sensor_rule = route_rule("message.publish", "sensors/+", "sensor_data");
    let scene = Scene::start(&[("message_state.wasm", &state_rule), ("sensor.wat", sensor_rule.as_bytes())], None).await;
    let admin = scene.gateway().admin_addr().unwrap();
    let mut everything = EventStream::open(admin, "/api/tail").await;
    let mut by_topic = EventStream::open(admin, "/api/tail?topic=message_state").await;
    let mut by_topic_and_client = EventStream::open(admin, "/api/tail?topic=message_state&client=lock-b").await;
    for stream in [&mut everything, &mut by_topic, &mut by_topic_and_client] {
        stream.read_until(": watching\n").await;
    }

    // One at a time, each in the file (so already copied to the tail: the worker does
    // that before it writes) before the next: a filtered stream that receives a later
    // record has already received any earlier one it let through.
    let sends = [("sensor-1", "sensors/sensor-1"), ("lock-a", "devices/lock-a/state"), ("lock-b", "devices/lock-b/state")];
    for (n, (client_id, topic)) in sends.into_iter().enumerate() {
        let mut device = Device::connect(scene.addr, client_id).await;
        device.publish(topic, format!("{{\"n\":{n}}}"), QoS::AtLeastOnce).await;
        device.wait_pubacks(1).await;
        scene.file_records(n + 1).await;
    }

    let all = everything.read_until("\"client_id\":\"lock-b\"").await;
    assert!(all.contains("\"topic\":\"sensor_data\"") && all.contains("\"client_id\":\"lock-a\""), "{all}");
    let topic_only = by_topic.read_until("\"client_id\":\"lock-a\"").await;
    assert!(!topic_only.contains("sensor"), "topic filter let sensor_data through:\n{topic_only}");
    let only_b = by_topic_and_client.read_until("\"client_id\":\"lock-b\"").await;
    assert!(!only_b.contains("lock-a") && !only_b.contains("sensor"), "filter let another record through:\n{only_b}");

    let data = only_b.lines().find_map(|l| l.strip_prefix("data: ")).expect("a data line");
    let record: serde_json::Value = serde_json::from_str(data).unwrap();
    assert_eq!(record["topic"], "message_state");
    assert_eq!(record["key"], "lock-b");
    assert_eq!(record["hook"], "message.publish");
    assert_eq!(record["truncated"], false);
    let envelope: serde_json::Value = serde_json::from_str(record["envelope"].as_str().unwrap()).unwrap();
    assert_eq!(envelope["topic"], "devices/lock-b/state");
    assert_eq!(envelope["payload"], "eyJuIjoyfQ==");
}
