//! The auditor writes one line per acknowledged command and per report following one,
//! to the `audit` topic and the audit file, flagging tampered, replayed, stale and
//! unknown-lock commands.

use std::time::Duration;

use hookline_platform::envelope::Command;
use hookline_platform::sign;
use serde_json::{json, Value};

use crate::scene::{command_record, now_ms, report, state_record, tansu_with_topics, wait_for, Platform};

fn signed(lock: &str, process_id: &str, nonce: &str, ts_secs: i64) -> Command {
    let sign = sign::sign(&format!("secret-{lock}"), "unlock", nonce, process_id, ts_secs);
    Command { process_id: process_id.into(), action: "unlock".into(), nonce_str: nonce.into(), ts: ts_secs, sign }
}

#[tokio::test(flavor = "multi_thread")]
async fn every_command_is_audited_with_its_findings_and_its_following_report() {
    let tansu = tansu_with_topics().await;
    let platform = Platform::new(&tansu.bootstrap(), 2, "");
    let now = now_ms();
    let secs = now / 1000;
    let good = signed("L1", "p-good", "n-good", secs);
    let mut tampered = signed("L1", "p-tampered", "n-tampered", secs);
    tampered.process_id = "p-changed".into();
    let stale = signed("L2", "p-stale", "n-stale", secs - 3600);
    let by_other_secret = signed("L1", "p-wrong-lock", "n-wrong", secs);
    tansu.produce(
        "message_command",
        &[
            command_record("L1", "business-app-1", &good, now),
            command_record("L1", "business-app-1", &tampered, now + 1),
            command_record("L1", "business-app-1", &good, now + 2),
            command_record("L2", "business-app-2", &stale, now + 3),
            command_record("L2", "business-app-1", &by_other_secret, now + 4),
            command_record("L7", "business-app-1", &signed("L7", "p-unknown", "n-unknown", secs), now + 5),
        ],
    );
    tansu.produce(
        "message_state",
        &[
            state_record("L1", report("L1", "p-good", "unlock", 80.0, json!(1)), now + 10),
            state_record("L1", report("L1", "p-periodic", "report", 80.0, json!(1)), now + 11),
        ],
    );
    let _auditor = platform.spawn(env!("CARGO_BIN_EXE_auditor"), "auditor", &[]);

    // Commands and reports are on two topics, read in either order: the report of
    // p-good is either its own line after the command, or `state_report_seen` on it.
    let lines = tansu.read("audit", 6, Duration::from_secs(2));
    let mut commands: Vec<(String, String)> = lines
        .iter()
        .filter(|l| l["kind"] == "command")
        .map(|l| (l["process_id"].as_str().unwrap().to_string(), l["findings"].to_string()))
        .collect();
    commands.sort();
    let mut expected: Vec<(String, String)> = [
        ("p-good", json!([])),
        ("p-changed", json!(["tampered"])),
        ("p-good", json!(["replay"])),
        ("p-stale", json!(["stale"])),
        ("p-wrong-lock", json!(["tampered"])),
        ("p-unknown", json!(["unknown_lock"])),
    ]
    .iter()
    .map(|(pid, findings)| (pid.to_string(), findings.to_string()))
    .collect();
    expected.sort();
    assert_eq!(commands, expected, "audit lines: {lines:#?}\nlog:\n{}", platform.log("auditor"));
    let report_lines: Vec<&Value> = lines.iter().filter(|l| l["kind"] == "state_report").collect();
    let seen_on_command = lines.iter().filter(|l| l["state_report_seen"] == true).count();
    assert_eq!(report_lines.len() + seen_on_command, 1, "p-good's report audited once: {lines:#?}");
    assert!(report_lines.iter().all(|l| l["process_id"] == "p-good" && l["lock_state"] == 1));
    let first = &lines.iter().find(|l| l["process_id"] == "p-good" && l["kind"] == "command").unwrap();
    assert_eq!(
        (first["from"].as_str(), first["lock_id"].as_str(), first["sign_valid"].as_bool()),
        (Some("business-app-1"), Some("L1"), Some(true))
    );
    assert_eq!(first["acked_at"], now);

    let file_complete = wait_for(Duration::from_secs(5), || platform.audit_file_lines().len() >= lines.len()).await;
    assert!(file_complete, "audit file has {} lines", platform.audit_file_lines().len());
    assert_eq!(platform.audit_file_lines(), lines, "the file holds the same lines as the topic");
}
