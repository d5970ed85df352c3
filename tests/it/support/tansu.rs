//! tansu, an independent Kafka-compatible broker, as a process of its own with in-memory
//! storage. `.ci/install-kafka-tools.sh` installs it; `TANSU_BIN` overrides the path.
//! Shared by the gateway's tests and the door-lock platform's (which include this file).

use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use rdkafka::ClientConfig;

use super::ports::start_on_unused_ports;

pub struct Tansu {
    child: Child,
    pub port: u16,
}

impl Tansu {
    /// tansu on a port of its own, listening.
    pub fn start() -> Tansu {
        start_on_unused_ports(1, "tansu", |ports| Tansu::try_start_on(ports[0]))
    }

    /// tansu on `port`, which the caller has already given to others (see
    /// `ClosedPort::release`); panics if it cannot listen there.
    pub fn start_on(port: u16) -> Tansu {
        Tansu::try_start_on(port).unwrap_or_else(|why| panic!("tansu on port {port}: {why}"))
    }

    fn try_start_on(port: u16) -> Result<Tansu, String> {
        let bin = std::env::var("TANSU_BIN").unwrap_or_else(|_| "tansu".to_string());
        let url = format!("tcp://127.0.0.1:{port}");
        let child = Command::new(&bin)
            .args(["broker", "--silent", "--listener-url", &url, "--advertised-listener-url", &url])
            .args(["--storage-engine", "memory://tansu/"])
            .stdout(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| panic!("cannot run tansu ({bin}): {e}; install it with .ci/install-kafka-tools.sh"));
        // Dropped on an early return: killed.
        let mut tansu = Tansu { child, port };
        let deadline = Instant::now() + Duration::from_secs(10);
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            if let Some(exit) = tansu.child.try_wait().expect("tansu's status") {
                return Err(format!("tansu exited at start ({exit}): port taken?"));
            }
            if Instant::now() > deadline {
                return Err("tansu not listening after 10 s".into());
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        Ok(tansu)
    }

    pub fn bootstrap(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    /// Stops the broker process where it is (SIGSTOP): connections stay open, nothing
    /// is answered. (Killing it would not do for an outage: its topics are in memory,
    /// and librdkafka 2.12 crashes reading tansu's metadata of topics it no longer has.)
    pub fn freeze(&self) {
        self.signal("-STOP");
    }

    /// Lets a frozen broker go on (SIGCONT).
    pub fn thaw(&self) {
        self.signal("-CONT");
    }

    fn signal(&self, signal: &str) {
        let status = Command::new("kill").args([signal, &self.child.id().to_string()]).status().expect("run kill");
        assert!(status.success(), "kill {signal} tansu");
    }

    /// Creates single-partition topics, so order across keys is observable (unless a
    /// client's metadata request auto-created the topic first).
    pub async fn create_topics(&self, topics: &[&str]) {
        use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
        let admin: AdminClient<rdkafka::client::DefaultClientContext> =
            ClientConfig::new().set("bootstrap.servers", self.bootstrap()).create().expect("an admin client");
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

/// A consumer group of its own for each reader, so readers never share offsets.
pub fn unique_group(prefix: &str) -> String {
    static NEXT: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    format!("{prefix}-{}-{}", std::process::id(), NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed))
}
