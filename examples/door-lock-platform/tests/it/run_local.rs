//! `run-local.sh`, the demo stack without Docker, as a user runs it: tansu, gateway,
//! consumers and the faulty simulator come up; alarms and audit findings appear; a rule
//! dropped into the rules directory takes effect.

use std::io::{Read as _, Write as _};
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use crate::ports::start_on_unused_ports;
use crate::scene::{hookline_bin, wait_for};

fn metrics(admin: &str) -> String {
    let Ok(mut stream) = std::net::TcpStream::connect(admin) else {
        return String::new();
    };
    let _ = stream.write_all(b"GET /metrics HTTP/1.0\r\n\r\n");
    let mut text = String::new();
    let _ = stream.read_to_string(&mut text);
    text
}

fn audit_findings(work: &Path) -> Vec<(String, String)> {
    let text = std::fs::read_to_string(work.join("audit.jsonl")).unwrap_or_default();
    let mut found = Vec::new();
    for line in text.lines() {
        let line: serde_json::Value = serde_json::from_str(line).expect("audit line is JSON");
        for finding in line["findings"].as_array().into_iter().flatten() {
            found.push((line["lock_id"].as_str().unwrap().to_string(), finding.as_str().unwrap().to_string()));
        }
    }
    found.sort();
    found
}

#[tokio::test(flavor = "multi_thread")]
async fn the_local_stack_shows_alarms_audit_findings_and_a_dropped_in_rule() {
    let bins = hookline_bin().parent().unwrap().to_path_buf();
    let repo = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
    // The script places tansu and the gateway on the ports it is given: a start that
    // fails (a port taken meanwhile) is tried again on new ones, in a new directory.
    let (mut script, work, admin) = tokio::task::block_in_place(|| {
        start_on_unused_ports(3, "run-local.sh", |ports| {
            let work = tempfile::tempdir().unwrap();
            let rules = work.path().join("rules");
            std::fs::create_dir(&rules).unwrap();
            for rule in ["message_state.wasm", "message_command.wat"] {
                std::fs::copy(repo.join("rules").join(rule), rules.join(rule)).unwrap();
            }
            let admin = format!("127.0.0.1:{}", ports[2]);
            let mut script = Command::new("bash")
                .arg(repo.join("examples/door-lock-platform/run-local.sh"))
                // The consumers take about 3 s to join their groups through tansu.
                .args(["--duration", "15", "--bin-dir"])
                .arg(&bins)
                .arg("--work")
                .arg(work.path())
                .arg("--rules")
                .arg(&rules)
                .env("MQTT_PORT", ports[0].to_string())
                .env("TANSU_PORT", ports[1].to_string())
                .env("ADMIN", &admin)
                .env("REPORT_INTERVAL", "1")
                .env_remove("KAFKA")
                .spawn()
                .unwrap();
            // Once the gateway serves its metrics the stack is up.
            let deadline = Instant::now() + Duration::from_secs(30);
            while !metrics(&admin).contains("hookline_rule_routes_total") {
                let gateway_log = || std::fs::read_to_string(work.path().join("hookline.log")).unwrap_or_default();
                if let Some(exit) = script.try_wait().unwrap() {
                    return Err(format!("run-local.sh exited ({exit}) before the gateway was up; its log:\n{}", gateway_log()));
                }
                if Instant::now() > deadline {
                    let _ = Command::new("kill").args(["-TERM", &script.id().to_string()]).status();
                    let _ = script.wait();
                    return Err(format!("gateway not up after 30 s; its log:\n{}", gateway_log()));
                }
                std::thread::sleep(Duration::from_millis(50));
            }
            Ok((script, work, admin))
        })
    });
    let rules = work.path().join("rules");
    let log = |name: &str| std::fs::read_to_string(work.path().join(name)).unwrap_or_default();

    // The stack is up: drop the battery alarm rule in.
    std::fs::copy(repo.join("rules/examples/wat/battery_alarm.wat"), rules.join("battery_alarm.wat")).unwrap();
    let routing = wait_for(Duration::from_secs(10), || {
        metrics(&admin).lines().any(|l| l.starts_with("hookline_module_routes_total{rule=\"battery_alarm") && !l.ends_with(" 0"))
    })
    .await;
    assert!(routing, "the dropped-in rule does not route; metrics:\n{}\ngateway log:\n{}", metrics(&admin), log("hookline.log"));

    let status = tokio::task::spawn_blocking(move || script.wait().unwrap()).await.unwrap();
    assert!(status.success(), "run-local.sh failed: {status}");
    let lock = |n: u8| format!("100836187968331{n}");
    let expected: Vec<(String, String)> =
        [("replay", 71), ("stale", 71), ("tampered", 71)].iter().map(|(f, n)| (lock(*n), f.to_string())).collect();
    assert_eq!(audit_findings(work.path()), expected, "auditor log:\n{}\ntansu log:\n{}", log("auditor.log"), log("tansu.log"));
    let monitor = log("monitor.log");
    for (n, condition) in [(72, "low_battery"), (73, "abnormal_lock_state"), (74, "silent")] {
        let needle = format!("\"lock_id\":\"{}\",\"condition\":\"{condition}\",\"status\":\"raised\"", lock(n));
        assert_eq!(monitor.matches(&needle).count(), 1, "{needle} in monitor log:\n{monitor}");
    }
    assert!(log("notifier.log").contains("was unlocked remotely"), "notifier log:\n{}", log("notifier.log"));
}
