//! A corpus of hostile rule modules. Each is either refused at load, with a reason
//! naming what is wrong, or contained at run time (trap, fuel, host limit), counted;
//! and a good rule loaded beside it keeps routing every event.

use std::time::Duration;

use rumqttc::QoS;

use crate::support::fixtures::{
    deep_recursion_rule, infinite_loop_rule, memory_bomb_rule, route_flood_rule, route_rule, route_with_key_rule, trap_rule,
};
use crate::support::scene::{repo_rules, wait_for, Device, Scene};

/// Events each test publishes.
const N: usize = 20;

fn good_rule() -> String {
    route_rule("message.publish", "devices/+/state", "message_state")
}

/// Starts a gateway with the good rule and `hostile` rules, publishes N state reports
/// from one lock and checks the good rule routed N of N and nothing else was produced.
async fn good_rule_routes_n_of_n_beside(hostile: &[(&str, &[u8])]) -> Scene {
    let good = good_rule();
    let mut rules = vec![("good.wat", good.as_bytes())];
    rules.extend_from_slice(hostile);
    let scene = Scene::start(&rules, None).await;
    publish_n_and_count(&scene, "lock-h", 0).await;
    scene
}

/// Publishes N state reports from `lock` and checks that they are the N records after
/// the `earlier` ones, all routed by the good rule.
async fn publish_n_and_count(scene: &Scene, lock: &str, earlier: usize) {
    let mut device = Device::connect(scene.addr, lock).await;
    for i in 0..N {
        device.publish(&format!("devices/{lock}/state"), format!("{i}"), QoS::AtLeastOnce).await;
    }
    device.wait_pubacks(N).await;
    let records = scene.file_records(earlier + N).await;
    let routed = records[earlier..].iter().filter(|r| r["topic"] == "message_state" && r["key"] == lock).count();
    assert_eq!((routed, records.len()), (N, earlier + N), "the good rule routed {routed} of {N}: {records:#?}");
}

fn rule_counter(scene: &Scene, rule: &str, counter: impl Fn(&hookline::rules::RuleCounters) -> &std::sync::atomic::AtomicU64) -> u64 {
    let rules = scene.gateway().rules();
    let module = rules.modules.iter().find(|m| &*m.name == rule).unwrap_or_else(|| panic!("{rule} is loaded"));
    counter(&module.counters).load(std::sync::atomic::Ordering::Relaxed)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn looping_growing_and_trapping_rules_do_not_stop_the_good_one() {
    let good = route_rule("message.publish", "devices/+/state", "message_state");
    let looping = infinite_loop_rule("devices/+/state");
    let bomb = memory_bomb_rule("devices/+/state");
    let trap = trap_rule("devices/+/state");
    let scene = Scene::start(
        &[("good.wat", good.as_bytes()), ("loop.wat", looping.as_bytes()), ("bomb.wat", bomb.as_bytes()), ("trap.wat", trap.as_bytes())],
        None,
    )
    .await;
    assert_eq!(scene.gateway().rules().modules.len(), 4);

    let mut lock = Device::connect(scene.addr, "lock-h").await;
    for i in 0..20 {
        lock.publish("devices/lock-h/state", format!("{i}"), QoS::AtLeastOnce).await;
    }
    lock.wait_pubacks(20).await;
    let records = scene.file_records(20).await;
    assert_eq!(records.len(), 20, "only the good rule routes: {records:#?}");
    assert!(records.iter().all(|r| r["topic"] == "message_state"));

    assert_eq!(scene.counter("rule_out_of_fuel"), 20, "the loop runs out of fuel on every event");
    assert_eq!(scene.counter("rule_traps"), 40, "the bomb hits the memory cap, the trap traps, every event");
    let bomb = scene.gateway().rules().modules.iter().find(|m| &*m.name == "bomb.wat").unwrap().clone();
    assert_eq!(bomb.counters.traps.load(std::sync::atomic::Ordering::Relaxed), 20);

    // Still serving: a new client connects and is routed.
    let other = Device::connect(scene.addr, "lock-h2").await;
    other.publish("devices/lock-h2/state", "x", QoS::AtLeastOnce).await;
    let records = scene.file_records(21).await;
    assert_eq!(records.last().unwrap()["key"], "lock-h2");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn modules_that_break_the_abi_are_refused_at_load_with_a_reason() {
    let wasi = r#"(module (import "wasi_snapshot_preview1" "fd_write" (func (param i32 i32 i32 i32) (result i32)))
        (memory (export "memory") 1) (func (export "hookline_abi_v1"))
        (func (export "hookline_init") (result i32) (i32.const 0))
        (func (export "hookline_on_event") (param i32 i32) (result i32) (i32.const 0)))"#;
    let no_marker = r#"(module (memory (export "memory") 1)
        (func (export "hookline_init") (result i32) (i32.const 0))
        (func (export "hookline_on_event") (param i32 i32) (result i32) (i32.const 0)))"#;
    let no_subscription = r#"(module (memory (export "memory") 1) (func (export "hookline_abi_v1"))
        (func (export "hookline_init") (result i32) (i32.const 0))
        (func (export "hookline_on_event") (param i32 i32) (result i32) (i32.const 0)))"#;
    let engine =
        hookline::rules::RuleEngine::new(&hookline::config::RulesConfig::default(), hookline::sink::DestinationNames::kafka()).unwrap();
    let load = |bytes: &[u8]| hookline::rules::RuleModule::load(&engine, "t.wat", bytes).unwrap_err().to_string();
    assert!(load(wasi.as_bytes()).contains("wasi_snapshot_preview1.fd_write"));
    assert!(load(no_marker.as_bytes()).contains("hookline_abi_v1"));
    assert!(load(no_subscription.as_bytes()).contains("no subscription"));
    assert!(load(b"").contains("empty"));
    assert!(load(b"\x00asm garbage").contains("not a valid WebAssembly module"));

    // In the rules directory they only bump the load-failure counter.
    let scene = Scene::start(&[("wasi.wat", wasi.as_bytes()), ("junk.wasm", b"junk")], None).await;
    assert_eq!(scene.gateway().rules().modules.len(), 0);
    assert_eq!(scene.counter("rule_load_failures"), 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deep_recursion_hits_the_stack_limit_as_a_trap_not_a_crash() {
    let recursion = deep_recursion_rule("devices/+/state");
    let scene = good_rule_routes_n_of_n_beside(&[("recursion.wat", recursion.as_bytes())]).await;
    assert_eq!(rule_counter(&scene, "recursion.wat", |c| &c.traps), N as u64, "one trap per event");
    assert_eq!(scene.counter("rule_out_of_fuel"), 0, "stopped by the stack limit, not the budget");

    // The trap says what happened.
    let engine =
        hookline::rules::RuleEngine::new(&hookline::config::RulesConfig::default(), hookline::sink::DestinationNames::kafka()).unwrap();
    let module = std::sync::Arc::new(hookline::rules::RuleModule::load(&engine, "recursion.wat", recursion.as_bytes()).unwrap());
    let mut instance = hookline::rules::RuleInstance::new(&engine, module).unwrap();
    let mut event = hookline::hooks::HookEvent::new(hookline::hooks::Hook::MessagePublish, "lock-h".into(), "".into());
    event.topic = bytes::Bytes::from_static(b"devices/lock-h/state");
    match instance.decide(&engine, &event, 0) {
        Err(hookline::rules::CallFailure::Trap(trap)) => assert!(trap.contains("call stack exhausted"), "{trap}"),
        other => panic!("expected a stack-overflow trap, got {other:?}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rule_emitting_a_thousand_routes_per_event_has_its_decision_voided() {
    let flood = route_flood_rule("devices/+/state");
    let scene = good_rule_routes_n_of_n_beside(&[("flood.wat", flood.as_bytes())]).await;
    assert_eq!(rule_counter(&scene, "flood.wat", |c| &c.invalid_output), N as u64);
    assert_eq!(rule_counter(&scene, "flood.wat", |c| &c.routes), 0, "not even the first 16 routes of a voided decision");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn giant_or_malformed_topic_names_and_oversized_keys_are_voided() {
    let giant = route_rule("message.publish", "devices/+/state", &"t".repeat(10_000));
    let slashes = route_rule("message.publish", "devices/+/state", "not/a/kafka/topic");
    let big_key = route_with_key_rule("devices/+/state", "keyed", 5_000);
    let scene = good_rule_routes_n_of_n_beside(&[
        ("giant.wat", giant.as_bytes()),
        ("slashes.wat", slashes.as_bytes()),
        ("big_key.wat", big_key.as_bytes()),
    ])
    .await;
    for rule in ["giant.wat", "slashes.wat", "big_key.wat"] {
        assert_eq!(rule_counter(&scene, rule, |c| &c.invalid_output), N as u64, "{rule}");
    }
    assert_eq!(scene.counter("rule_invalid_output"), 3 * N as i64);
}

/// Each module breaks the ABI in one way; the load error says which.
fn broken_modules() -> Vec<(&'static str, Vec<u8>, &'static str)> {
    let exports = |on_event: &str, memory: &str| {
        format!(
            r#"(module (import "hookline" "subscribe" (func $s (param i32 i32 i32 i32) (result i32)))
            {memory} (func (export "hookline_abi_v1"))
            (func (export "hookline_init") (result i32) (i32.const 0))
            {on_event})"#
        )
    };
    let memory = r#"(memory (export "memory") 1)"#;
    let on_event = r#"(func (export "hookline_on_event") (param i32 i32) (result i32) (i32.const 0))"#;
    let init = |body: &str| good_rule().replace("(drop (call $subscribe", &format!("{body} (drop (call $subscribe"));
    let shipped = std::fs::read(repo_rules().join("message_state.wasm")).expect("rules/message_state.wasm");
    vec![
        ("empty.wasm", Vec::new(), "empty file"),
        ("not_wasm.wasm", b"MZ\x90\0 an executable, not a module".to_vec(), "not a valid WebAssembly module"),
        ("half_written.wasm", shipped[..shipped.len() / 2].to_vec(), "not a valid WebAssembly module"),
        ("no_on_event.wat", exports("", memory).into_bytes(), "missing export `hookline_on_event`"),
        (
            "wrong_on_event.wat",
            exports(r#"(func (export "hookline_on_event") (param i32) (result i32) (i32.const 0))"#, memory).into_bytes(),
            "export `hookline_on_event` must be a function (i32, i32) -> i32",
        ),
        ("no_memory.wat", exports(on_event, "").into_bytes(), "missing export `memory`"),
        (
            "unknown_import.wat",
            good_rule().replace(r#"(import "hookline" "route""#, r#"(import "hookline" "open_socket""#).into_bytes(),
            "imports `hookline.open_socket`",
        ),
        (
            "wasi_import.wat",
            good_rule().replace(r#"(import "hookline" "route""#, r#"(import "wasi_snapshot_preview1" "fd_write""#).into_bytes(),
            "imports `wasi_snapshot_preview1.fd_write`",
        ),
        (
            "wrong_import.wat",
            good_rule()
                .replace("(param i32 i32 i32 i32) (result i32)))\n  (memory", "(param i32 i32 i32 i32) (result i64)))\n  (memory")
                .into_bytes(),
            "import `hookline.route` has the wrong signature",
        ),
        (
            "huge_memory.wat",
            good_rule().replace(r#"(memory (export "memory") 1)"#, r#"(memory (export "memory") 1000)"#).into_bytes(),
            "instantiating or running hookline_init failed: forcing trap when growing memory to 65536000 bytes",
        ),
        ("init_loops.wat", init("(loop $l (br $l))").into_bytes(), "hookline_init failed: wasm trap: all fuel consumed"),
        ("init_traps.wat", init("unreachable").into_bytes(), "hookline_init failed: wasm trap: wasm `unreachable` instruction executed"),
        (
            "init_refuses.wat",
            good_rule()
                .replace("(i32.const 0))\n  (func (export \"hookline_on_event\")", "(i32.const 7))\n  (func (export \"hookline_on_event\")")
                .into_bytes(),
            "hookline_init returned 7",
        ),
    ]
}

#[test]
fn each_broken_module_is_refused_at_load_with_its_reason() {
    let engine =
        hookline::rules::RuleEngine::new(&hookline::config::RulesConfig::default(), hookline::sink::DestinationNames::kafka()).unwrap();
    let mut wrong = Vec::new();
    for (name, bytes, reason) in broken_modules() {
        match hookline::rules::RuleModule::load(&engine, name, &bytes) {
            Ok(_) => wrong.push(format!("{name}: loaded")),
            Err(e) if !e.to_string().contains(reason) => wrong.push(format!("{name}: expected `{reason}`, got `{e}`")),
            Err(_) => {}
        }
    }
    assert!(wrong.is_empty(), "{}", wrong.join("\n"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn broken_modules_in_the_rules_directory_are_counted_and_the_good_rule_routes() {
    let corpus = broken_modules();
    let files: Vec<(&str, &[u8])> = corpus.iter().map(|(name, bytes, _)| (*name, bytes.as_slice())).collect();
    let scene = good_rule_routes_n_of_n_beside(&files).await;
    let loaded: Vec<String> = scene.gateway().rules().modules.iter().map(|m| m.name.to_string()).collect();
    assert_eq!(loaded, ["good.wat"]);
    assert_eq!(scene.counter("rule_load_failures"), corpus.len() as i64);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn emptying_a_loaded_rule_file_keeps_the_loaded_version_routing() {
    let scene = Scene::start(&[("good.wat", good_rule().as_bytes())], None).await;
    std::fs::write(scene.rules_dir().join("good.wat"), b"").unwrap();
    assert!(wait_for(Duration::from_secs(5), || scene.counter("rule_load_failures") == 1).await, "the empty file is refused");
    assert_eq!(scene.gateway().rules().modules.len(), 1, "still loaded");
    publish_n_and_count(&scene, "lock-e", 0).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rule_file_still_being_written_keeps_the_loaded_version_routing_until_complete() {
    use std::io::Write;
    let scene = Scene::start(&[("good.wat", good_rule().as_bytes())], None).await;
    let v2 = route_rule("message.publish", "devices/+/state", "message_state_v2");
    let mut file = std::fs::File::create(scene.rules_dir().join("good.wat")).unwrap();
    file.write_all(&v2.as_bytes()[..v2.len() / 2]).unwrap();
    file.flush().unwrap();
    assert!(wait_for(Duration::from_secs(5), || scene.counter("rule_load_failures") >= 1).await, "the partial file is refused");
    publish_n_and_count(&scene, "lock-w", 0).await;

    let loads = scene.counter("rule_loads");
    file.write_all(&v2.as_bytes()[v2.len() / 2..]).unwrap();
    drop(file);
    assert!(wait_for(Duration::from_secs(5), || scene.counter("rule_loads") > loads).await, "the completed file loads");
    let mut device = Device::connect(scene.addr, "lock-w2").await;
    device.publish("devices/lock-w2/state", "v2", QoS::AtLeastOnce).await;
    device.wait_pubacks(1).await;
    assert_eq!(scene.file_records(N + 1).await[N]["topic"], "message_state_v2");
}
