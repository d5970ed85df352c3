//! End to end: the hookline gateway (shipped rules) in front of tansu, the three
//! consumers, and the simulator with every fault. Each alarm and each audit finding
//! appears exactly once; every obeyed unlock is notified and audited with its report.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::time::Duration;

use serde_json::Value;

use crate::scene::{now_ms, repo_rules, tansu_with_topics, wait_for, Platform};

async fn gateway(kafka: &str) -> (hookline::Gateway, SocketAddr, tempfile::TempDir) {
    let data = tempfile::tempdir().unwrap();
    let mut config = hookline::Config { node: "gateway@127.0.0.1".into(), data: data.path().to_path_buf(), ..Default::default() };
    config.broker.listen = "127.0.0.1:0".parse().unwrap();
    config.rules.dir = repo_rules();
    config.sink.kind = Some(hookline::config::SinkKind::Kafka);
    config.kafka.bootstrap_servers = kafka.into();
    config.kafka.linger_ms = 1;
    config.admin.listen = "127.0.0.1:0".parse().unwrap();
    config.auth.anonymous = true;
    let gateway = hookline::Gateway::start(config.validate().expect("valid config")).await.expect("gateway starts");
    let addr = gateway.mqtt_addr();
    (gateway, addr, data)
}

fn findings(line: &Value) -> Vec<String> {
    line["findings"].as_array().map(|f| f.iter().map(|v| v.as_str().unwrap().to_string()).collect()).unwrap_or_default()
}

#[tokio::test(flavor = "multi_thread")]
async fn every_fault_of_the_simulator_gives_exactly_one_alarm_or_audit_finding() {
    let tansu = tansu_with_topics().await;
    let (gateway, mqtt, _data) = gateway(&tansu.bootstrap()).await;
    let monitor = "[monitor]\nreport_interval_secs = 1\nsilent_intervals = 2\n";
    let platform = Platform::new(&tansu.bootstrap(), 7, monitor);
    let _consumers = [
        platform.spawn(env!("CARGO_BIN_EXE_notifier"), "notifier", &[]),
        platform.spawn(env!("CARGO_BIN_EXE_monitor"), "monitor", &[]),
        platform.spawn(env!("CARGO_BIN_EXE_auditor"), "auditor", &[]),
    ];
    let mqtt = mqtt.to_string();
    let faults = ["--low-battery", "L2", "--bad-state", "L3", "--silent", "L4", "--tampered", "L5", "--replay", "L6", "--stale", "L7"];
    let timing = ["--report-interval-secs", "1", "--unlock-every-secs", "2", "--relock-after-secs", "1", "--duration", "6"];
    let mut simulator = platform.spawn(
        env!("CARGO_BIN_EXE_simulator"),
        "simulator",
        &[&["--mqtt", &mqtt, "--ts-window-secs", "60"][..], &timing, &faults].concat(),
    );
    let status = simulator.wait(Duration::from_secs(60));
    let stopped_at = now_ms();
    assert!(status.success(), "simulator failed: {status}\n{}", platform.log("simulator"));

    // Audit: the three command faults, each flagged once.
    let flagged = |lines: &[Value]| lines.iter().filter(|l| !findings(l).is_empty()).count();
    let all_flagged = wait_for(Duration::from_secs(30), || flagged(&platform.audit_file_lines()) >= 3).await;
    assert!(all_flagged, "audit file: {:#?}\nauditor log:\n{}", platform.audit_file_lines(), platform.log("auditor"));
    // Alarms: L2 low battery, L3 abnormal state, L4 silent; then every lock falls
    // silent once the simulator stopped.
    let alarms = tansu.read("alarms", 3 + 6, Duration::from_secs(2));
    tokio::time::sleep(Duration::from_secs(1)).await;
    let audit = platform.audit_file_lines();
    assert_eq!(tansu.read("audit", audit.len(), Duration::from_secs(1)), audit, "audit topic and file agree");

    let mut found = BTreeMap::new();
    for line in audit.iter().filter(|l| l["kind"] == "command") {
        for finding in findings(line) {
            *found.entry((line["lock_id"].as_str().unwrap().to_string(), finding)).or_insert(0) += 1;
        }
    }
    let expected: BTreeMap<(String, String), i32> =
        [("L5", "tampered"), ("L6", "replay"), ("L7", "stale")].iter().map(|(l, f)| ((l.to_string(), f.to_string()), 1)).collect();
    assert_eq!(found, expected, "audit findings; audit: {audit:#?}");

    // Every command without findings (the periodic unlocks of L1, L5, L6, L7, and L6's
    // replayed one the first time) was obeyed: its state report is audited, and the
    // owner was notified once.
    let clean: Vec<&Value> = audit.iter().filter(|l| l["kind"] == "command" && findings(l).is_empty()).collect();
    assert!(clean.iter().any(|l| l["lock_id"] == "L1") && clean.iter().any(|l| l["lock_id"] == "L6"), "{audit:#?}");
    for command in &clean {
        assert_eq!(command["from"], "business-app-1");
        let reported = command["state_report_seen"] == true
            || audit.iter().any(|l| l["kind"] == "state_report" && l["process_id"] == command["process_id"]);
        assert!(reported, "no state report audited for {command}");
    }
    let notifications = platform.log("notifier").matches("was unlocked remotely").count();
    assert_eq!(notifications, clean.len(), "notifier log:\n{}", platform.log("notifier"));

    let mut raised = BTreeMap::new();
    for alarm in &alarms {
        let (lock, condition) = (alarm["lock_id"].as_str().unwrap(), alarm["condition"].as_str().unwrap());
        if condition == "silent" && lock != "L4" {
            assert!(alarm["ts"].as_i64().unwrap() >= stopped_at - 1000, "{lock} silent while running: {alarm}");
            continue;
        }
        *raised.entry((lock.to_string(), condition.to_string(), alarm["status"].as_str().unwrap().to_string())).or_insert(0) += 1;
    }
    let expected: BTreeMap<(String, String, String), i32> = [("L2", "low_battery"), ("L3", "abnormal_lock_state"), ("L4", "silent")]
        .iter()
        .map(|(l, c)| ((l.to_string(), c.to_string(), "raised".to_string()), 1))
        .collect();
    assert_eq!(raised, expected, "alarms: {alarms:#?}\nmonitor log:\n{}", platform.log("monitor"));
    gateway.shutdown().await.expect("gateway stops cleanly");
}

/// The business app sends its commands through Kafka (`--via kafka`): the gateway's
/// shipped downlink rule publishes each to its lock, the lock obeys it, and the auditor
/// sees every acknowledged command, from `kafka:device_commands`, with its report.
#[tokio::test(flavor = "multi_thread")]
async fn commands_sent_through_kafka_reach_the_locks_and_are_audited() {
    let tansu = tansu_with_topics().await;
    let (gateway, mqtt, _data) = gateway(&tansu.bootstrap()).await;
    // The downlink's consumer group forms first (tansu takes about 20 s): a record
    // without a key, which the rule rejects, shows it consuming.
    tansu.produce("device_commands", &[(String::new(), serde_json::json!({"warm_up": true}))]);
    let consuming = wait_for(Duration::from_secs(60), || gateway.metrics().snapshot()["downlink_records"] >= 1).await;
    assert!(consuming, "the downlink consumed nothing in 60 s");
    let platform = Platform::new(&tansu.bootstrap(), 2, "");
    let _auditor = platform.spawn(env!("CARGO_BIN_EXE_auditor"), "auditor", &[]);
    let mqtt = mqtt.to_string();
    let args = [
        "--mqtt",
        &mqtt,
        "--via",
        "kafka",
        "--report-interval-secs",
        "1",
        "--unlock-every-secs",
        "1",
        "--relock-after-secs",
        "1",
        "--duration",
        "6",
    ];
    let mut simulator = platform.spawn(env!("CARGO_BIN_EXE_simulator"), "simulator", &args);
    let status = simulator.wait(Duration::from_secs(60));
    assert!(status.success(), "simulator failed: {status}\n{}", platform.log("simulator"));
    let sent = platform.log("simulator").matches("sending unlock").count();
    let unlocked = platform.log("simulator").matches("unlocked by command").count();
    assert!(sent >= 3, "the business app sent {sent} unlocks:\n{}", platform.log("simulator"));

    let commands = |lines: &[Value]| lines.iter().filter(|l| l["kind"] == "command").count();
    let audited = wait_for(Duration::from_secs(30), || commands(&platform.audit_file_lines()) >= unlocked).await;
    let audit = platform.audit_file_lines();
    let downlink: Vec<_> =
        gateway.metrics().snapshot().into_iter().filter(|(name, _)| name.starts_with("downlink") || name.starts_with("rule")).collect();
    assert!(
        audited && unlocked >= sent - 1,
        "sent {sent}, obeyed {unlocked}, gateway {downlink:?}, audit: {audit:#?}\nsimulator log:\n{}",
        platform.log("simulator")
    );
    for command in audit.iter().filter(|l| l["kind"] == "command") {
        assert_eq!(command["from"], "kafka:device_commands", "{command}");
        assert!(findings(command).is_empty(), "{command}");
    }
    gateway.shutdown().await.expect("gateway stops cleanly");
}
