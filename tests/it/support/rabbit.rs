//! RabbitMQ as a separate process: Debian's `rabbitmq-server` (installed by `.ci/run`).
//! A test that stops, restarts, alarms (memory alarm: publishing connections blocked) or
//! configures its broker starts one of its own, on its own ports, node name and data
//! directory, which can be stopped and started again on the same data (durable queues
//! and persistent messages survive). The others share one broker per test binary, each
//! in a virtual host of its own. AMQP helpers to declare the topology and read queues
//! back, in the test's virtual host.

use std::os::unix::process::CommandExt;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use lapin::options::{BasicGetOptions, ExchangeDeclareOptions, QueueBindOptions, QueueDeclareOptions};
use lapin::types::{AMQPValue, FieldTable};
use lapin::{Connection, ConnectionProperties, ExchangeKind};

use crate::support::ports::start_on_unused_ports;

/// Where Debian puts the server and its control tool; `RABBITMQ_BIN_DIR` overrides.
fn bin(tool: &str) -> String {
    let dir = std::env::var("RABBITMQ_BIN_DIR").unwrap_or_else(|_| "/usr/lib/rabbitmq/bin".to_string());
    format!("{dir}/{tool}")
}

/// A broker process.
pub struct RabbitServer {
    dir: tempfile::TempDir,
    pub port: u16,
    dist_port: u16,
    /// A port for a listener `conf` adds (`start_with`).
    pub spare_port: u16,
    node: String,
    child: Option<Child>,
    /// Holds a pipe to the process that kills the shared broker at exit.
    _watchdog: Option<Child>,
}

/// A test's broker, its own or the shared one, and the virtual host its exchanges and
/// queues are in.
pub struct Rabbit {
    server: Server,
    vhost: String,
}

enum Server {
    Own(RabbitServer),
    Shared(&'static RabbitServer),
}

impl std::ops::Deref for Rabbit {
    type Target = RabbitServer;

    fn deref(&self) -> &RabbitServer {
        match &self.server {
            Server::Own(server) => server,
            Server::Shared(server) => server,
        }
    }
}

impl Rabbit {
    /// A broker of the test's own (virtual host `/`), to stop, restart or alarm.
    pub fn start() -> Rabbit {
        Rabbit::start_with(|_| String::new())
    }

    /// A broker of the test's own with `conf(spare_port)` added to its `rabbitmq.conf`;
    /// see `RabbitServer::start_with`.
    pub fn start_with(conf: impl Fn(u16) -> String) -> Rabbit {
        Rabbit { server: Server::Own(RabbitServer::start_with(conf)), vhost: "/".into() }
    }

    /// A virtual host of its own on the broker this test binary shares (started at its
    /// first use, killed when the binary exits).
    pub fn shared() -> Rabbit {
        static SHARED: OnceLock<RabbitServer> = OnceLock::new();
        static VHOSTS: AtomicUsize = AtomicUsize::new(0);
        let server = tokio::task::block_in_place(|| {
            let server = SHARED.get_or_init(|| RabbitServer::start_with(|_| String::new()).killed_at_exit());
            let vhost = format!("test-{}", VHOSTS.fetch_add(1, Ordering::Relaxed));
            server.ctl(&["add_vhost", &vhost]);
            server.ctl(&["set_permissions", "-p", &vhost, "guest", ".*", ".*", ".*"]);
            (server, vhost)
        });
        Rabbit { server: Server::Shared(server.0), vhost: server.1 }
    }

    pub fn vhost(&self) -> &str {
        &self.vhost
    }

    pub fn uri(&self) -> String {
        self.uri_in(&self.vhost)
    }

    /// Stops this test's own broker; see `RabbitServer::stop`.
    pub fn stop(&mut self) {
        self.own().stop();
    }

    /// Starts this test's own broker again; see `RabbitServer::run`.
    pub fn run(&mut self) {
        self.own().run();
    }

    fn own(&mut self) -> &mut RabbitServer {
        match &mut self.server {
            Server::Own(server) => server,
            Server::Shared(_) => panic!("the shared broker is not a test's to stop or start: use Rabbit::start"),
        }
    }

    pub async fn connect(&self) -> Connection {
        Connection::connect(&self.uri(), ConnectionProperties::default()).await.expect("AMQP connection to the test broker")
    }

    /// A durable `topic` exchange and a durable queue bound to it with `binding`.
    pub async fn exchange_to_queue(&self, exchange: &str, queue: &str, binding: &str) {
        let connection = self.connect().await;
        let channel = connection.create_channel().await.unwrap();
        let durable = ExchangeDeclareOptions { durable: true, ..Default::default() };
        channel.exchange_declare(exchange.into(), ExchangeKind::Topic, durable, FieldTable::default()).await.unwrap();
        let queue_options = QueueDeclareOptions { durable: true, ..Default::default() };
        channel.queue_declare(queue.into(), queue_options, FieldTable::default()).await.unwrap();
        channel
            .queue_bind(queue.into(), exchange.into(), binding.into(), QueueBindOptions::default(), FieldTable::default())
            .await
            .unwrap();
        connection.close(200, "declared".into()).await.unwrap();
    }

    /// Takes every message in `queue` (acknowledged, so they leave it), in order.
    pub async fn drain(&self, queue: &str) -> Vec<Message> {
        let connection = self.connect().await;
        let channel = connection.create_channel().await.unwrap();
        let mut messages = Vec::new();
        while let Some(got) = channel.basic_get(queue.into(), BasicGetOptions { no_ack: true }).await.unwrap() {
            let delivery = got.delivery;
            let properties = &delivery.properties;
            let headers = properties
                .headers()
                .as_ref()
                .map(|table| {
                    table
                        .inner()
                        .iter()
                        .map(|(name, value)| {
                            let bytes = match value {
                                AMQPValue::LongString(s) => s.as_bytes().to_vec(),
                                other => format!("{other:?}").into_bytes(),
                            };
                            (name.to_string(), bytes)
                        })
                        .collect()
                })
                .unwrap_or_default();
            messages.push(Message {
                routing_key: delivery.routing_key.to_string(),
                body: delivery.data,
                persistent: *properties.delivery_mode() == Some(2),
                content_type: properties.content_type().as_ref().map(|c| c.to_string()),
                headers,
            });
        }
        connection.close(200, "drained".into()).await.unwrap();
        messages
    }
}

impl RabbitServer {
    /// A broker with `conf(spare_port)` added to its `rabbitmq.conf` (e.g. a TLS
    /// listener on that port). rabbitmq-server cannot report ports it chose: a start
    /// that fails (a port taken meanwhile) is tried again on new ones.
    pub fn start_with(conf: impl Fn(u16) -> String) -> RabbitServer {
        start_on_unused_ports(3, "rabbitmq-server", |ports| {
            let [port, dist_port, spare_port] = ports.try_into().expect("three ports");
            let mut rabbit = RabbitServer {
                dir: tempfile::tempdir().unwrap(),
                port,
                dist_port,
                spare_port,
                node: format!("hookline-test-{port}@localhost"),
                child: None,
                _watchdog: None,
            };
            std::fs::write(rabbit.dir.path().join("enabled_plugins"), "[].\n").unwrap();
            // Below the default free-disk limit some CI disks sit at; alarms are what
            // `alarm` sets, not the machine's state.
            let conf = format!("disk_free_limit.absolute = 1MB\nloopback_users = none\n{}", conf(spare_port));
            std::fs::write(rabbit.dir.path().join("rabbitmq.conf"), conf).unwrap();
            rabbit.try_run().map(|()| rabbit)
        })
    }

    /// The AMQP URI of virtual host `vhost` here.
    fn uri_in(&self, vhost: &str) -> String {
        let vhost = match vhost {
            "/" => "%2f",
            name => name,
        };
        format!("amqp://guest:guest@127.0.0.1:{}/{vhost}", self.port)
    }

    /// A process that waits for this test binary to end (its end of a pipe closes then,
    /// however the binary ends) and kills the broker and removes its data: a static
    /// broker is never dropped, and rabbitmq-server leaves its Erlang VM running.
    fn killed_at_exit(mut self) -> RabbitServer {
        let group = self.child.as_ref().expect("running").id().to_string();
        let watchdog = Command::new("sh")
            .args(["-c", "cat >/dev/null; env kill -KILL -- \"-$0\"; rm -rf \"$1\"", &group])
            .arg(self.dir.path())
            .stdin(Stdio::piped())
            .spawn()
            .expect("run sh");
        self._watchdog = Some(watchdog);
        self
    }

    /// Starts the server again on this broker's data and ports (its own until it
    /// stopped) and waits until AMQP clients can connect.
    pub fn run(&mut self) {
        if let Err(why) = self.try_run() {
            panic!("{why}");
        }
    }

    fn try_run(&mut self) -> Result<(), String> {
        assert!(self.child.is_none(), "already running");
        let dir = self.dir.path();
        let server = bin("rabbitmq-server");
        let child = Command::new(&server)
            .env("RABBITMQ_NODENAME", &self.node)
            .env("RABBITMQ_NODE_PORT", self.port.to_string())
            .env("RABBITMQ_DIST_PORT", self.dist_port.to_string())
            .env("RABBITMQ_MNESIA_BASE", dir.join("mnesia"))
            .env("RABBITMQ_LOG_BASE", dir.join("log"))
            .env("RABBITMQ_ENABLED_PLUGINS_FILE", dir.join("enabled_plugins"))
            .env("RABBITMQ_CONFIG_FILE", dir.join("rabbitmq"))
            .env("RABBITMQ_PID_FILE", dir.join("pid"))
            .current_dir(dir)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            // Its own process group: the script starts the Erlang VM as a child.
            .process_group(0)
            .spawn()
            .unwrap_or_else(|e| panic!("cannot run {server}: {e}; install Debian's rabbitmq-server (.ci/run does)"));
        self.child = Some(child);
        let deadline = Instant::now() + Duration::from_secs(60);
        while !self.accepts_amqp() {
            if let Some(exit) = self.child.as_mut().unwrap().try_wait().unwrap() {
                self.child = None;
                return Err(format!("rabbitmq-server exited at start ({exit}): see {}", dir.join("log").display()));
            }
            if Instant::now() > deadline {
                return Err(format!("rabbitmq-server not accepting AMQP after 60 s: see {}", dir.join("log").display()));
            }
            std::thread::sleep(Duration::from_millis(200));
        }
        Ok(())
    }

    /// Whether an AMQP client can open a connection (on a thread of its own, so any
    /// caller may ask).
    fn accepts_amqp(&self) -> bool {
        let uri = self.uri_in("/");
        std::thread::scope(|scope| {
            scope
                .spawn(|| {
                    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
                    runtime.block_on(async {
                        let connecting = Connection::connect(&uri, ConnectionProperties::default());
                        match tokio::time::timeout(Duration::from_secs(2), connecting).await {
                            Ok(Ok(connection)) => connection.close(200, "up".into()).await.is_ok(),
                            _ => false,
                        }
                    })
                })
                .join()
                .unwrap()
        })
    }

    /// Stops the server as `rabbitmqctl stop` or a service manager would (SIGTERM), and
    /// waits until it is gone.
    pub fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = Command::new("kill").args(["-TERM", "--", &format!("-{}", child.id())]).status();
            let deadline = Instant::now() + Duration::from_secs(30);
            while self.beam_running() && Instant::now() < deadline {
                std::thread::sleep(Duration::from_millis(100));
            }
            let _ = Command::new("kill").args(["-KILL", "--", &format!("-{}", child.id())]).status();
            let _ = child.wait();
        }
    }

    fn beam_running(&self) -> bool {
        std::net::TcpStream::connect(("127.0.0.1", self.dist_port)).is_ok()
            || std::net::TcpStream::connect(("127.0.0.1", self.port)).is_ok()
    }

    /// `rabbitmqctl` on this broker; panics with its output when it fails.
    pub fn ctl(&self, args: &[&str]) -> String {
        let output = Command::new(bin("rabbitmqctl")).arg("-n").arg(&self.node).args(args).output().expect("run rabbitmqctl");
        let text = String::from_utf8_lossy(&output.stdout).into_owned() + &String::from_utf8_lossy(&output.stderr);
        assert!(output.status.success(), "rabbitmqctl {args:?}: {text}");
        text
    }

    /// Raises (or clears) the memory alarm: RabbitMQ then blocks every publishing
    /// connection until it clears.
    pub fn memory_alarm(&self, on: bool) {
        self.ctl(&["set_vm_memory_high_watermark", if on { "0.000001" } else { "0.4" }]);
    }
}

impl Drop for RabbitServer {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = Command::new("kill").args(["-KILL", "--", &format!("-{}", child.id())]).status();
            let _ = child.wait();
        }
    }
}

/// A message read back from a queue.
#[derive(Debug)]
pub struct Message {
    pub routing_key: String,
    pub body: Vec<u8>,
    pub persistent: bool,
    pub content_type: Option<String>,
    pub headers: Vec<(String, Vec<u8>)>,
}

impl Message {
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.body).expect("the body is JSON")
    }

    pub fn header(&self, name: &str) -> Option<&[u8]> {
        self.headers.iter().find(|(n, _)| n == name).map(|(_, v)| v.as_slice())
    }
}
