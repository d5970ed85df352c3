//! The cluster's recovery as a lock sees it: gateway nodes as processes of their own on
//! one Kafka, locks (MQTT 3.1.1, persistent sessions, QoS 1) spread over them, and
//! numbered commands produced to `device_commands` at a steady rate, each carrying the
//! time it was produced. Each command's time from produce to its lock's receipt is
//! kept, and reported for the commands produced in the window after each event:
//!
//! - a fresh cluster starting (its first command);
//! - steady state;
//! - a lock moving to another node;
//! - a node stopped (SIGTERM), then started again (it joins);
//! - a node killed (SIGKILL) and started again 2 s later;
//! - a node killed for good.
//!
//! A lock whose connection drops connects to the next node at once, as a device behind
//! a load balancer would. Shared by `examples/cluster_recovery` (the benchmark) and the
//! integration tests (a shorter run), which include this file.

use std::collections::{BTreeMap, HashMap};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::producer::{BaseProducer, BaseRecord, Producer};
use rdkafka::{ClientConfig, Message, Offset, TopicPartitionList};
use rumqttc::{AsyncClient, Event, MqttOptions, Packet, QoS};
use tokio::sync::watch;

/// What to run.
pub struct Plan {
    /// The hookline binary.
    pub binary: PathBuf,
    /// Kafka's bootstrap servers.
    pub bootstrap: String,
    /// A scratch directory: the nodes' rules and data.
    pub dir: PathBuf,
    pub nodes: usize,
    pub locks: usize,
    /// Partitions of `device_commands`.
    pub partitions: i32,
    /// Commands per second, round-robin over the locks.
    pub rate: u64,
    /// How long steady state is measured.
    pub steady: Duration,
    /// The window after an event whose commands count for it.
    pub window: Duration,
    /// The pause after each window, before the next event: a command produced at the end
    /// of one window is not held up by the next event.
    pub settle: Duration,
}

/// One line of the report.
pub struct Row {
    pub event: String,
    pub commands: usize,
    pub lost: usize,
    pub duplicated: usize,
    /// Milliseconds from produce to receipt.
    pub p50_ms: f64,
    pub p99_ms: f64,
    pub max_ms: f64,
}

/// The report of a run: one row per event, and every command's fate.
pub struct Report {
    pub rows: Vec<Row>,
    pub produced: usize,
    pub lost: usize,
    pub duplicated: usize,
}

impl Report {
    /// The table, as Markdown.
    pub fn table(&self) -> String {
        let mut out = String::from(
            "| event | commands | lost | duplicated | p50 ms | p99 ms | max ms |\n| --- | ---: | ---: | ---: | ---: | ---: | ---: |\n",
        );
        for r in &self.rows {
            out.push_str(&format!(
                "| {} | {} | {} | {} | {:.1} | {:.1} | {:.1} |\n",
                r.event, r.commands, r.lost, r.duplicated, r.p50_ms, r.p99_ms, r.max_ms
            ));
        }
        out.push_str(&format!("\nall: {} commands produced, {} lost, {} duplicated\n", self.produced, self.lost, self.duplicated));
        out
    }
}

fn now_us() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).expect("after 1970").as_micros() as u64
}

/// A gateway node: a process that can be stopped, killed and started again; each run
/// binds port 0 and reports where in its addresses file.
struct Node {
    name: String,
    /// Where this run's MQTT listener is bound (known once `bound` returns).
    addr: SocketAddr,
    dir: PathBuf,
    child: Option<Child>,
    runs: usize,
}

impl Node {
    fn addresses_file(&self) -> PathBuf {
        self.dir.join("addresses.json")
    }

    fn start(&mut self, plan: &Plan, rules: &Path) -> anyhow::Result<()> {
        self.runs += 1;
        let log = std::fs::File::create(self.dir.join(format!("run-{}.log", self.runs)))?;
        // Left by the last run: `bound` waits for this run's.
        let _ = std::fs::remove_file(self.addresses_file());
        let child = Command::new(&plan.binary)
            .args(["run", "--listen", "127.0.0.1:0", "--admin", "127.0.0.1:0", "--allow-anonymous", "--addresses-file"])
            .arg(self.addresses_file())
            .args(["--kafka", &plan.bootstrap, "--node", &self.name])
            .arg("--rules")
            .arg(rules)
            .arg("--data")
            .arg(self.dir.join("data"))
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()?;
        self.child = Some(child);
        Ok(())
    }

    /// Waits until this run has bound its listeners (it writes the addresses file then),
    /// and learns where the MQTT one is.
    async fn bound(&mut self) -> anyhow::Result<()> {
        let deadline = Instant::now() + Duration::from_secs(30);
        let text = loop {
            if let Ok(text) = std::fs::read_to_string(self.addresses_file()) {
                break text;
            }
            let log = self.dir.join(format!("run-{}.log", self.runs));
            anyhow::ensure!(Instant::now() < deadline, "{} wrote no addresses within 30 s; see {}", self.name, log.display());
            tokio::time::sleep(Duration::from_millis(20)).await;
        };
        let bound: serde_json::Value = serde_json::from_str(&text)?;
        self.addr = bound["mqtt"]
            .as_str()
            .unwrap_or_default()
            .parse()
            .map_err(|e| anyhow::anyhow!("{}: mqtt address in {text}: {e}", self.name))?;
        Ok(())
    }

    fn signal(&mut self, signal: &str) {
        if let Some(mut child) = self.child.take() {
            let _ = Command::new("kill").args([signal, &child.id().to_string()]).status();
            let _ = child.wait();
        }
    }
}

impl Drop for Node {
    fn drop(&mut self) {
        self.signal("-KILL");
    }
}

/// What the locks, the producer and the reference consumer record.
#[derive(Default)]
struct Ledger {
    /// seq -> (lock, produced at, µs).
    produced: BTreeMap<u64, (usize, u64)>,
    /// seq -> receipts, µs.
    received: HashMap<u64, Vec<u64>>,
    /// seq -> when a plain Kafka consumer of `device_commands` read it, µs.
    consumed: HashMap<u64, u64>,
}

type Shared = Arc<Mutex<Ledger>>;

/// Each node's MQTT address, changed when a node starts again (on a new port).
type Addrs = Arc<Mutex<Vec<SocketAddr>>>;

/// A lock: connects to its node (or the next, when that one is away), subscribes to
/// its commands and records each; `home` tells it which node to be on.
fn spawn_lock(id: usize, addrs: Addrs, home: watch::Receiver<usize>, ledger: Shared, subscribed: Arc<AtomicUsize>) {
    tokio::spawn(async move {
        let mut home = home;
        let mut node = *home.borrow();
        let mut first = true;
        loop {
            let addr = addrs.lock().expect("addresses")[node];
            let mut options = MqttOptions::new(format!("lock-{id}"), addr.ip().to_string(), addr.port());
            options.set_keep_alive(Duration::from_secs(5));
            options.set_clean_session(false);
            let (client, mut events) = AsyncClient::new(options, 100);
            let moved = loop {
                tokio::select! {
                    event = events.poll() => match event {
                        Ok(Event::Incoming(Packet::ConnAck(_))) => {
                            let _ = client.try_subscribe(format!("devices/lock-{id}/command"), QoS::AtLeastOnce);
                        }
                        Ok(Event::Incoming(Packet::SubAck(_))) => {
                            if std::mem::take(&mut first) {
                                subscribed.fetch_add(1, Ordering::SeqCst);
                            }
                        }
                        Ok(Event::Incoming(Packet::Publish(publish))) => {
                            let at = now_us();
                            if let Some(seq) = serde_json::from_slice::<serde_json::Value>(&publish.payload).ok().and_then(|v| v["seq"].as_u64()) {
                                ledger.lock().expect("ledger").received.entry(seq).or_default().push(at);
                            }
                        }
                        Ok(_) => {}
                        Err(_) => break false,
                    },
                    changed = home.changed() => match changed {
                        Ok(()) if *home.borrow_and_update() != node => break true,
                        Ok(()) => {}
                        Err(_) => return,
                    },
                }
            };
            let _ = client.disconnect().await;
            drop(events);
            node = match moved {
                true => *home.borrow(),
                false => {
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    (node + 1) % addrs.lock().expect("addresses").len()
                }
            };
        }
    });
}

/// The reference: a plain Kafka consumer of every partition of `device_commands`
/// (produce to consume, the floor of any Kafka-to-device path), until `stop`.
fn spawn_reference(plan: &Plan, ledger: Shared, stop: Arc<AtomicBool>) -> anyhow::Result<std::thread::JoinHandle<()>> {
    let consumer: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", &plan.bootstrap)
        .set("group.id", "reference")
        .set("enable.auto.commit", "false")
        // As the gateway's downlink sets it.
        .set("fetch.wait.max.ms", "10")
        .create()?;
    let mut partitions = TopicPartitionList::new();
    for partition in 0..plan.partitions {
        partitions.add_partition_offset("device_commands", partition, Offset::Beginning)?;
    }
    consumer.assign(&partitions)?;
    Ok(std::thread::spawn(move || {
        while !stop.load(Ordering::SeqCst) {
            if let Some(Ok(message)) = consumer.poll(Duration::from_millis(100)) {
                let at = now_us();
                let seq =
                    message.payload().and_then(|p| serde_json::from_slice::<serde_json::Value>(p).ok()).and_then(|v| v["seq"].as_u64());
                if let Some(seq) = seq {
                    ledger.lock().expect("ledger").consumed.entry(seq).or_insert(at);
                }
            }
        }
    }))
}

/// Produces a command a tick to the locks in turn until `stop`.
fn spawn_producer(plan: &Plan, ledger: Shared, stop: Arc<AtomicBool>) -> anyhow::Result<std::thread::JoinHandle<()>> {
    let producer: BaseProducer =
        ClientConfig::new().set("bootstrap.servers", &plan.bootstrap).set("acks", "all").set("linger.ms", "0").create()?;
    let (rate, locks) = (plan.rate.max(1), plan.locks);
    Ok(std::thread::spawn(move || {
        let tick = Duration::from_micros(1_000_000 / rate);
        let started = Instant::now();
        let mut seq = 0u64;
        while !stop.load(Ordering::SeqCst) {
            let lock = seq as usize % locks;
            produce(&producer, &ledger, seq, lock);
            seq += 1;
            let next = started + tick * seq as u32;
            producer.poll(Duration::ZERO);
            if let Some(wait) = next.checked_duration_since(Instant::now()) {
                std::thread::sleep(wait);
            }
        }
        let _ = producer.flush(Duration::from_secs(10));
    }))
}

fn produce(producer: &BaseProducer, ledger: &Shared, seq: u64, lock: usize) {
    let key = format!("lock-{lock}");
    let sent = now_us();
    let value = format!(r#"{{"action":"unlock","seq":{seq},"sent_us":{sent}}}"#);
    ledger.lock().expect("ledger").produced.insert(seq, (lock, sent));
    while let Err((error, _)) = producer.send(BaseRecord::to("device_commands").key(&key).payload(&value)) {
        eprintln!("producer queue full ({error}); waiting");
        producer.poll(Duration::from_millis(100));
    }
}

/// Starts node `index` again, tells the locks its new address and sends every lock back
/// to its own node (told even when unchanged: a lock that failed over goes back).
async fn restart(
    nodes: &mut [Node],
    index: usize,
    addrs: &Addrs,
    plan: &Plan,
    rules: &Path,
    homes: &[watch::Sender<usize>],
) -> anyhow::Result<()> {
    let node = &mut nodes[index];
    node.start(plan, rules)?;
    node.bound().await?;
    addrs.lock().expect("addresses")[index] = node.addr;
    for (lock, home) in homes.iter().enumerate() {
        home.send_modify(|node| *node = lock % plan.nodes);
    }
    Ok(())
}

/// The events' windows: name, from, to (µs), and the locks it concerns (`None`: all).
struct Window {
    event: String,
    from_us: u64,
    to_us: u64,
    locks: Option<Vec<usize>>,
}

/// Runs the plan and reports.
pub async fn run(plan: &Plan) -> anyhow::Result<Report> {
    let rules = plan.dir.join("rules");
    std::fs::create_dir_all(&rules)?;
    let shipped = Path::new(env!("CARGO_MANIFEST_DIR")).join("rules/device_commands.wasm");
    std::fs::copy(shipped, rules.join("device_commands.wasm"))?;
    let admin: AdminClient<DefaultClientContext> = ClientConfig::new().set("bootstrap.servers", &plan.bootstrap).create()?;
    let topic = NewTopic::new("device_commands", plan.partitions, TopicReplication::Fixed(1));
    admin.create_topics([&topic], &AdminOptions::new()).await?;

    let mut nodes: Vec<Node> = (0..plan.nodes)
        .map(|n| Node {
            name: format!("node-{}", n + 1),
            addr: SocketAddr::from(([127, 0, 0, 1], 0)),
            dir: plan.dir.join(format!("node-{}", n + 1)),
            child: None,
            runs: 0,
        })
        .collect();
    let ledger = Shared::default();
    let mut windows = Vec::new();

    // A fresh cluster: every node started at once, the locks connected as the nodes
    // listen, then one command.
    let started_us = now_us();
    for node in &mut nodes {
        std::fs::create_dir_all(&node.dir)?;
        node.start(plan, &rules)?;
    }
    for node in &mut nodes {
        node.bound().await?;
    }
    let addrs: Addrs = Arc::new(Mutex::new(nodes.iter().map(|node| node.addr).collect()));
    let subscribed = Arc::new(AtomicUsize::new(0));
    let homes: Vec<watch::Sender<usize>> = (0..plan.locks)
        .map(|lock| {
            let (home, rx) = watch::channel(lock % plan.nodes);
            spawn_lock(lock, addrs.clone(), rx, ledger.clone(), subscribed.clone());
            home
        })
        .collect();
    let deadline = Instant::now() + Duration::from_secs(30);
    while subscribed.load(Ordering::SeqCst) < plan.locks && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    eprintln!("fresh cluster: {} locks subscribed after {} ms", subscribed.load(Ordering::SeqCst), (now_us() - started_us) / 1000);
    let first = ClientConfig::new().set("bootstrap.servers", &plan.bootstrap).set("acks", "all").create::<BaseProducer>()?;
    let first_us = now_us();
    produce(&first, &ledger, u64::MAX, 0);
    first.flush(Duration::from_secs(10))?;
    let deadline = Instant::now() + Duration::from_secs(60);
    while !ledger.lock().expect("ledger").received.contains_key(&u64::MAX) && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let event = format!("fresh cluster: first command, produced {} ms after the nodes started", (first_us - started_us) / 1000);
    windows.push(Window { event, from_us: first_us, to_us: now_us(), locks: None });
    // Commands numbered from 0 from here on, at the steady rate.
    let stop = Arc::new(AtomicBool::new(false));
    let reference = spawn_reference(plan, ledger.clone(), stop.clone())?;
    let producer = spawn_producer(plan, ledger.clone(), stop.clone())?;

    let pause = |d: Duration| tokio::time::sleep(d);
    let window = plan.window.as_micros() as u64;
    let event = |name: &str, locks: Option<Vec<usize>>, span: u64| {
        let from_us = now_us();
        Window { event: name.to_string(), from_us, to_us: from_us + span, locks }
    };

    // The nodes share the downlink's partitions as they hear of each other.
    pause(Duration::from_secs(3)).await;
    let steady = event("steady state", None, plan.steady.as_micros() as u64);
    pause(plan.steady).await;
    windows.push(steady);

    // A few locks move to the next node, one at a time.
    let movers: Vec<usize> = (0..plan.locks.min(3)).collect();
    for &lock in &movers {
        let moving = event("lock moves to another node", Some(vec![lock]), window);
        homes[lock].send_replace((lock + 1) % plan.nodes);
        pause(plan.window).await;
        windows.push(moving);
        pause(plan.settle).await;
    }
    let last = plan.nodes - 1;
    let on_last: Vec<usize> = (0..plan.locks).filter(|l| l % plan.nodes == last).collect();

    // Stopped, then started again.
    let stopped = event("node stopped (SIGTERM)", None, window);
    nodes[last].signal("-TERM");
    pause(plan.window).await;
    windows.push(stopped);
    pause(plan.settle).await;
    let joins = event("node started again (joins)", None, window);
    restart(&mut nodes, last, &addrs, plan, &rules, &homes).await?;
    pause(plan.window).await;
    windows.push(joins);
    pause(plan.settle).await;

    // Killed, started again 2 s later.
    let killed = event("node killed, restarted after 2 s", None, window + 2_000_000);
    nodes[last].signal("-KILL");
    pause(Duration::from_secs(2)).await;
    restart(&mut nodes, last, &addrs, plan, &rules, &homes).await?;
    pause(plan.window).await;
    windows.push(killed);
    pause(plan.settle).await;

    // Killed for good: its partitions move once its heartbeats are missed.
    let gone = event("node killed for good", None, window + 10_000_000);
    nodes[last].signal("-KILL");
    pause(plan.window + Duration::from_secs(10)).await;
    windows.push(gone);
    eprintln!("{} locks were homed on {} when it died", on_last.len(), nodes[last].name);

    stop.store(true, Ordering::SeqCst);
    producer.join().map_err(|_| anyhow::anyhow!("the producer panicked"))?;
    reference.join().map_err(|_| anyhow::anyhow!("the reference consumer panicked"))?;
    // Every command has a minute to arrive.
    let deadline = Instant::now() + Duration::from_secs(60);
    while missing(&ledger.lock().expect("ledger")) > 0 && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    drop(homes);
    let ledger = ledger.lock().expect("ledger");
    // Every command's fate, for a closer look: seq, lock, produced, received by the lock
    // and read by the reference consumer (µs).
    let mut csv = String::from("seq,lock,produced_us,received_us,consumed_us\n");
    for (seq, (lock, sent)) in &ledger.produced {
        let received = ledger.received.get(seq).map(|r| r[0].to_string()).unwrap_or_default();
        let consumed = ledger.consumed.get(seq).map(u64::to_string).unwrap_or_default();
        csv.push_str(&format!("{seq},{lock},{sent},{received},{consumed}\n"));
    }
    std::fs::write(plan.dir.join("commands.csv"), csv)?;
    for window in &windows {
        eprintln!("window: {} from {} to {} (µs)", window.event, window.from_us, window.to_us);
    }
    Ok(report(&ledger, &windows))
}

/// Commands produced that no lock received.
fn missing(ledger: &Ledger) -> usize {
    ledger.produced.keys().filter(|seq| !ledger.received.contains_key(seq)).count()
}

fn report(ledger: &Ledger, windows: &[Window]) -> Report {
    let mut rows = Vec::new();
    for window in windows {
        let mut latencies = Vec::new();
        let (mut commands, mut lost, mut duplicated) = (0, 0, 0);
        for (seq, (lock, sent)) in &ledger.produced {
            if !(window.from_us..window.to_us).contains(sent) || window.locks.as_ref().is_some_and(|locks| !locks.contains(lock)) {
                continue;
            }
            commands += 1;
            match ledger.received.get(seq) {
                Some(receipts) => {
                    duplicated += receipts.len() - 1;
                    latencies.push(receipts[0].saturating_sub(*sent) as f64 / 1000.0);
                }
                None => lost += 1,
            }
        }
        latencies.sort_by(f64::total_cmp);
        let at = |q| quantile(&latencies, q);
        let row = Row { event: window.event.clone(), commands, lost, duplicated, p50_ms: at(0.5), p99_ms: at(0.99), max_ms: at(1.0) };
        // Lock moves are reported together: the slowest of them.
        match rows.iter_mut().find(|r: &&mut Row| r.event == row.event) {
            Some(r) => {
                r.commands += row.commands;
                r.lost += row.lost;
                r.duplicated += row.duplicated;
                r.p50_ms = r.p50_ms.max(row.p50_ms);
                r.p99_ms = r.p99_ms.max(row.p99_ms);
                r.max_ms = r.max_ms.max(row.max_ms);
            }
            None => rows.push(row),
        }
    }
    if let Some(steady) = windows.iter().find(|w| w.event == "steady state") {
        let mut latencies: Vec<f64> = ledger
            .produced
            .iter()
            .filter(|(_, (_, sent))| (steady.from_us..steady.to_us).contains(sent))
            .filter_map(|(seq, (_, sent))| Some(ledger.consumed.get(seq)?.saturating_sub(*sent) as f64 / 1000.0))
            .collect();
        latencies.sort_by(f64::total_cmp);
        let (p50_ms, p99_ms, max_ms) = (quantile(&latencies, 0.5), quantile(&latencies, 0.99), quantile(&latencies, 1.0));
        let event = "reference, steady state: a plain Kafka consumer (produce to consume)".to_string();
        rows.push(Row { event, commands: latencies.len(), lost: 0, duplicated: 0, p50_ms, p99_ms, max_ms });
    }
    let produced = ledger.produced.len();
    let lost = missing(ledger);
    let duplicated = ledger.received.values().map(|r| r.len() - 1).sum();
    Report { rows, produced, lost, duplicated }
}

/// The `q` quantile of sorted `values` (NaN when there are none).
fn quantile(values: &[f64], q: f64) -> f64 {
    values.get(((values.len() as f64 * q).ceil() as usize).saturating_sub(1)).copied().unwrap_or(f64::NAN)
}
