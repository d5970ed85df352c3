//! The cluster test: three gateway processes on tansu share 50 locks (real MQTT clients,
//! QoS 1 subscriptions, persistent sessions). A producer writes numbered commands to
//! `device_commands` while locks move between nodes, some go offline for a few seconds,
//! one node gets SIGTERM and another kill -9 and comes back. Every lock also reports its
//! state (QoS 1) all along. Nothing acknowledged may be lost: every command reaches its
//! lock (at least once, first deliveries in order), every acknowledged command is on
//! `message_command`, every acknowledged state report on `message_state`; the will of a
//! device on the node killed fires once.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use base64::Engine;
use rumqttc::{AsyncClient, Event, MqttOptions, Packet, QoS};
use serde_json::{json, Value};
use tokio::sync::watch;

use crate::scene::{hookline_bin, repo_rules, tansu_with_topics, wait_for};

const LOCKS: usize = 50;
const COMMANDS_PER_LOCK: usize = 10;
const NODES: usize = 3;

/// One gateway node: its process, the ports it bound (new at each start) and its data
/// directory (kept across restarts).
struct Node {
    name: String,
    mqtt: u16,
    admin: u16,
    dir: PathBuf,
    child: Option<Child>,
}

impl Node {
    /// Starts the gateway on port 0 and learns its ports from its addresses file.
    async fn start(&mut self, bootstrap: &str) {
        std::fs::create_dir_all(&self.dir).unwrap();
        // tansu forms a consumer group within its 20 s only with a short rebalance timeout.
        let config = self.dir.join("hookline.toml");
        let toml = "[kafka.properties]\n\"max.poll.interval.ms\" = \"10000\"\n\"session.timeout.ms\" = \"6000\"\n";
        std::fs::write(&config, toml).unwrap();
        let log = std::fs::File::options().create(true).append(true).open(self.dir.join("hookline.log")).unwrap();
        let addresses = self.dir.join("addresses.json");
        // Left by the last run: this run's is awaited.
        let _ = std::fs::remove_file(&addresses);
        let child = Command::new(hookline_bin())
            .arg("run")
            .arg("--config")
            .arg(&config)
            .args(["--kafka", bootstrap, "--node", &self.name, "--allow-anonymous"])
            .args(["--listen", "127.0.0.1:0", "--admin", "127.0.0.1:0", "--addresses-file"])
            .arg(&addresses)
            .arg("--data")
            .arg(self.dir.join("data"))
            .arg("--rules")
            .arg(repo_rules())
            // The session table's history too: kept with the logs when the test fails.
            .env("RUST_LOG", "info,librdkafka=warn,hookline::cluster::reader=debug")
            .stderr(log)
            .stdout(Stdio::null())
            .spawn()
            .expect("start a gateway node");
        self.child = Some(child);
        let written = wait_for(Duration::from_secs(30), || addresses.exists()).await;
        assert!(written, "{} wrote no {} within 30 s; log:\n{}", self.name, addresses.display(), self.log());
        let bound: Value = serde_json::from_str(&std::fs::read_to_string(&addresses).unwrap()).expect("the addresses file is JSON");
        let port = |name: &str| {
            let addr = bound[name].as_str().and_then(|addr| addr.parse::<std::net::SocketAddr>().ok());
            addr.unwrap_or_else(|| panic!("{}: no {name} address in {bound}", self.name)).port()
        };
        (self.mqtt, self.admin) = (port("mqtt"), port("admin"));
    }

    fn signal(&mut self, signal: &str) {
        let mut child = self.child.take().expect("running");
        Command::new("kill").args([signal, &child.id().to_string()]).status().unwrap();
        let exit = child.wait().unwrap();
        if signal == "-TERM" {
            assert!(exit.success(), "{} exited with {exit} after SIGTERM; log:\n{}", self.name, self.log());
        }
    }

    fn ready(&self) -> bool {
        http_get(self.admin, "/readyz").is_some_and(|r| r.starts_with("HTTP/1.1 200") || r.starts_with("HTTP/1.0 200"))
    }

    fn log(&self) -> String {
        std::fs::read_to_string(self.dir.join("hookline.log")).unwrap_or_default()
    }
}

impl Drop for Node {
    fn drop(&mut self) {
        if let Some(child) = &mut self.child {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// Starts `count` gateway nodes on one Kafka, each with its directory under `work`, and
/// waits until each is ready.
async fn start_nodes(count: usize, work: &Path, bootstrap: &str) -> Vec<Node> {
    let mut nodes: Vec<Node> = (1..=count)
        .map(|i| Node { name: format!("node-{i}"), mqtt: 0, admin: 0, dir: work.join(format!("node-{i}")), child: None })
        .collect();
    for node in &mut nodes {
        node.start(bootstrap).await;
    }
    for node in &nodes {
        assert!(wait_for(Duration::from_secs(60), || node.ready()).await, "{} not ready; log:\n{}", node.name, node.log());
    }
    nodes
}

/// The messages on `devices/W/status` (device W's will), as a client on `port` hears them.
async fn watch_wills(port: u16) -> Arc<Mutex<Vec<String>>> {
    let mut options = MqttOptions::new("will-watcher", "127.0.0.1", port);
    options.set_clean_session(false);
    let (watcher, mut events) = AsyncClient::new(options, 10);
    watcher.subscribe("devices/W/status", QoS::AtLeastOnce).await.unwrap();
    let wills = Arc::new(Mutex::new(Vec::new()));
    let heard = wills.clone();
    tokio::spawn(async move {
        let _watcher = watcher;
        while let Ok(event) = events.poll().await {
            if let Event::Incoming(Packet::Publish(publish)) = event {
                heard.lock().unwrap().push(String::from_utf8_lossy(&publish.payload).into_owned());
            }
        }
    });
    wills
}

fn http_get(port: u16, path: &str) -> Option<String> {
    use std::io::{Read, Write};
    let mut stream = std::net::TcpStream::connect(("127.0.0.1", port)).ok()?;
    stream.write_all(format!("GET {path} HTTP/1.0\r\n\r\n").as_bytes()).ok()?;
    let mut text = String::new();
    stream.read_to_string(&mut text).ok()?;
    Some(text)
}

/// What the test tells a lock.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Order {
    /// Stay connected to this node (or come back to it).
    On(usize),
    /// Drop the connection and stay away.
    Offline,
    Stop,
}

/// What a lock saw.
#[derive(Default)]
struct Seen {
    /// Command numbers in the order they arrived.
    commands: Vec<usize>,
    /// State reports the gateway acknowledged.
    reports_acked: Vec<usize>,
    connects: usize,
}

/// One lock: connects to the node it is told, with a persistent session (clean session
/// 0), receives commands (rumqttc acknowledges each), and reports its state at QoS 1,
/// one report at a time. A node that goes away makes it try the next live one. `live`
/// holds each node's MQTT port while it runs.
async fn lock(id: String, live: Arc<Mutex<Vec<Option<u16>>>>, mut orders: watch::Receiver<Order>, seen: Arc<Mutex<Seen>>) {
    let mut report = 0;
    loop {
        let order = *orders.borrow_and_update();
        let port = match order {
            Order::Stop => return,
            Order::Offline => {
                let _ = orders.changed().await;
                continue;
            }
            Order::On(node) => {
                let live = live.lock().unwrap();
                (0..NODES).find_map(|i| live[(node + i) % NODES])
            }
        };
        let Some(port) = port else {
            // No node is up: try again, as after a refused connection.
            tokio::time::sleep(Duration::from_millis(300)).await;
            continue;
        };
        let mut options = MqttOptions::new(&id, "127.0.0.1", port);
        options.set_clean_session(false);
        options.set_keep_alive(Duration::from_secs(5));
        let (client, mut events) = AsyncClient::new(options, 100);
        let mut subscribed = false;
        let mut waiting_ack: Option<usize> = None;
        let mut tick = tokio::time::interval(Duration::from_millis(300));
        loop {
            tokio::select! {
                event = events.poll() => match event {
                    Ok(Event::Incoming(Packet::ConnAck(_))) => {
                        seen.lock().unwrap().connects += 1;
                        if !subscribed {
                            let _ = client.try_subscribe(format!("devices/{id}/command"), QoS::AtLeastOnce);
                            subscribed = true;
                        }
                    }
                    Ok(Event::Incoming(Packet::Publish(publish))) => {
                        let command: Value = serde_json::from_slice(&publish.payload).unwrap();
                        seen.lock().unwrap().commands.push(command["n"].as_u64().unwrap() as usize);
                    }
                    Ok(Event::Incoming(Packet::PubAck(_))) => {
                        if let Some(n) = waiting_ack.take() {
                            seen.lock().unwrap().reports_acked.push(n);
                        }
                    }
                    Ok(_) => {}
                    // The node went away (or refused): try again, on the next live one.
                    Err(_) => {
                        tokio::time::sleep(Duration::from_millis(300)).await;
                        break;
                    }
                },
                _ = tick.tick(), if subscribed && waiting_ack.is_none() => {
                    report += 1;
                    let payload = json!({"process_id": format!("{id}-r{report}"), "action": "status", "battery": 0.9,
                        "lock_state": "locked", "version": 1.1, "client_id": id, "n": report});
                    if client.try_publish(format!("devices/{id}/state"), QoS::AtLeastOnce, false, payload.to_string()).is_ok() {
                        waiting_ack = Some(report);
                    }
                }
                changed = orders.changed() => {
                    if changed.is_err() || *orders.borrow() != order {
                        // Moving or going offline: the connection just drops (no DISCONNECT).
                        break;
                    }
                }
            }
        }
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn three_nodes_lose_no_command_and_no_report_while_locks_move_and_nodes_stop_and_die() {
    let tansu = tansu_with_topics().await;
    let bootstrap = tansu.bootstrap();
    let work = tempfile::tempdir().unwrap();
    let mut nodes = start_nodes(NODES, work.path(), &bootstrap).await;
    let live = Arc::new(Mutex::new(nodes.iter().map(|n| Some(n.mqtt)).collect::<Vec<_>>()));

    // 50 locks, spread over the nodes.
    let mut locks = Vec::new();
    for i in 0..LOCKS {
        let id = format!("L{i}");
        let (order, orders) = watch::channel(Order::On(i % NODES));
        let seen = Arc::new(Mutex::new(Seen::default()));
        tokio::spawn(lock(id.clone(), live.clone(), orders, seen.clone()));
        locks.push((id, order, seen));
    }
    // A device with a will on the node that will die, and a watcher of it on node 1.
    let wills = watch_wills(nodes[0].mqtt).await;
    let mut options = MqttOptions::new("W", "127.0.0.1", nodes[2].mqtt);
    options.set_clean_session(false);
    options.set_last_will(rumqttc::LastWill::new("devices/W/status", "offline", QoS::AtLeastOnce, false));
    let (_device, mut device_events) = AsyncClient::new(options, 10);
    tokio::spawn(async move { while device_events.poll().await.is_ok() {} });

    let all_subscribed = || locks.iter().all(|(_, _, seen)| seen.lock().unwrap().connects >= 1);
    assert!(wait_for(Duration::from_secs(30), all_subscribed).await, "not every lock connected");
    tokio::time::sleep(Duration::from_secs(1)).await;

    // The producer: numbered commands, round robin over the locks, about 20 s.
    let producer_bootstrap = bootstrap.clone();
    let producer = tokio::task::spawn_blocking(move || {
        use rdkafka::producer::{BaseProducer, BaseRecord, Producer};
        let producer: BaseProducer = rdkafka::ClientConfig::new().set("bootstrap.servers", &producer_bootstrap).create().unwrap();
        for n in 1..=COMMANDS_PER_LOCK {
            for i in 0..LOCKS {
                let id = format!("L{i}");
                let value = json!({"action": "unlock", "client_id": id, "process_id": format!("{id}-c{n}"), "n": n}).to_string();
                while producer.send(BaseRecord::to("device_commands").key(&id).payload(&value)).is_err() {
                    producer.poll(Duration::from_millis(10));
                }
                producer.poll(Duration::ZERO);
            }
            producer.flush(Duration::from_secs(30)).expect("commands produced");
            std::thread::sleep(Duration::from_secs(2));
        }
    });

    let started = Instant::now();
    let at = |secs: u64| tokio::time::sleep_until((started + Duration::from_secs(secs)).into());
    let (moved, offline): (Vec<usize>, Vec<usize>) = ((0..10).collect(), (10..15).collect());
    // Locks move between nodes.
    at(3).await;
    for &i in &moved {
        locks[i].1.send_replace(Order::On((i + 1) % NODES));
    }
    // Some go offline for a few seconds, and come back on another node.
    at(5).await;
    for &i in &offline {
        locks[i].1.send_replace(Order::Offline);
    }
    at(9).await;
    for &i in &offline {
        locks[i].1.send_replace(Order::On((i + 2) % NODES));
    }
    // Node 2 is stopped (SIGTERM); its locks find another node.
    at(11).await;
    live.lock().unwrap()[1] = None;
    nodes[1].signal("-TERM");
    // Node 3 dies (kill -9) and comes back with its spool.
    at(14).await;
    live.lock().unwrap()[2] = None;
    nodes[2].signal("-KILL");
    at(20).await;
    nodes[2].start(&bootstrap).await;
    assert!(wait_for(Duration::from_secs(60), || nodes[2].ready()).await, "node-3 not back; log:\n{}", nodes[2].log());
    live.lock().unwrap()[2] = Some(nodes[2].mqtt);
    for &i in &moved {
        locks[i].1.send_replace(Order::On(2));
    }
    producer.await.unwrap();

    // Every lock gets every command.
    let complete = |seen: &Seen| seen.commands.iter().collect::<BTreeSet<_>>().len() == COMMANDS_PER_LOCK;
    let all = wait_for(Duration::from_secs(120), || locks.iter().all(|(_, _, seen)| complete(&seen.lock().unwrap()))).await;
    for (_, order, _) in &locks {
        order.send_replace(Order::Stop);
    }
    tokio::time::sleep(Duration::from_secs(1)).await;

    // What reached Kafka: acknowledged commands and state reports, by lock.
    let acked_commands: usize = LOCKS * COMMANDS_PER_LOCK;
    let reports_acked: usize = locks.iter().map(|(_, _, s)| s.lock().unwrap().reports_acked.len()).sum();
    let command_records = tansu.read("message_command", acked_commands, Duration::from_secs(3));
    let state_records = tansu.read("message_state", reports_acked, Duration::from_secs(3));
    let by_lock = |records: &[Value], key: &str| {
        let mut map: BTreeMap<String, BTreeSet<usize>> = BTreeMap::new();
        for record in records {
            let payload = base64::engine::general_purpose::STANDARD.decode(record["payload"].as_str().unwrap()).unwrap();
            let payload: Value = serde_json::from_slice(&payload).unwrap();
            map.entry(record["client_id"].as_str().unwrap().to_string()).or_default().insert(payload[key].as_u64().unwrap() as usize);
        }
        map
    };
    let (commands_in_kafka, states_in_kafka) = (by_lock(&command_records, "n"), by_lock(&state_records, "n"));

    let mut report = String::from(
        "lock  connects produced delivered duplicated lost in-order on-message_command | reports-acked on-message_state lost\n",
    );
    let mut failures = Vec::new();
    let (mut duplicates, mut report_totals) = (0, (0, 0));
    for (id, _, seen) in &locks {
        let seen = seen.lock().unwrap();
        let unique: BTreeSet<usize> = seen.commands.iter().copied().collect();
        let lost = (1..=COMMANDS_PER_LOCK).filter(|n| !unique.contains(n)).count();
        let duplicated = seen.commands.len() - unique.len();
        duplicates += duplicated;
        let mut first = Vec::new();
        for n in &seen.commands {
            if !first.contains(n) {
                first.push(*n);
            }
        }
        let in_order = first.windows(2).all(|w| w[0] < w[1]);
        let on_command = commands_in_kafka.get(id).map_or(0, |s| s.len());
        let states = states_in_kafka.get(id).cloned().unwrap_or_default();
        let reports_lost = seen.reports_acked.iter().filter(|n| !states.contains(n)).count();
        report_totals.0 += seen.reports_acked.len();
        report_totals.1 += reports_lost;
        report += &format!(
            "{id:<5} {:>8} {COMMANDS_PER_LOCK:>8} {:>9} {duplicated:>10} {lost:>4} {in_order:>8} {on_command:>18} | {:>13} {:>15} {reports_lost:>4}\n",
            seen.connects,
            unique.len(),
            seen.reports_acked.len(),
            states.len()
        );
        if lost > 0 || !in_order || on_command < COMMANDS_PER_LOCK || reports_lost > 0 {
            failures.push(id.clone());
        }
    }
    report += &format!(
        "total: {} commands produced, {duplicates} duplicate deliveries; {} state reports acknowledged, {} lost\n",
        LOCKS * COMMANDS_PER_LOCK,
        report_totals.0,
        report_totals.1
    );
    let wills = wills.lock().unwrap().clone();
    report += &format!("will of the device on the node killed: {wills:?}\n");
    eprintln!("{report}");
    assert_eq!(wills, ["offline"], "the will fires once for the cluster when its node dies\n{report}");
    // The moves, absences and node losses happened: those locks connected again.
    let reconnected = |i: usize| locks[i].2.lock().unwrap().connects >= 2;
    assert!(moved.iter().chain(&offline).all(|&i| reconnected(i)), "moved and offline locks reconnected\n{report}");
    assert!((0..LOCKS).filter(|i| i % NODES == 1).all(reconnected), "the stopped node's locks reconnected elsewhere\n{report}");
    // On a failure, what each node said that matters (warnings, errors, the downlink's
    // share and the cluster's catching up), not the router's routine lines.
    let telling = |line: &&str| [" WARN ", " ERROR ", "partitions shared", "caught up"].iter().any(|mark| line.contains(mark));
    let logs: String = nodes
        .iter()
        .map(|n| format!("--- {} ---\n{}\n", n.name, n.log().lines().filter(telling).take(200).collect::<Vec<_>>().join("\n")))
        .collect();
    if !(all && failures.is_empty()) {
        // The nodes' whole logs, for what the lines above leave out.
        let kept = work.keep();
        panic!("locks with losses or disorder: {failures:?}\n{report}\n{logs}\nthe nodes' logs are kept in {}", kept.display());
    }
}

/// A node killed for good: another node adopts its sessions once it is not heard of for
/// 10 s, fires the will of its connected device once, and the device resumes its session
/// there.
#[tokio::test(flavor = "multi_thread")]
async fn a_node_that_dies_for_good_has_its_sessions_adopted_and_its_devices_wills_fired_once() {
    let tansu = tansu_with_topics().await;
    let bootstrap = tansu.bootstrap();
    let work = tempfile::tempdir().unwrap();
    let mut nodes = start_nodes(2, work.path(), &bootstrap).await;

    let wills = watch_wills(nodes[0].mqtt).await;
    let mut options = MqttOptions::new("W", "127.0.0.1", nodes[1].mqtt);
    options.set_clean_session(false);
    options.set_last_will(rumqttc::LastWill::new("devices/W/status", "offline", QoS::AtLeastOnce, false));
    let (device, mut device_events) = AsyncClient::new(options, 10);
    device.subscribe("devices/W/command", QoS::AtLeastOnce).await.unwrap();
    let (subscribed_tx, subscribed) = tokio::sync::oneshot::channel();
    tokio::spawn(async move {
        let mut subscribed_tx = Some(subscribed_tx);
        loop {
            match device_events.poll().await {
                Ok(Event::Incoming(Packet::SubAck(_))) => {
                    if let Some(tx) = subscribed_tx.take() {
                        let _ = tx.send(());
                    }
                }
                Ok(_) => {}
                Err(error) => {
                    eprintln!("device W: {error}");
                    break;
                }
            }
        }
    });
    let suback = tokio::time::timeout(Duration::from_secs(10), subscribed).await;
    assert!(suback.is_ok_and(|r| r.is_ok()), "no SUBACK; node-2 log:\n{}", nodes[1].log());
    tokio::time::sleep(Duration::from_secs(1)).await;

    // Takeovers across the two processes: how long the old connection outlives the new
    // one's CONNACK (printed; the bound is the nodes' read lag of the sessions topic).
    let mut overlaps = Vec::new();
    let mut old: Option<rumqttc::EventLoop> = None;
    for round in 0..20 {
        let mut options = MqttOptions::new("T", "127.0.0.1", nodes[round % 2].mqtt);
        options.set_clean_session(false);
        let (_client, mut events) = AsyncClient::new(options, 10);
        let asked = Instant::now();
        loop {
            let event = tokio::time::timeout(Duration::from_secs(10), events.poll()).await.expect("CONNACK").expect("connects");
            if matches!(event, Event::Incoming(Packet::ConnAck(_))) {
                break;
            }
        }
        let connected = Instant::now();
        if let Some(mut previous) = old.take() {
            let closed = tokio::time::timeout(Duration::from_secs(10), async { while previous.poll().await.is_ok() {} }).await;
            assert!(closed.is_ok(), "the taken over connection was not closed");
            overlaps.push((connected - asked, connected.elapsed()));
        }
        old = Some(events);
    }
    overlaps.sort_by_key(|(_, overlap)| *overlap);
    let (connacks, mut lasted): (Vec<_>, Vec<_>) = overlaps.iter().copied().unzip();
    lasted.sort();
    eprintln!(
        "takeover across processes (19): old connection closed after the new CONNACK: median {:?}, max {:?}; CONNACK took median {:?}",
        lasted[lasted.len() / 2],
        lasted[lasted.len() - 1],
        {
            let mut c = connacks.clone();
            c.sort();
            c[c.len() / 2]
        }
    );
    drop(old);

    let killed = Instant::now();
    nodes[1].signal("-KILL");
    let fired = wait_for(Duration::from_secs(30), || !wills.lock().unwrap().is_empty()).await;
    let after = killed.elapsed();
    assert!(fired, "no will within 30 s; node-1 log:\n{}", nodes[0].log());
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert_eq!(*wills.lock().unwrap(), ["offline"], "fired once");
    eprintln!("will fired {after:?} after the kill");
    let metrics = http_get(nodes[0].admin, "/metrics").unwrap_or_default();
    // W's session, and T's (away on node 2 since its last connection there).
    assert!(metrics.lines().any(|l| l == "hookline_cluster_adopted_total 2"), "node-1 adopted both sessions:\n{metrics}");

    // The device comes back on node 1: its session (and subscription) is there.
    let mut options = MqttOptions::new("W", "127.0.0.1", nodes[0].mqtt);
    options.set_clean_session(false);
    let (_device, mut device_events) = AsyncClient::new(options, 10);
    let present = loop {
        match tokio::time::timeout(Duration::from_secs(10), device_events.poll()).await.expect("CONNACK").expect("connects") {
            Event::Incoming(Packet::ConnAck(ack)) => break ack.session_present,
            _ => continue,
        }
    };
    assert!(present, "the adopted session resumes");
}
