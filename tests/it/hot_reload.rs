//! Hot reload under load: rules added, replaced, broken, half-written and deleted while
//! ten clients publish continuously. Every message is routed exactly once, by exactly
//! one version of the rule, and each device sees the versions in order.

use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use rumqttc::QoS;

use crate::ordering::base64_decode;
use crate::support::fixtures::route_rule;
use crate::support::scene::{wait_for, Device, Scene};

fn version(topic: &str) -> String {
    route_rule("message.publish", "devices/+/state", topic)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rules_change_under_load_without_loss_or_duplicates() {
    const DEVICES: usize = 10;
    let scene = Scene::start(&[("route.wat", version("v1").as_bytes())], None).await;
    let rules = scene.rules_dir();
    let loaded = |name: &str, topic: &str| {
        let set = scene.gateway().rules();
        set.modules.iter().any(|m| &*m.name == name && m.subscriptions.len() == 1)
            && std::fs::read_to_string(rules.join(name)).is_ok_and(|t| t.contains(topic))
    };

    let stop = Arc::new(AtomicBool::new(false));
    let mut publishers = Vec::new();
    for d in 0..DEVICES {
        let mut device = Device::connect(scene.addr, &format!("lock-{d}")).await;
        let stop = stop.clone();
        publishers.push(tokio::spawn(async move {
            let mut sent = 0usize;
            while !stop.load(Ordering::Relaxed) {
                device.publish(&format!("devices/lock-{d}/state"), format!("{sent}"), QoS::AtLeastOnce).await;
                sent += 1;
                tokio::time::sleep(Duration::from_millis(2)).await;
            }
            device.wait_pubacks(sent).await;
            sent
        }));
    }
    let generation = |scene: &Scene| scene.counter("rule_loads");
    let pause = || tokio::time::sleep(Duration::from_millis(300));

    pause().await;
    // Add a second rule.
    std::fs::write(rules.join("extra.wat"), version("extra")).unwrap();
    assert!(wait_for(Duration::from_secs(1), || loaded("extra.wat", "extra")).await, "added rule routes within a second");
    pause().await;

    // Replace the first rule.
    let loads = generation(&scene);
    std::fs::write(rules.join("route.wat"), version("v2")).unwrap();
    assert!(wait_for(Duration::from_secs(1), || generation(&scene) > loads).await, "replacement loads within a second");
    pause().await;

    // A broken file: logged and counted, nothing else changes.
    std::fs::write(rules.join("broken.wasm"), b"\0asm\x01\0\0\0\x99garbage").unwrap();
    assert!(wait_for(Duration::from_secs(2), || scene.counter("rule_load_failures") == 1).await);
    pause().await;

    // Half-written replacement, completed later: v2 keeps routing meanwhile.
    let v3 = version("v3");
    std::fs::write(rules.join("route.wat"), &v3.as_bytes()[..v3.len() / 2]).unwrap();
    assert!(wait_for(Duration::from_secs(2), || scene.counter("rule_load_failures") == 2).await);
    pause().await;
    let loads = generation(&scene);
    std::fs::write(rules.join("route.wat"), &v3).unwrap();
    assert!(wait_for(Duration::from_secs(1), || generation(&scene) > loads).await);
    pause().await;

    // Delete the second rule.
    std::fs::remove_file(rules.join("extra.wat")).unwrap();
    assert!(wait_for(Duration::from_secs(1), || scene.gateway().rules().modules.len() == 1).await);
    pause().await;

    stop.store(true, Ordering::Relaxed);
    let mut sent = Vec::new();
    for p in publishers {
        sent.push(p.await.unwrap());
    }
    let total: usize = sent.iter().sum();

    // Each message: exactly one record among v1/v2/v3; "extra" at most once.
    let records = scene.file_records(total).await;
    let mut main_version: HashMap<(String, usize), String> = HashMap::new();
    let mut extra: HashSet<(String, usize)> = HashSet::new();
    let mut order: HashMap<String, Vec<String>> = HashMap::new();
    for record in &records {
        let value = &record["value"];
        let client = value["client_id"].as_str().unwrap().to_string();
        let seq: usize = String::from_utf8(base64_decode(value["payload"].as_str().unwrap())).unwrap().parse().unwrap();
        let topic = record["topic"].as_str().unwrap().to_string();
        if topic == "extra" {
            assert!(extra.insert((client, seq)), "duplicate extra record");
            continue;
        }
        let previous = main_version.insert((client.clone(), seq), topic.clone());
        assert!(previous.is_none(), "{client} #{seq} routed twice ({previous:?} and {topic})");
        let versions = order.entry(client).or_default();
        if versions.last() != Some(&topic) {
            versions.push(topic);
        }
    }
    assert_eq!(main_version.len(), total, "every message routed by the main rule exactly once");
    assert!(!extra.is_empty(), "the added rule routed while it existed");
    for (client, versions) in &order {
        let mut sorted = versions.clone();
        sorted.sort();
        assert_eq!(versions, &sorted, "{client} saw versions out of order: {versions:?}");
        assert_eq!(versions.last().map(String::as_str), Some("v3"), "{client}");
    }
    assert_eq!(scene.counter("spool_dropped"), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rule_reads_its_settings_file_and_reloads_when_it_changes() {
    let rule = crate::support::fixtures::configurable_topic_rule();
    let scene = Scene::start(&[("routed.wat", rule.as_bytes()), ("routed.toml", b"topic = \"first\"\n")], None).await;
    let lock = Device::connect(scene.addr, "lock-s").await;
    lock.publish("devices/lock-s/state", "1", QoS::AtLeastOnce).await;
    assert_eq!(scene.file_records(1).await[0]["topic"], "first");

    // Written aside and renamed, as docs/rules.md ("Hot reload") advises, so no reader sees a partial file.
    let replace_settings = |text: &str| {
        let tmp = scene.rules_dir().join(".routed.toml.tmp");
        std::fs::write(&tmp, text).unwrap();
        std::fs::rename(&tmp, scene.rules_dir().join("routed.toml")).unwrap();
    };
    let loads = scene.counter("rule_loads");
    replace_settings("topic = \"second\"\n");
    assert!(wait_for(Duration::from_secs(2), || scene.counter("rule_loads") > loads).await, "settings change reloads the rule");
    lock.publish("devices/lock-s/state", "2", QoS::AtLeastOnce).await;
    assert_eq!(scene.file_records(2).await[1]["topic"], "second");

    // Broken settings: refused, the loaded version keeps its settings.
    replace_settings("topic = [");
    assert!(wait_for(Duration::from_secs(2), || scene.counter("rule_load_failures") == 1).await);
    lock.publish("devices/lock-s/state", "3", QoS::AtLeastOnce).await;
    assert_eq!(scene.file_records(3).await[2]["topic"], "second");
}
