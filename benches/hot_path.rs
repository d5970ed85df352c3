//! Micro-benchmarks of the per-event hot path, one stage at a time, on the door-lock
//! scenario's shapes (1 KiB state reports on `devices/{id}/state`, unlock commands acked
//! on `devices/{id}/command`).
//!
//! Stages, in data-flow order: the edge's router skip (does any subscription match?)
//! and hook event creation, the spool append and read back, topic filter match, rule dispatch
//! (non-matching: no WASM; matching: the shipped `message_state.wasm`), route emission
//! (`message_command.wat` on an acked event), envelope encoding, dispatch + encode as a
//! worker does it, and the Kafka enqueue (`KafkaSink::send`) against librdkafka's mock
//! cluster.
//!
//! ```text
//! cargo bench --bench hot_path                 # everything, about 2 minutes
//! cargo bench --bench hot_path -- rules/       # one group
//! ```
//!
//! Budget: each benchmark warms up 1 s and measures 3 s, 40 samples (Kafka: 5 s and
//! 8 s, plus the untimed flushes); about 2 minutes in all.

use std::hint::black_box;
use std::sync::Arc;
use std::time::{Duration, Instant};

use arc_swap::ArcSwap;
use bytes::Bytes;
use criterion::{criterion_group, criterion_main, Criterion, Throughput};

use hookline::config::{BufferConfig, Fsync, KafkaConfig, RulesConfig};
use hookline::envelope;
use hookline::hooks::{Hook, HookEvent};
use hookline::metrics::{Metrics, Outcome};
use hookline::rules::{Dispatcher, Output, RuleEngine, RuleModule, RuleSet, SharedRuleSet};
use hookline::sink::{Boundary, KafkaSink, Record, Sink, Ticket};
use hookline::spool::Spool;
use hookline::topic::{FilterSet, TopicFilter};

const CLIENT_ID: &str = "10083618796833171";
const NODE: &str = "gateway@127.0.0.1";
const PAYLOAD_SIZE: usize = 1024;

/// A 1 KiB door-lock state report: the scenario's JSON, padded with incompressible
/// characters (the same shape the load generator sends).
fn state_payload() -> Bytes {
    let mut body = format!(
        "{{\"process_id\":\"7802441525528958\",\"action\":\"unlock\",\"battery\":83.4,\"lock_state\":1,\
         \"version\":1.1,\"client_id\":\"{CLIENT_ID}\",\"seq\":123456,\"sent_us\":1700000000000000,\"pad\":\""
    )
    .into_bytes();
    let mut seed = 0x9e37_79b9_7f4a_7c15_u64;
    while body.len() < PAYLOAD_SIZE - 2 {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        body.push(b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789"[(seed % 62) as usize]);
    }
    body.extend_from_slice(b"\"}");
    Bytes::from(body)
}

fn publish_event(topic: &'static str) -> HookEvent {
    let mut event = HookEvent::new(Hook::MessagePublish, Arc::from(CLIENT_ID), Arc::from(""));
    event.topic = Bytes::from_static(topic.as_bytes());
    event.payload = state_payload();
    event.qos = 1;
    event
}

fn acked_command_event() -> HookEvent {
    let mut event = HookEvent::new(Hook::MessageAcked, Arc::from(CLIENT_ID), Arc::from(""));
    event.topic = Bytes::from_static(b"devices/10083618796833171/command");
    event.payload = Bytes::from_static(
        br#"{"process_id":"7802441525528958","action":"unlock","nonce_str":"u7u4p0n8","ts":1574744434,"sign":"e9f5af7deaa28563"}"#,
    );
    event.qos = 1;
    event.from = Some(Arc::from("business-app-1"));
    event
}

fn rule_path(file: &str) -> std::path::PathBuf {
    std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("rules").join(file)
}

/// A worker's dispatcher over exactly one rule file.
fn dispatcher_with(file: &str) -> (Dispatcher, Arc<Metrics>) {
    let engine = RuleEngine::new(&RulesConfig::default(), hookline::sink::DestinationNames::kafka()).expect("wasmtime engine");
    let module = RuleModule::load_file(&engine, &rule_path(file)).unwrap_or_else(|e| panic!("loading {file}: {e}"));
    let rules: SharedRuleSet = Arc::new(ArcSwap::from_pointee(RuleSet { modules: vec![Arc::new(module)], failed: Vec::new() }));
    let metrics = Arc::new(Metrics::default());
    (Dispatcher::new(engine, rules, metrics.clone()), metrics)
}

fn edge(c: &mut Criterion) {
    let payload = state_payload();
    let mut group = c.benchmark_group("edge");
    group.throughput(Throughput::Elements(1));
    // The router skip: a state report tested against 10,000 locks' command filters.
    let mut filters = FilterSet::default();
    for lock in 0..10_000 {
        filters.insert(&TopicFilter::parse(&format!("devices/{lock}/command")).unwrap(), ());
    }
    let topic = Bytes::from(format!("devices/{CLIENT_ID}/state"));
    group.bench_function("router_skip_10k_filters", |b| b.iter(|| black_box(filters.matches(black_box(&topic)))));
    let client: Arc<str> = Arc::from(CLIENT_ID);
    let username: Arc<str> = Arc::from("");
    group.bench_function("now_ms", |b| b.iter(hookline::hooks::now_ms));
    group.bench_function("hook_event_new_publish", |b| {
        b.iter(|| {
            let mut event = HookEvent::new(Hook::MessagePublish, client.clone(), username.clone());
            event.topic = topic.clone();
            event.payload = payload.clone();
            event.qos = 1;
            black_box(event)
        })
    });

    // One append to the spool and one read back (page cache, no fsync): what every
    // event costs on its way from the connection to a rule worker.
    let dir = tempfile::tempdir().expect("temp dir");
    let config = BufferConfig { fsync: Fsync::Never, ..BufferConfig::default() };
    let (spool, mut readers) = Spool::open(&config, dir.path(), 1, Arc::new(Metrics::default())).expect("spool");
    let metrics = Metrics::default();
    let event = publish_event("devices/10083618796833171/state");
    let mut batch = Vec::new();
    group.bench_function("spool_append_read_1k", |b| {
        b.iter(|| {
            spool.push(0, &event);
            readers[0].read(&mut batch, &metrics).expect("read");
            black_box(batch.pop().expect("just appended"))
        })
    });
    group.finish();
}

fn topic_filter(c: &mut Criterion) {
    let filter = TopicFilter::parse("devices/+/state").unwrap();
    let hit = b"devices/10083618796833171/state";
    let miss = b"devices/10083618796833171/command";
    let mut group = c.benchmark_group("filter");
    group.throughput(Throughput::Elements(1));
    group.bench_function("match_hit", |b| b.iter(|| filter.matches(black_box(hit))));
    group.bench_function("match_miss_last_level", |b| b.iter(|| filter.matches(black_box(miss))));
    group.finish();
}

fn rules(c: &mut Criterion) {
    let mut group = c.benchmark_group("rules");
    group.throughput(Throughput::Elements(1));

    // message_state.wasm subscribes message.publish on devices/+/state.
    let (mut dispatcher, metrics) = dispatcher_with("message_state.wasm");
    let other_topic = publish_event("devices/10083618796833171/command");
    let other_hook = HookEvent::new(Hook::ClientConnected, Arc::from(CLIENT_ID), Arc::from(""));
    group.bench_function("dispatch_nonmatching_topic", |b| {
        b.iter(|| {
            dispatcher.dispatch(black_box(&other_topic), |route| {
                black_box(route);
            })
        })
    });
    group.bench_function("dispatch_nonmatching_hook", |b| {
        b.iter(|| {
            dispatcher.dispatch(black_box(&other_hook), |route| {
                black_box(route);
            })
        })
    });
    let calls = Metrics::get(&metrics.rule_calls);
    assert_eq!(calls, 0, "a non-matching event entered WASM ({calls} guest calls)");

    let state = publish_event("devices/10083618796833171/state");
    group.bench_function("dispatch_matching_message_state_wasm", |b| {
        b.iter(|| {
            let n = dispatcher.dispatch(black_box(&state), |route| {
                black_box(route);
            });
            debug_assert_eq!(n, 1);
            n
        })
    });
    // Once more outside criterion, so the checks hold when a filter skipped the bench.
    dispatcher.dispatch(&state, |_| {});
    assert!(Metrics::get(&metrics.rule_routes) > 0, "message_state.wasm emitted no route");
    assert_eq!(Metrics::get(&metrics.rule_errors) + Metrics::get(&metrics.rule_traps), 0);

    // message_command.wat routes message.acked on devices/+/command.
    let (mut dispatcher, metrics) = dispatcher_with("message_command.wat");
    let acked = acked_command_event();
    group.bench_function("route_emission_message_command_wat", |b| {
        b.iter(|| {
            dispatcher.dispatch(black_box(&acked), |route| {
                black_box(route);
            })
        })
    });
    dispatcher.dispatch(&acked, |_| {});
    assert!(Metrics::get(&metrics.rule_routes) > 0, "message_command.wat emitted no route");
    group.finish();
}

fn envelope_and_worker(c: &mut Criterion) {
    let mut group = c.benchmark_group("envelope");
    let event = publish_event("devices/10083618796833171/state");
    let mut out = Vec::with_capacity(4096);
    group.throughput(Throughput::Bytes(event.payload.len() as u64));
    group.bench_function("encode_publish_1k", |b| {
        b.iter(|| {
            envelope::encode(black_box(&event), NODE, &mut out);
            black_box(out.len())
        })
    });
    group.finish();

    // What a rule worker does per matching event before the sink: dispatch, encode once.
    let mut group = c.benchmark_group("worker");
    group.throughput(Throughput::Elements(1));
    let (mut dispatcher, _metrics) = dispatcher_with("message_state.wasm");
    group.bench_function("dispatch_and_encode_publish_1k", |b| {
        b.iter(|| {
            let mut encoded = false;
            dispatcher.dispatch(&event, |output| {
                let Output::Route(route) = output else { return };
                if !encoded {
                    envelope::encode(&event, NODE, &mut out);
                    encoded = true;
                }
                black_box((&route.topic, &out));
            })
        })
    });
    group.finish();
}

fn kafka(c: &mut Criterion) {
    let cluster = rdkafka::mocking::MockCluster::new(1).expect("mock cluster");
    cluster.create_topic("message_state", 4, 1).expect("create topic");
    let metrics = Arc::new(Metrics::default());
    let config = KafkaConfig { bootstrap_servers: cluster.bootstrap_servers(), ..Default::default() };
    let sink = KafkaSink::new(&config).expect("producer");
    let boundary = Boundary::new(metrics.clone());
    let event = publish_event("devices/10083618796833171/state");
    let mut value = Vec::new();
    envelope::encode(&event, NODE, &mut value);
    let record = Record { topic: "message_state", key: CLIENT_ID.as_bytes(), value: &value, headers: &[], envelope: true };
    // Waits (untimed where the caller says so) until every record sent so far has its
    // delivery report. `flush` is not used: with the threaded producer it sleeps in
    // 100 ms steps.
    let wait_delivered = || {
        let deadline = Instant::now() + Duration::from_secs(60);
        while metrics.records.total(Outcome::Delivered) < Metrics::get(&metrics.records_sent) {
            assert!(Instant::now() < deadline, "the mock cluster stopped delivering");
            std::thread::sleep(Duration::from_micros(50));
        }
    };
    // Warm the producer up: metadata, producer id (idempotence), first batch.
    let ticket = Ticket::new();
    sink.send(record, boundary.begin(&ticket, record.topic, event.ts_ms));
    wait_delivered();

    // Records per timed chunk; the queue is drained (untimed) between chunks, far below
    // the producer's 200,000-record limit, so `send` never waits for room.
    const CHUNK: u64 = 5_000;
    let mut group = c.benchmark_group("kafka");
    group.throughput(Throughput::Elements(1));
    group.measurement_time(Duration::from_secs(5));
    group.bench_function("sink_send_enqueue_1k", |b| {
        b.iter_custom(|iters| {
            let mut timed = Duration::ZERO;
            let mut done = 0;
            while done < iters {
                let n = CHUNK.min(iters - done);
                let started = Instant::now();
                for _ in 0..n {
                    sink.send(black_box(record), boundary.begin(&ticket, record.topic, event.ts_ms));
                }
                timed += started.elapsed();
                done += n;
                wait_delivered();
            }
            timed
        })
    });
    group.finish();

    // The same with delivery included: enqueue, batch (linger.ms 5), lz4, produce to the
    // mock broker (in this process, acks=all, idempotent) and the delivery reports, for
    // a batch of CHUNK records, all timed. Throughput is per record.
    let mut group = c.benchmark_group("kafka");
    group.throughput(Throughput::Elements(CHUNK));
    group.sample_size(20);
    group.measurement_time(Duration::from_secs(6));
    group.bench_function("sink_send_and_deliver_1k_batch", |b| {
        b.iter(|| {
            for _ in 0..CHUNK {
                sink.send(black_box(record), boundary.begin(&ticket, record.topic, event.ts_ms));
            }
            wait_delivered();
        })
    });
    group.finish();
    assert_eq!(metrics.records.total(Outcome::Failed), 0, "the mock cluster refused records");
    drop(sink);
    drop(cluster);
}

fn config() -> Criterion {
    Criterion::default().sample_size(40).warm_up_time(Duration::from_secs(1)).measurement_time(Duration::from_secs(3))
}

criterion_group! {
    name = hot_path;
    config = config();
    targets = edge, topic_filter, rules, envelope_and_worker, kafka
}
criterion_main!(hot_path);
