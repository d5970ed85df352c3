//! Sets up a test's scene: tansu (the gateway tests' launcher) with the platform's topics, a platform
//! config in a temporary directory, consumer processes, records in the gateway's
//! envelope format, and reading topics back.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use base64::Engine as _;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::producer::{BaseProducer, BaseRecord, Producer};
use rdkafka::{ClientConfig, Message, TopicPartitionList};
use serde_json::{json, Value};

use crate::tansu::unique_group;
pub use crate::tansu::Tansu;

pub const TOPICS: [&str; 5] = ["message_state", "message_command", "alarms", "audit", "device_commands"];

pub fn now_ms() -> i64 {
    hookline_platform::now_ms()
}

/// The platform's topics, one partition each so order is observable.
pub async fn tansu_with_topics() -> Tansu {
    let tansu = Tansu::start();
    tansu.create_topics(&TOPICS).await;
    tansu
}

/// Writing and reading the platform's records.
impl Tansu {
    /// Writes records (key, value) to `topic` and waits until Kafka has them.
    pub fn produce(&self, topic: &str, records: &[(String, Value)]) {
        let producer: BaseProducer = ClientConfig::new().set("bootstrap.servers", self.bootstrap()).create().unwrap();
        for (key, value) in records {
            let value = value.to_string();
            producer.send(BaseRecord::to(topic).key(key).payload(&value)).expect("enqueue record");
        }
        producer.flush(Duration::from_secs(10)).expect("records delivered");
    }

    /// Reads `topic` from the beginning until `n` records arrived (or 20 s passed), then
    /// for `settle` more to catch extra ones.
    pub fn read(&self, topic: &str, n: usize, settle: Duration) -> Vec<Value> {
        let consumer: BaseConsumer = ClientConfig::new()
            .set("bootstrap.servers", self.bootstrap())
            .set("group.id", unique_group("reader"))
            .set("enable.auto.commit", "false")
            .create()
            .unwrap();
        let mut assignment = TopicPartitionList::new();
        assignment.add_partition_offset(topic, 0, rdkafka::Offset::Beginning).unwrap();
        consumer.assign(&assignment).unwrap();
        let mut records = Vec::new();
        let deadline = Instant::now() + Duration::from_secs(20);
        let mut settle_until = None;
        while Instant::now() < deadline && settle_until.is_none_or(|t| Instant::now() < t) {
            if let Some(Ok(message)) = consumer.poll(Duration::from_millis(100)) {
                let value = message.payload().expect("record has a value");
                records.push(serde_json::from_slice(value).expect("output record is JSON"));
            }
            if records.len() >= n && settle_until.is_none() {
                settle_until = Some(Instant::now() + settle);
            }
        }
        records
    }
}

/// A temporary directory with a `platform.toml` whose locks are `L1`..`L<n>` (secret
/// `secret-L<i>`, contact `owner-L<i>@example.org`), plus any extra TOML tables.
pub struct Platform {
    pub dir: tempfile::TempDir,
}

impl Platform {
    pub fn new(bootstrap: &str, locks: usize, extra: &str) -> Platform {
        let dir = tempfile::tempdir().unwrap();
        // tansu 0.6 did not complete a group join within 20 s with librdkafka's default
        // max.poll.interval.ms (5 min, sent as the rebalance timeout); with 10 s it does.
        let mut toml = format!(
            "[kafka]\nbootstrap_servers = \"{bootstrap}\"\n\n[kafka.properties]\n\"max.poll.interval.ms\" = \"10000\"\n\"session.timeout.ms\" = \"6000\"\n\n[auditor]\naudit_file = \"{}\"\nts_window_secs = 60\n\n{extra}\n",
            dir.path().join("audit.jsonl").display()
        );
        for i in 1..=locks {
            toml += &format!("[locks.L{i}]\nowner = \"Owner {i}\"\ncontact = \"owner-L{i}@example.org\"\nsecret = \"secret-L{i}\"\n\n");
        }
        std::fs::write(dir.path().join("platform.toml"), toml).unwrap();
        Platform { dir }
    }

    pub fn config_path(&self) -> PathBuf {
        self.dir.path().join("platform.toml")
    }

    pub fn audit_file_lines(&self) -> Vec<Value> {
        let text = std::fs::read_to_string(self.dir.path().join("audit.jsonl")).unwrap_or_default();
        // A line the auditor is writing right now has no newline yet: not read until done.
        let complete = &text[..text.rfind('\n').map_or(0, |i| i + 1)];
        complete.lines().map(|line| serde_json::from_str(line).expect("audit line is JSON")).collect()
    }

    /// Starts one of the platform's binaries (`notifier`, `monitor`, `auditor`,
    /// `simulator`) with this config; its log goes to `<name>.log` here.
    pub fn spawn(&self, bin_path: &str, name: &str, args: &[&str]) -> Proc {
        let log = std::fs::File::options().create(true).append(true).open(self.log_path(name)).unwrap();
        let child = Command::new(bin_path)
            .arg("--config")
            .arg(self.config_path())
            .args(args)
            .env("RUST_LOG", "info,librdkafka=warn")
            .stderr(log)
            .stdout(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {bin_path}: {e}"));
        Proc { child: Some(child), name: name.into() }
    }

    pub fn log_path(&self, name: &str) -> PathBuf {
        self.dir.path().join(format!("{name}.log"))
    }

    pub fn log(&self, name: &str) -> String {
        std::fs::read_to_string(self.log_path(name)).unwrap_or_default()
    }
}

/// A platform process, killed when dropped.
pub struct Proc {
    child: Option<Child>,
    name: String,
}

impl Proc {
    /// SIGTERM, then waits for a clean exit.
    pub fn stop(&mut self) {
        let mut child = self.child.take().expect("running");
        let status = Command::new("kill").args(["-TERM", &child.id().to_string()]).status().unwrap();
        assert!(status.success(), "kill -TERM {} failed", self.name);
        let exit = child.wait().unwrap();
        assert!(exit.success(), "{} exited with {exit} after SIGTERM", self.name);
    }

    /// Waits for the process to end on its own, at most `timeout`.
    pub fn wait(&mut self, timeout: Duration) -> std::process::ExitStatus {
        let deadline = Instant::now() + timeout;
        let child = self.child.as_mut().expect("running");
        loop {
            if let Some(status) = child.try_wait().unwrap() {
                self.child = None;
                return status;
            }
            assert!(Instant::now() < deadline, "{} still running after {timeout:?}", self.name);
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        if let Some(child) = &mut self.child {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// A `message_state` record value, as the gateway writes it for `report`.
pub fn state_record(lock: &str, report: Value, ts: i64) -> (String, Value) {
    let value = json!({
        "client_id": lock, "username": "", "topic": format!("devices/{lock}/state"),
        "payload": base64::engine::general_purpose::STANDARD.encode(report.to_string()),
        "qos": 1, "node": "gateway@127.0.0.1", "ts": ts,
    });
    (lock.to_string(), value)
}

/// A state report payload in the scenario's format.
pub fn report(lock: &str, process_id: &str, action: &str, battery: f64, lock_state: Value) -> Value {
    json!({"process_id": process_id, "action": action, "battery": battery, "lock_state": lock_state,
           "version": 1.1, "client_id": lock})
}

/// A `message_command` record value: `lock` acknowledged `command` sent by `from`.
pub fn command_record(lock: &str, from: &str, command: &hookline_platform::envelope::Command, ts: i64) -> (String, Value) {
    let payload = serde_json::to_string(command).unwrap();
    let value = json!({
        "client_id": lock, "username": "", "from": from, "topic": format!("devices/{lock}/command"),
        "payload": base64::engine::general_purpose::STANDARD.encode(payload),
        "qos": 1, "node": "gateway@127.0.0.1", "ts": ts,
    });
    (lock.to_string(), value)
}

/// The gateway binary beside the platform's (same target dir), built if missing.
pub fn hookline_bin() -> PathBuf {
    let dir = Path::new(env!("CARGO_BIN_EXE_simulator")).parent().unwrap().to_path_buf();
    if !dir.join("hookline").exists() {
        let status = Command::new(env!("CARGO"))
            .args(["build", "-p", "hookline", "--bin", "hookline"])
            .current_dir(env!("CARGO_MANIFEST_DIR"))
            .status()
            .unwrap();
        assert!(status.success(), "cannot build the hookline binary");
    }
    dir.join("hookline")
}

/// Polls `check` every 50 ms until it holds or `timeout` passes.
pub async fn wait_for(timeout: Duration, mut check: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + timeout;
    while !check() {
        if Instant::now() > deadline {
            return false;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    true
}

/// The repository's shipped rules (the gateway's defaults).
pub fn repo_rules() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../rules")
}
