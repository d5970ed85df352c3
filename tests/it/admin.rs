//! The admin endpoint serves Prometheus counters (per rule too), health and readiness,
//! and the dashboard's API: loaded rules, live stats, and the live tail of routed records.

use std::net::SocketAddr;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use rumqttc::QoS;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::support::fixtures::route_rule;
use crate::support::ports::ClosedPort;
use crate::support::scene::{repo_rules, wait_for, Device, MockKafka, Scene};

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
        while !self.text.contains(needle) {
            self.read_more(needle).await;
        }
        &self.text
    }

    /// The data of the next whole event named `event` (5 s at most for each read), and
    /// everything before it consumed.
    async fn next_data(&mut self, event: &str) -> serde_json::Value {
        let start = format!("event: {event}\n");
        loop {
            if let Some(at) = self.text.find(&start) {
                if let Some(end) = self.text[at..].find("\n\n") {
                    let whole = &self.text[at..at + end];
                    let data = whole.lines().find_map(|l| l.strip_prefix("data: ")).expect("a data line");
                    let value = serde_json::from_str(data).unwrap();
                    self.text.drain(..at + end + 2);
                    return value;
                }
            }
            self.read_more(&start).await;
        }
    }

    async fn read_more(&mut self, waiting_for: &str) {
        let mut buf = [0u8; 8192];
        let n = tokio::time::timeout(Duration::from_secs(5), self.socket.read(&mut buf))
            .await
            .unwrap_or_else(|_| panic!("{waiting_for:?} not received within 5 s; got:\n{}", self.text))
            .unwrap();
        assert!(n > 0, "stream closed before {waiting_for:?}; got:\n{}", self.text);
        self.text.push_str(&String::from_utf8_lossy(&buf[..n]));
    }
}

/// A gateway with the shipped `message_state.wasm`, after `client_id` published `n`
/// state reports and they were delivered (to the file sink). The device stays connected.
async fn scene_after_state_reports(client_id: &str, n: usize) -> (Scene, Device) {
    let rule = std::fs::read(repo_rules().join("message_state.wasm")).unwrap();
    let scene = Scene::start(&[("message_state.wasm", &rule)], None).await;
    let mut lock = Device::connect(scene.addr, client_id).await;
    for _ in 0..n {
        lock.publish(&format!("devices/{client_id}/state"), "{}", QoS::AtLeastOnce).await;
    }
    lock.wait_pubacks(n).await;
    scene.file_records(n).await;
    // The sink counts a record just after the flush that put it in the file.
    let delivered = wait_for(Duration::from_secs(10), || scene.counter("records_delivered") == n as i64).await;
    assert!(delivered, "{n} records delivered; counters: {:?}", scene.gateway().metrics().snapshot());
    (scene, lock)
}

/// Scrapes `/metrics` until it has a line `until` (10 s at most); returns the body.
async fn scrape_until(admin: SocketAddr, until: &str) -> String {
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    loop {
        let response = http_get(admin, "/metrics").await;
        assert!(response.starts_with("HTTP/1.1 200"), "{response}");
        let metrics = body(&response).to_string();
        if metrics.lines().any(|l| l == until) {
            return metrics;
        }
        assert!(std::time::Instant::now() < deadline, "no line {until:?} within 10 s in\n{metrics}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

fn assert_lines(metrics: &str, lines: &[&str]) {
    for line in lines {
        assert!(metrics.lines().any(|l| l == *line), "missing {line:?} in\n{metrics}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_count_hooks_records_and_rule_calls() {
    let (scene, _lock) = scene_after_state_reports("lock-m", 3).await;

    let admin = scene.gateway().admin_addr().expect("admin endpoint enabled");
    assert!(admin.ip().is_loopback());
    let metrics = http_get(admin, "/metrics").await;
    assert!(metrics.starts_with("HTTP/1.1 200"), "{metrics}");
    assert_lines(
        body(&metrics),
        &[
            "hookline_hook_events_total{hook=\"message.publish\"} 3",
            "hookline_hook_events_total{hook=\"client.connected\"} 1",
            "hookline_rule_calls_total 3",
            "hookline_module_calls_total{rule=\"message_state.wasm\"} 3",
            "hookline_module_routes_total{rule=\"message_state.wasm\"} 3",
            "hookline_connections 1",
            "hookline_tail_dropped_total 0",
            "hookline_records_delivered_total{topic=\"message_state\"} 3",
            "hookline_records_failed_total{topic=\"message_state\"} 0",
            "hookline_delivery_latency_seconds_count 3",
        ],
    );
    assert!(http_get(admin, "/healthz").await.ends_with("ok\n"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_count_kafka_records_by_topic_and_time_their_delivery() {
    let kafka = MockKafka::new(&["message_state", "message_command"]);
    let state = route_rule("message.publish", "devices/+/state", "message_state");
    let command = route_rule("message.publish", "devices/+/command", "message_command");
    let rules = [("state.wat", state.as_bytes()), ("command.wat", command.as_bytes())];
    // librdkafka's smallest record size limit: a larger record is refused when produced.
    let scene = Scene::start_with(&rules, Some(kafka.bootstrap()), |config| {
        config.kafka.properties.insert("message.max.bytes".into(), "1000".into());
    })
    .await;

    let mut lock = Device::connect(scene.addr, "lock-k").await;
    for _ in 0..3 {
        lock.publish("devices/lock-k/state", "{}", QoS::AtLeastOnce).await;
    }
    lock.publish("devices/lock-k/state", vec![b'x'; 2000], QoS::AtLeastOnce).await;
    for _ in 0..2 {
        lock.publish("devices/lock-k/command", "{}", QoS::AtLeastOnce).await;
    }
    lock.wait_pubacks(6).await;

    let admin = scene.gateway().admin_addr().unwrap();
    // A scrape renders topic series before the histogram: once the histogram counts all
    // five deliveries, scrape again for a view taken after every one of them.
    scrape_until(admin, "hookline_delivery_latency_seconds_count 5").await;
    let metrics = scrape_until(admin, "hookline_delivery_latency_seconds_count 5").await;
    assert_lines(
        &metrics,
        &[
            "hookline_records_delivered_total{topic=\"message_state\"} 3",
            "hookline_records_delivered_total{topic=\"message_command\"} 2",
            "hookline_records_delivered_total{topic=\"(other)\"} 0",
            "hookline_records_failed_total{topic=\"message_state\"} 1",
            "hookline_records_failed_total{topic=\"message_command\"} 0",
            "# TYPE hookline_delivery_latency_seconds histogram",
            "hookline_delivery_latency_seconds_bucket{le=\"60\"} 5",
            "hookline_delivery_latency_seconds_bucket{le=\"+Inf\"} 5",
        ],
    );
    // Buckets are cumulative: never fewer below a higher bound.
    let buckets: Vec<u64> = metrics
        .lines()
        .filter(|l| l.starts_with("hookline_delivery_latency_seconds_bucket"))
        .map(|l| l.rsplit_once(' ').unwrap().1.parse().unwrap())
        .collect();
    assert_eq!(buckets.len(), hookline::metrics::BOUNDS_MS.len() + 1, "{metrics}");
    assert!(buckets.windows(2).all(|w| w[0] <= w[1]), "{metrics}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn readyz_is_ready_once_started_and_not_ready_once_shutting_down() {
    // Kafka never answers, so shutdown waits its whole grace period for a routed
    // record: the window in which a load balancer must see "not ready".
    let rule = route_rule("client.connected", "#", "connections");
    let no_kafka = ClosedPort::new();
    let mut scene = Scene::start(&[("route.wat", rule.as_bytes())], Some(no_kafka.addr())).await;
    let admin = scene.gateway().admin_addr().unwrap();
    let ready = http_get(admin, "/readyz").await;
    assert!(
        ready.starts_with("HTTP/1.1 200")
            && body(&ready)
                == "ready
",
        "{ready}"
    );
    let device = Device::connect(scene.addr, "lock-1").await;
    assert!(wait_for(Duration::from_secs(10), || scene.counter("records_sent") == 1).await);

    let gateway = scene.gateway.take().unwrap();
    let shutdown = tokio::spawn(gateway.shutdown());
    let deadline = std::time::Instant::now() + Duration::from_secs(5);
    let stopping = loop {
        let answer = http_get(admin, "/readyz").await;
        if answer.starts_with("HTTP/1.1 503") || std::time::Instant::now() > deadline {
            break answer;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    assert!(stopping.starts_with("HTTP/1.1 503"), "{stopping}");
    assert_eq!(body(&stopping), "not ready:\nshutting down: no new connections accepted\n");
    shutdown.await.unwrap().expect("clean shutdown");
    drop(device);
    assert!(TcpStream::connect(admin).await.is_err(), "the admin endpoint stops with the gateway");
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
async fn api_rules_lists_a_rule_file_that_failed_to_load_until_it_loads() {
    let rule = std::fs::read(repo_rules().join("message_state.wasm")).unwrap();
    let scene = Scene::start(&[("message_state.wasm", &rule), ("broken.wat", b"(module (func $unfinished")], None).await;
    let admin = scene.gateway().admin_addr().unwrap();
    let rules = || async move { serde_json::from_str::<Vec<serde_json::Value>>(body(&http_get(admin, "/api/rules").await)).unwrap() };
    let listed = rules().await;
    let files: Vec<&str> = listed.iter().map(|r| r["file"].as_str().unwrap()).collect();
    assert_eq!(files, ["broken.wat", "message_state.wasm"], "{listed:#?}");
    let failed = &listed[0]["failed"];
    assert!(failed["reason"].as_str().is_some_and(|r| !r.is_empty()) && failed["at_ms"].as_u64() > Some(0), "{failed}");
    assert_eq!(failed["previous_running"], false);
    assert!(listed[0].get("counters").is_none() && listed[1].get("failed").is_none(), "{listed:#?}");

    std::fs::write(scene.rules_dir().join("broken.wat"), route_rule("message.publish", "sensors/+", "sensor_data")).unwrap();
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    while rules().await.iter().any(|r| r.get("failed").is_some()) {
        assert!(std::time::Instant::now() < deadline, "the fixed file loads and is no longer listed as failed");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn api_stats_streams_message_and_record_totals() {
    let (scene, _lock) = scene_after_state_reports("lock-s", 4).await;

    let mut stats = EventStream::open(scene.gateway().admin_addr().unwrap(), "/api/stats").await;
    assert!(stats.read_until("\r\n\r\n").await.contains("content-type: text/event-stream"));
    // First the samples the server kept since it started, oldest first.
    let history = stats.next_data("history").await;
    let history = history.as_array().expect("an array of samples");
    assert!(!history.is_empty(), "a sample is taken when the endpoint starts");
    assert!(history.windows(2).all(|w| w[0]["at_ms"].as_u64() < w[1]["at_ms"].as_u64()), "{history:?}");
    // Then the newest sample, a second apart.
    let event = stats.next_data("stats").await;
    assert_eq!(event["messages_in"], 4, "{event}");
    assert_eq!(event["records_routed"], 4, "{event}");
    assert_eq!(event["records_delivered"], 4, "{event}");
    assert_eq!(event["connections"], 1, "{event}");
    let p50 = event["delivery_latency_p50_ms"].as_f64().expect("a median once records are delivered");
    let p99 = event["delivery_latency_p99_ms"].as_f64().expect("a 99th percentile");
    assert!(0.0 <= p50 && p50 <= p99 && p99 <= 60_000.0, "{event}");
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
