//! Sets up the scene of a test: a gateway on free ports with its own rules and data
//! directories, a Kafka-protocol peer (librdkafka's mock cluster or a tansu process),
//! and real MQTT clients over TCP.

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

/// The repository's own rules directory (the shipped default rules).
pub fn repo_rules() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("rules")
}

pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
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
        // beforehand (free_port) can be taken meanwhile by another test's process.
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
        .set("group.id", format!("test-{}", free_port()))
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

/// The hookline binary in a process of its own, listening on a port it chose (port 0),
/// read back from its log; `stderr` of the process goes to `log`.
pub struct GatewayBinary {
    child: std::process::Child,
    pub addr: SocketAddr,
    pub log: PathBuf,
}

impl GatewayBinary {
    /// Runs `hookline run --listen 127.0.0.1:0 --admin 127.0.0.1:0 <args>` in `dir`, under
    /// the open-file limits `(soft, hard)` when given, and waits until it listens.
    pub async fn start(dir: &Path, args: &[&str], open_files: Option<(u64, u64)>) -> GatewayBinary {
        use std::os::unix::process::CommandExt;
        let log = dir.join("gateway.log");
        let mut command = std::process::Command::new(env!("CARGO_BIN_EXE_hookline"));
        command
            .current_dir(dir)
            .args(["run", "--listen", "127.0.0.1:0", "--admin", "127.0.0.1:0"])
            .args(args)
            .stdout(std::process::Stdio::null())
            .stderr(std::fs::File::create(&log).unwrap());
        if let Some((soft, hard)) = open_files {
            // SAFETY: setrlimit is async-signal-safe; nothing else runs in the child yet.
            unsafe {
                command.pre_exec(move || rlimit::setrlimit(rlimit::Resource::NOFILE, soft, hard));
            }
        }
        let child = command.spawn().expect("run the hookline binary");
        let mut addr = None;
        let listening = wait_for(Duration::from_secs(30), || {
            let text = std::fs::read_to_string(&log).unwrap_or_default();
            addr = text
                .lines()
                .filter(|l| l.contains("MQTT listener up"))
                .find_map(|l| l.split("listen=").nth(1))
                .and_then(|a| a.split_whitespace().next()?.parse().ok());
            addr.is_some()
        })
        .await;
        let text = std::fs::read_to_string(&log).unwrap_or_default();
        assert!(listening, "the gateway did not say where it listens:\n{text}");
        GatewayBinary { child, addr: addr.expect("parsed"), log }
    }

    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }
}

impl Drop for GatewayBinary {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// tansu, an independent Kafka-compatible broker, as a separate process with in-memory
/// storage. `.ci/install-kafka-tools.sh` installs it; `TANSU_BIN` overrides the path.
pub struct Tansu {
    child: std::process::Child,
    pub port: u16,
}

impl Tansu {
    pub fn start() -> Tansu {
        Tansu::start_on(free_port())
    }

    pub fn start_on(port: u16) -> Tansu {
        let bin = std::env::var("TANSU_BIN").unwrap_or_else(|_| "tansu".to_string());
        let url = format!("tcp://127.0.0.1:{port}");
        let child = std::process::Command::new(&bin)
            .args(["broker", "--silent", "--listener-url", &url, "--advertised-listener-url", &url])
            .args(["--storage-engine", "memory://tansu/"])
            .stdout(std::process::Stdio::null())
            .spawn()
            .unwrap_or_else(|e| panic!("cannot run tansu ({bin}): {e}; install it with .ci/install-kafka-tools.sh"));
        let mut tansu = Tansu { child, port };
        let deadline = Instant::now() + Duration::from_secs(10);
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(tansu.child.try_wait().unwrap().is_none(), "tansu exited at start (port {port} taken?)");
            assert!(Instant::now() < deadline, "tansu not listening after 10 s");
            std::thread::sleep(Duration::from_millis(50));
        }
        tansu
    }

    pub fn bootstrap(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    /// Stops the broker process where it is (SIGSTOP): connections stay open, nothing
    /// is answered. (Killing it would not do for an outage: its topics are in memory,
    /// and librdkafka 2.12 crashes reading tansu's metadata of topics it no longer has.)
    pub fn freeze(&self) {
        let status = std::process::Command::new("kill").args(["-STOP", &self.child.id().to_string()]).status().unwrap();
        assert!(status.success(), "kill -STOP tansu");
    }

    /// Lets a frozen broker go on (SIGCONT).
    pub fn thaw(&self) {
        let status = std::process::Command::new("kill").args(["-CONT", &self.child.id().to_string()]).status().unwrap();
        assert!(status.success(), "kill -CONT tansu");
    }

    /// Creates single-partition topics, so order across keys is observable (unless a
    /// client's metadata request auto-created the topic first).
    pub async fn create_topics(&self, topics: &[&str]) {
        use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
        let admin: AdminClient<rdkafka::client::DefaultClientContext> =
            ClientConfig::new().set("bootstrap.servers", self.bootstrap()).create().unwrap();
        let new: Vec<NewTopic> = topics.iter().map(|t| NewTopic::new(t, 1, TopicReplication::Fixed(1))).collect();
        let results = admin.create_topics(&new, &AdminOptions::new()).await.expect("create topics");
        for result in results {
            match result {
                Ok(_) | Err((_, rdkafka::types::RDKafkaErrorCode::TopicAlreadyExists)) => {}
                Err((topic, code)) => panic!("cannot create topic {topic}: {code}"),
            }
        }
    }
}

impl Drop for Tansu {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
