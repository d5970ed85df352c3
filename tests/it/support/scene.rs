//! Sets up the scene of a test: a gateway (in this process, or the binary in one of its
//! own) on ports it binds itself (port 0), with its own rules and data directories,
//! librdkafka's mock Kafka cluster, and real MQTT clients over TCP.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use hookline::config::SinkKind;
use hookline::{Config, Gateway};
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::mocking::MockCluster;
use rdkafka::producer::{BaseProducer, BaseRecord, DefaultProducerContext, Producer};
use rdkafka::{ClientConfig, Message, TopicPartitionList};
use rumqttc::{AsyncClient, Event, EventLoop, MqttOptions, Packet, QoS};
use tokio::sync::mpsc;

use crate::support::tansu::unique_group;

/// The repository's own rules directory (the shipped default rules).
pub fn repo_rules() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("rules")
}

/// The shipped rules (`rules/*.wasm`, `rules/*.wat`), as files for a test gateway; read
/// once per test binary.
pub fn shipped_rules() -> Vec<(&'static str, &'static [u8])> {
    static RULES: std::sync::OnceLock<Vec<(String, Vec<u8>)>> = std::sync::OnceLock::new();
    let rules = RULES.get_or_init(|| {
        let mut rules = Vec::new();
        for entry in std::fs::read_dir(repo_rules()).unwrap() {
            let path = entry.unwrap().path();
            if matches!(path.extension().and_then(|e| e.to_str()), Some("wasm" | "wat")) {
                let name = path.file_name().unwrap().to_string_lossy().into_owned();
                rules.push((name, std::fs::read(&path).unwrap()));
            }
        }
        assert!(rules.len() >= 2, "the default rules are missing from rules/");
        rules
    });
    rules.iter().map(|(name, content)| (name.as_str(), content.as_slice())).collect()
}

/// A running gateway and its directories.
pub struct Scene {
    pub gateway: Option<Gateway>,
    pub dir: tempfile::TempDir,
    pub addr: SocketAddr,
}

impl Scene {
    pub fn rules_dir(&self) -> PathBuf {
        self.dir.path().join("rules")
    }

    pub fn data_dir(&self) -> PathBuf {
        self.dir.path().join("data")
    }

    /// A gateway with the given rule files (name, content), routing to `kafka` (bootstrap
    /// servers) or, when `None`, to the embedded file sink.
    pub async fn start(rules: &[(&str, &[u8])], kafka: Option<String>) -> Scene {
        Scene::start_with(rules, kafka, |_| {}).await
    }

    pub async fn start_with(rules: &[(&str, &[u8])], kafka: Option<String>, tweak: impl FnOnce(&mut Config)) -> Scene {
        let dir = tempfile::tempdir().unwrap();
        let rules_dir = dir.path().join("rules");
        std::fs::create_dir_all(&rules_dir).unwrap();
        for (name, content) in rules {
            std::fs::write(rules_dir.join(name), content).unwrap();
        }
        let mut config = Config { node: "gateway@127.0.0.1".into(), data: dir.path().join("data"), ..Config::default() };
        // Port 0: the kernel picks a free one as the listener binds; a port picked
        // beforehand could be taken meanwhile by another test's process.
        config.broker.listen = "127.0.0.1:0".parse().unwrap();
        config.rules.dir = rules_dir;
        config.rules.reload_debounce_ms = 50;
        if let Some(kafka) = kafka {
            config.sink.kind = Some(SinkKind::Kafka);
            config.kafka.bootstrap_servers = kafka;
        }
        config.kafka.linger_ms = 1;
        config.admin.listen = "127.0.0.1:0".parse().unwrap();
        config.auth.anonymous = true;
        tweak(&mut config);
        let gateway = Gateway::start(config.validate().expect("valid config")).await.expect("gateway starts");
        let addr = gateway.mqtt_addr();
        Scene { gateway: Some(gateway), dir, addr }
    }

    pub fn gateway(&self) -> &Gateway {
        self.gateway.as_ref().unwrap()
    }

    pub fn counter(&self, name: &str) -> i64 {
        self.gateway().metrics().snapshot().get(name).copied().unwrap_or_else(|| panic!("no counter {name}"))
    }

    pub async fn shutdown(&mut self) {
        if let Some(gateway) = self.gateway.take() {
            gateway.shutdown().await.expect("clean shutdown");
        }
    }

    /// Lines of the file sink, parsed, waiting until at least `n` are there.
    pub async fn file_records(&self, n: usize) -> Vec<serde_json::Value> {
        let path = self.data_dir().join("records.jsonl");
        let mut records = Vec::new();
        let ok = wait_for(Duration::from_secs(10), || {
            let text = std::fs::read_to_string(&path).unwrap_or_default();
            records = text.lines().map(|l| serde_json::from_str(l).expect("record line is JSON")).collect();
            records.len() >= n
        })
        .await;
        assert!(ok, "expected {n} records in {}, got {}: {records:#?}", path.display(), records.len());
        records
    }
}

/// Polls `check` every 20 ms until it holds or `timeout` passes.
pub async fn wait_for(timeout: Duration, mut check: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + timeout;
    loop {
        if check() {
            return true;
        }
        if Instant::now() > deadline {
            return false;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// librdkafka's in-process Kafka cluster with the scenario's topics (1 partition each,
/// so order across all keys is observable).
pub struct MockKafka {
    pub cluster: MockCluster<'static, DefaultProducerContext>,
}

impl MockKafka {
    pub fn new(topics: &[&str]) -> MockKafka {
        let cluster = MockCluster::new(1).expect("mock cluster");
        for topic in topics {
            cluster.create_topic(topic, 1, 1).expect("create topic");
        }
        create_cluster_topics(&cluster);
        MockKafka { cluster }
    }

    pub fn bootstrap(&self) -> String {
        self.cluster.bootstrap_servers()
    }
}

/// The gateways' cluster topics, which the mock cluster cannot be asked to create.
pub fn create_cluster_topics<C: rdkafka::ClientContext>(cluster: &MockCluster<'_, C>) {
    for (topic, partitions) in hookline::cluster::topics(&Default::default()) {
        cluster.create_topic(&topic, partitions, 1).expect("create a cluster topic");
    }
}

/// A record as read back from Kafka.
#[derive(Debug, Clone)]
pub struct KafkaRecord {
    pub key: String,
    pub value: String,
}

impl KafkaRecord {
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_str(&self.value).expect("record value is JSON")
    }
}

/// Produces one record and waits until Kafka has it.
pub fn produce(bootstrap: &str, topic: &str, key: Option<&str>, value: &str) {
    let producer: BaseProducer = ClientConfig::new().set("bootstrap.servers", bootstrap).create().expect("producer");
    let mut record = BaseRecord::to(topic).payload(value);
    if let Some(key) = key {
        record = record.key(key);
    }
    producer.send(record).map_err(|(e, _)| e).expect("produce");
    producer.flush(Duration::from_secs(10)).expect("flush");
}

/// Reads every record of `topic` from the beginning until `n` arrived
/// or `timeout` passed, then keeps reading for `settle` to catch duplicates.
pub fn consume(bootstrap: &str, topic: &str, n: usize, timeout: Duration, settle: Duration) -> Vec<KafkaRecord> {
    let consumer: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .set("group.id", unique_group("test"))
        .set("enable.auto.commit", "false")
        .set("auto.offset.reset", "earliest")
        .create()
        .expect("consumer");
    // Every partition: a broker that auto-created the topic may have made several.
    let metadata = consumer.fetch_metadata(Some(topic), Duration::from_secs(10)).expect("topic metadata");
    let mut assignment = TopicPartitionList::new();
    for partition in metadata.topics()[0].partitions() {
        assignment.add_partition_offset(topic, partition.id(), rdkafka::Offset::Beginning).unwrap();
    }
    consumer.assign(&assignment).unwrap();
    let mut records = Vec::new();
    let deadline = Instant::now() + timeout;
    let mut settle_until: Option<Instant> = None;
    loop {
        let now = Instant::now();
        if now > deadline || settle_until.is_some_and(|t| now > t) {
            break;
        }
        if let Some(Ok(message)) = consumer.poll(Duration::from_millis(100)) {
            records.push(KafkaRecord {
                key: String::from_utf8_lossy(message.key().unwrap_or_default()).into_owned(),
                value: String::from_utf8_lossy(message.payload().unwrap_or_default()).into_owned(),
            });
        }
        if records.len() >= n && settle_until.is_none() {
            settle_until = Some(Instant::now() + settle);
        }
    }
    records
}

/// An MQTT 3.1.1 client whose event loop runs in the background; incoming publishes
/// are acknowledged automatically (as a door lock does) and forwarded to `inbox`.
pub struct Device {
    pub client: AsyncClient,
    pub inbox: mpsc::UnboundedReceiver<rumqttc::Publish>,
    pub acks: mpsc::UnboundedReceiver<Packet>,
    task: tokio::task::JoinHandle<()>,
}

impl Device {
    pub async fn connect(addr: SocketAddr, client_id: &str) -> Device {
        Device::connect_with(addr, client_id, |_| {}).await
    }

    pub async fn connect_with(addr: SocketAddr, client_id: &str, tweak: impl FnOnce(&mut MqttOptions)) -> Device {
        let mut options = MqttOptions::new(client_id, addr.ip().to_string(), addr.port());
        tweak(&mut options);
        Device::connect_options(options).await
    }

    /// Connects with fully custom options (transport, broker URL, ...).
    pub async fn connect_options(mut options: MqttOptions) -> Device {
        let client_id = options.client_id();
        options.set_keep_alive(Duration::from_secs(30));
        options.set_inflight(1000);
        let (client, mut eventloop) = AsyncClient::new(options, 1000);
        // rumqttc gives up after 5 s; a 2-core CI machine running the whole suite at once
        // can take longer to answer a CONNECT. The wait below bounds it anyway.
        eventloop.network_options.set_connection_timeout(10);
        let (inbox_tx, inbox) = mpsc::unbounded_channel();
        let (acks_tx, acks) = mpsc::unbounded_channel();
        let (connected_tx, connected_rx) = tokio::sync::oneshot::channel();
        let task = tokio::spawn(drive(eventloop, inbox_tx, acks_tx, connected_tx));
        let connected =
            tokio::time::timeout(Duration::from_secs(10), connected_rx).await.expect("CONNACK within 10 s").expect("event loop alive");
        if let Err(e) = connected {
            panic!("{client_id} could not connect: {e}");
        }
        Device { client, inbox, acks, task }
    }

    pub async fn subscribe(&mut self, filter: &str) {
        self.client.subscribe(filter, QoS::AtLeastOnce).await.unwrap();
        self.wait_ack(|p| matches!(p, Packet::SubAck(_))).await;
    }

    pub async fn publish(&self, topic: &str, payload: impl Into<Vec<u8>>, qos: QoS) {
        self.client.publish(topic, qos, false, payload.into()).await.unwrap();
    }

    /// Waits for an incoming packet matching `pred` (acks are forwarded here).
    pub async fn wait_ack(&mut self, pred: impl Fn(&Packet) -> bool) {
        let deadline = Instant::now() + Duration::from_secs(5);
        let mut seen = Vec::new();
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match tokio::time::timeout(left, self.acks.recv()).await {
                Ok(Some(packet)) if pred(&packet) => return,
                Ok(Some(packet)) => seen.push(packet),
                _ => panic!("expected ack not received within 5 s; got instead: {seen:?}"),
            }
        }
    }

    pub async fn wait_pubacks(&mut self, n: usize) {
        for _ in 0..n {
            self.wait_ack(|p| matches!(p, Packet::PubAck(_))).await;
        }
    }

    /// Clean MQTT DISCONNECT.
    pub async fn disconnect(self) {
        let _ = self.client.disconnect().await;
        let _ = tokio::time::timeout(Duration::from_secs(2), self.task).await;
    }

    /// Drops the TCP connection without DISCONNECT.
    pub fn drop_connection(self) {
        self.task.abort();
    }
}

async fn drive(
    mut eventloop: EventLoop,
    inbox: mpsc::UnboundedSender<rumqttc::Publish>,
    acks: mpsc::UnboundedSender<Packet>,
    connected: tokio::sync::oneshot::Sender<Result<(), String>>,
) {
    let mut connected = Some(connected);
    loop {
        match eventloop.poll().await {
            Ok(Event::Incoming(Packet::ConnAck(_))) => {
                if let Some(tx) = connected.take() {
                    let _ = tx.send(Ok(()));
                }
            }
            Ok(Event::Incoming(Packet::Publish(publish))) => {
                let _ = inbox.send(publish);
            }
            Ok(Event::Incoming(packet)) => {
                let _ = acks.send(packet);
            }
            Ok(Event::Outgoing(rumqttc::Outgoing::Disconnect)) => {
                // Let the DISCONNECT reach the socket, then stop.
                let _ = tokio::time::timeout(Duration::from_millis(200), eventloop.poll()).await;
                return;
            }
            Ok(_) => {}
            Err(e) => {
                if let Some(tx) = connected.take() {
                    let _ = tx.send(Err(e.to_string()));
                }
                return;
            }
        }
    }
}

/// The hookline binary in a process of its own, in a directory of its own: its stderr
/// is appended to `gateway.log` there (kept across restarts), and it writes the
/// addresses it bound to `addresses.json` there (`--addresses-file`).
pub struct GatewayBinary {
    child: std::process::Child,
    pub addr: SocketAddr,
    pub admin: SocketAddr,
    pub log: PathBuf,
}

impl GatewayBinary {
    /// `hookline run --listen 127.0.0.1:0 --admin 127.0.0.1:0 <args>` in `dir`.
    pub async fn start(dir: &Path, args: &[&str]) -> GatewayBinary {
        GatewayBinary::start_with(dir, |command| {
            command.args(["--listen", "127.0.0.1:0", "--admin", "127.0.0.1:0"]).args(args);
        })
        .await
    }

    /// `hookline run` in `dir` with the flags and variables `configure` adds (which
    /// must put every listener on port 0), once it has bound them all.
    pub async fn start_with(dir: &Path, configure: impl FnOnce(&mut std::process::Command)) -> GatewayBinary {
        let log = dir.join("gateway.log");
        let addresses = dir.join("addresses.json");
        // A restart in the same directory: wait for this run's addresses, not the last.
        let _ = std::fs::remove_file(&addresses);
        let mut command = std::process::Command::new(env!("CARGO_BIN_EXE_hookline"));
        command
            .current_dir(dir)
            .arg("run")
            .arg("--addresses-file")
            .arg(&addresses)
            .stdout(std::process::Stdio::null())
            .stderr(std::fs::File::options().create(true).append(true).open(&log).unwrap());
        configure(&mut command);
        let child = command.spawn().expect("run the hookline binary");
        let unbound = SocketAddr::from(([0, 0, 0, 0], 0));
        // Killed when dropped, should the wait below panic.
        let mut gateway = GatewayBinary { child, addr: unbound, admin: unbound, log };
        let deadline = Instant::now() + Duration::from_secs(30);
        let text = loop {
            if let Ok(text) = std::fs::read_to_string(&addresses) {
                break text;
            }
            if let Some(exit) = gateway.child.try_wait().unwrap() {
                panic!("the gateway exited ({exit}) before it listened; {}:\n{}", gateway.log.display(), gateway.log_text());
            }
            assert!(
                Instant::now() < deadline,
                "the gateway wrote no {} within 30 s; {}:\n{}",
                addresses.display(),
                gateway.log.display(),
                gateway.log_text()
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        };
        let bound: serde_json::Value = serde_json::from_str(&text).expect("the addresses file is JSON");
        let addr = |name: &str| bound[name].as_str().and_then(|a| a.parse().ok()).unwrap_or_else(|| panic!("no {name} address in {text}"));
        (gateway.addr, gateway.admin) = (addr("mqtt"), addr("admin"));
        gateway
    }

    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// Sends `signal` (`-TERM`, `-KILL`) to the process.
    pub fn signal(&self, signal: &str) {
        let status = std::process::Command::new("kill").args([signal, &self.child.id().to_string()]).status().unwrap();
        assert!(status.success(), "kill {signal}");
    }

    /// Waits for the process to end, at most `within`.
    pub async fn wait_exit(&mut self, within: Duration) -> std::process::ExitStatus {
        let deadline = Instant::now() + within;
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                return status;
            }
            assert!(
                Instant::now() < deadline,
                "gateway still running {within:?} after the signal; {}:\n{}",
                self.log.display(),
                self.log_text()
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// The value of `sample` (a name with its labels, as `/metrics` writes it) on the
    /// admin endpoint; 0 when it is not there or the endpoint does not answer.
    pub fn metric(&self, sample: &str) -> f64 {
        use std::io::{Read, Write};
        let mut text = String::new();
        if let Ok(mut stream) = std::net::TcpStream::connect(self.admin) {
            let _ = stream.write_all(b"GET /metrics HTTP/1.0\r\n\r\n");
            let _ = stream.read_to_string(&mut text);
        }
        text.lines().find_map(|line| line.rsplit_once(' ').filter(|(name, _)| *name == sample)?.1.parse().ok()).unwrap_or(0.0)
    }

    /// Peak resident memory so far, in MiB (VmHWM).
    pub fn peak_rss_mib(&self) -> f64 {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.child.id())).unwrap_or_default();
        let kib: f64 = status
            .lines()
            .find_map(|l| l.strip_prefix("VmHWM:"))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
            .unwrap_or(0.0);
        kib / 1024.0
    }
}

impl Drop for GatewayBinary {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
