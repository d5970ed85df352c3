//! A fleet larger than the open-file limit allows: the gateway raises its soft limit to
//! the hard one, every client gets a CONNACK (accepted, or refused as "server busy"),
//! and the gateway's own files (spool, rules) never run out.

use std::time::Duration;

use crate::support::raw_mqtt::{connect, publish_qos1, RawClient};
use crate::support::scene::{wait_for, GatewayBinary};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_fleet_beyond_the_open_file_limit_is_refused_as_server_busy_and_the_gateways_files_keep_working() {
    // The clients below need their sockets too.
    rlimit::increase_nofile_limit(4096).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let rules = dir.path().join("rules");
    std::fs::create_dir(&rules).unwrap();
    let rule = crate::support::fixtures::route_rule("message.publish", "devices/+/state", "message_state");
    std::fs::write(rules.join("state.wat"), rule).unwrap();
    // Soft 256, hard 512: raised to 512, less 256 reserved: 256 sockets, 224 of them
    // for connections (32 kept for handshakes).
    let gateway = GatewayBinary::start_with(dir.path(), |command| {
        use std::os::unix::process::CommandExt;
        command.args(["--listen", "127.0.0.1:0", "--admin", "127.0.0.1:0", "--allow-anonymous", "--rules", "rules", "--data", "data"]);
        // SAFETY: setrlimit is async-signal-safe; nothing else runs in the child yet.
        unsafe {
            command.pre_exec(|| rlimit::setrlimit(rlimit::Resource::NOFILE, 256, 512));
        }
    })
    .await;
    let log = gateway.log_text();
    assert!(log.contains("open_files=512 raised_from=256 connections=224"), "{log}");

    let mut clients = Vec::new();
    let mut codes = Vec::new();
    for i in 0..400 {
        let mut client = RawClient::open(gateway.addr).await;
        client.send(&connect(4, &format!("lock-{i}"), true, 60)).await;
        clients.push(client);
    }
    for client in &mut clients {
        let connack = client.receive().await;
        codes.push(connack.filter(|(first, _)| *first == 0x20).and_then(|(_, body)| body.get(1).copied()));
    }
    let accepted = codes.iter().filter(|c| **c == Some(0)).count();
    let busy = codes.iter().filter(|c| **c == Some(3)).count();
    assert_eq!((accepted, busy), (224, 176), "every client hears a CONNACK: accepted or server busy ({codes:?})");

    // The connected ones report, and the gateway's files work: the spool takes the
    // reports, the rule routes them to the file sink, a new rule loads.
    for (client, code) in clients.iter_mut().zip(&codes) {
        if *code == Some(0) {
            client.send(&publish_qos1(b"devices/lock/state", b"{}")).await;
            assert_eq!(client.receive().await.map(|(first, _)| first), Some(0x40), "PUBACK");
        }
    }
    let records = dir.path().join("data/records.jsonl");
    let delivered =
        wait_for(Duration::from_secs(20), || std::fs::read_to_string(&records).unwrap_or_default().lines().count() == 224).await;
    std::fs::write(rules.join("again.wat"), crate::support::fixtures::route_rule("message.publish", "other/+", "other")).unwrap();
    let reloaded = wait_for(Duration::from_secs(10), || gateway.log_text().contains("again.wat")).await;
    let log = gateway.log_text();
    assert!(delivered && reloaded, "records and rules: {log}");
    assert!(!log.contains("Too many open files"), "{log}");
}
