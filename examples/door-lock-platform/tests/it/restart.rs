//! A consumer stopped mid-stream and restarted resumes from its committed offset:
//! nothing skipped, nothing handled twice.

use std::collections::BTreeMap;
use std::time::Duration;

use hookline_platform::envelope::Command;
use hookline_platform::sign;

use crate::scene::{command_record, now_ms, tansu_with_topics, wait_for, Platform};

const COMMANDS: usize = 300;

#[tokio::test(flavor = "multi_thread")]
async fn an_auditor_stopped_mid_stream_resumes_without_skipping_or_repeating() {
    let tansu = tansu_with_topics().await;
    let platform = Platform::new(&tansu.bootstrap(), 1, "");
    let now = now_ms();
    let records: Vec<_> = (0..COMMANDS)
        .map(|i| {
            let (pid, nonce) = (format!("p{i}"), format!("n{i}"));
            let sign = sign::sign("secret-L1", "unlock", &nonce, &pid, now / 1000);
            let command = Command { process_id: pid, action: "unlock".into(), nonce_str: nonce, ts: now / 1000, sign };
            command_record("L1", "business-app-1", &command, now + i as i64)
        })
        .collect();
    tansu.produce("message_command", &records[..COMMANDS / 2]);

    let mut auditor = platform.spawn(env!("CARGO_BIN_EXE_auditor"), "auditor", &[]);
    let started = wait_for(Duration::from_secs(20), || !platform.audit_file_lines().is_empty()).await;
    assert!(started, "auditor wrote nothing; log:\n{}", platform.log("auditor"));
    auditor.stop();
    let before_restart = platform.audit_file_lines().len();
    // The rest arrives while the auditor is down.
    tansu.produce("message_command", &records[COMMANDS / 2..]);
    let _auditor = platform.spawn(env!("CARGO_BIN_EXE_auditor"), "auditor", &[]);

    let done = wait_for(Duration::from_secs(30), || platform.audit_file_lines().len() >= COMMANDS).await;
    let lines = platform.audit_file_lines();
    assert!(done, "{} of {COMMANDS} audited; log:\n{}", lines.len(), platform.log("auditor"));
    // A wait on nothing happening: a command audited twice would be written meanwhile.
    tokio::time::sleep(Duration::from_secs(1)).await;
    let lines = platform.audit_file_lines();
    let mut count = BTreeMap::new();
    for line in &lines {
        *count.entry(line["process_id"].as_str().unwrap().to_string()).or_insert(0) += 1;
    }
    let missing: Vec<usize> = (0..COMMANDS).filter(|i| !count.contains_key(&format!("p{i}"))).collect();
    let repeated: Vec<_> = count.iter().filter(|(_, n)| **n > 1).collect();
    assert!(missing.is_empty() && repeated.is_empty(), "missing {missing:?}, repeated {repeated:?}");
    assert!(before_restart < COMMANDS, "stopped mid-stream ({before_restart} of {COMMANDS} done before the stop)");
    assert!(lines.iter().all(|l| l["findings"] == serde_json::json!([])), "no command is a replay of another");
}
