//! Rules that loop forever, eat memory or trap are contained: the other rules keep
//! routing every event and the gateway keeps serving clients.

use rumqttc::QoS;

use crate::fixtures::{infinite_loop_rule, memory_bomb_rule, route_rule, trap_rule};
use crate::scene::{Device, Scene};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn looping_growing_and_trapping_rules_do_not_stop_the_good_one() {
    let good = route_rule("message.publish", "devices/+/state", "message_state");
    let looping = infinite_loop_rule("devices/+/state");
    let bomb = memory_bomb_rule("devices/+/state");
    let trap = trap_rule("devices/+/state");
    let scene = Scene::start(
        &[
            ("good.wat", good.as_bytes()),
            ("loop.wat", looping.as_bytes()),
            ("bomb.wat", bomb.as_bytes()),
            ("trap.wat", trap.as_bytes()),
        ],
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
    let engine = hookline::rules::RuleEngine::new(&hookline::config::RulesConfig::default()).unwrap();
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
