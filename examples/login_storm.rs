//! A fleet logging in at once, as after a site's network comes back: `--clients` MQTT
//! 3.1.1 connections, at most `--in-flight` of them waiting for their CONNACK, each with
//! its own login. Reports, per wave, how many were accepted, refused (by code) or closed
//! without an answer, the accept rate and the slowest CONNACK, and the broker's memory
//! growth (`--pid`). The connections of a wave are held until the wave ends, then closed
//! with DISCONNECT; `--waves 2` measures a fleet reconnecting a second time.
//!
//! `--logins FILE`: CSV lines `client_id,username,password` (the password may be a
//! token); without it the clients are `<prefix>N`, anonymous. `--report`: each client
//! also publishes one QoS 1 state report and waits for its PUBACK.
//!
//! ```text
//! cargo run --release --example login_storm -- --mqtt 127.0.0.1:1883 --logins logins.csv \
//!     --in-flight 200 --waves 2 --pid $(pgrep -x hookline) --json out.json
//! ```

use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::{Bytes, BytesMut};
use clap::Parser;
use hookline::broker::wire;
use rumqttd::protocol::{v4::V4, Connect, Packet, Protocol};
use serde_json::json;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::sync::Semaphore;

#[derive(Parser, Debug)]
#[command(about = "Many MQTT clients logging in at once; accept rate, refusals and the broker's memory")]
struct Args {
    /// MQTT broker (host:port).
    #[arg(long, default_value = "127.0.0.1:1883")]
    mqtt: String,
    /// CSV of `client_id,username,password`, one client a line.
    #[arg(long)]
    logins: Option<std::path::PathBuf>,
    /// Anonymous clients without `--logins`.
    #[arg(long, default_value_t = 1000)]
    clients: usize,
    /// Client id prefix of anonymous clients.
    #[arg(long, default_value = "lock-")]
    prefix: String,
    /// CONNECTs waiting for their CONNACK at once.
    #[arg(long, default_value_t = 200)]
    in_flight: usize,
    /// Times the fleet connects (closing between waves).
    #[arg(long, default_value_t = 1)]
    waves: usize,
    /// After its CONNACK, each client publishes one QoS 1 report and waits for the PUBACK.
    #[arg(long)]
    report: bool,
    /// How long a client waits for an answer, in seconds.
    #[arg(long, default_value_t = 30.0)]
    timeout: f64,
    /// Told "server busy", a client tries again after this many milliseconds (0: it
    /// gives up).
    #[arg(long, default_value_t = 0)]
    retry_busy_ms: u64,
    /// The broker's process, for its memory.
    #[arg(long)]
    pid: Option<u32>,
    /// Write the results as JSON here.
    #[arg(long)]
    json: Option<std::path::PathBuf>,
}

struct Login {
    client_id: String,
    username: String,
    password: String,
}

/// What became of one client.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Outcome {
    /// CONNACK with this return code (0: accepted).
    Connack(u8),
    /// Closed without a CONNACK.
    Closed,
    TimedOut,
}

/// A CONNECT (MQTT 3.1.1, clean session), in rumqttd's encoding.
fn connect(login: &Login) -> Vec<u8> {
    let connect = Connect { keep_alive: 60, client_id: login.client_id.clone(), clean_session: true };
    let login = (!login.username.is_empty() || !login.password.is_empty())
        .then(|| rumqttd::protocol::Login { username: login.username.clone(), password: login.password.clone() });
    encode(Packet::Connect(connect, None, None, None, login))
}

/// A state report, QoS 1.
fn report(client_id: &str) -> Vec<u8> {
    let topic = Bytes::from(format!("devices/{client_id}/state"));
    let payload = Bytes::from(format!(r#"{{"client_id":"{client_id}","battery":83.4}}"#));
    encode(Packet::Publish(wire::publish_with(1, 1, false, topic, payload), None))
}

fn encode(packet: Packet) -> Vec<u8> {
    let mut out = BytesMut::new();
    V4.write(packet, &mut out).expect("rumqttd encodes a CONNECT or PUBLISH it can carry");
    out.to_vec()
}

/// What one client did: its outcome, the time to its (last) CONNACK, whether its
/// report was acknowledged, how often it was told "server busy" and tried again, and the
/// socket to hold.
struct Client {
    outcome: Outcome,
    took: Duration,
    acknowledged: bool,
    busy_retries: usize,
    socket: Option<TcpStream>,
}

/// Connects one client, trying again after `retry_busy` when told "server busy" (CONNACK
/// 0x03), as device stacks do, until `timeout`.
async fn one(addr: &str, login: &Login, with_report: bool, timeout: Duration, retry_busy: Option<Duration>) -> Client {
    let deadline = Instant::now() + timeout;
    let mut busy_retries = 0;
    loop {
        let (outcome, took, acknowledged, socket) =
            attempt(addr, login, with_report, deadline.saturating_duration_since(Instant::now())).await;
        match (outcome, retry_busy) {
            (Outcome::Connack(3), Some(wait)) if Instant::now() + wait < deadline => {
                busy_retries += 1;
                tokio::time::sleep(wait).await;
            }
            _ => return Client { outcome, took, acknowledged, busy_retries, socket },
        }
    }
}

async fn attempt(addr: &str, login: &Login, with_report: bool, timeout: Duration) -> (Outcome, Duration, bool, Option<TcpStream>) {
    let started = Instant::now();
    let attempt = async {
        let mut socket = TcpStream::connect(addr).await.ok()?;
        socket.set_nodelay(true).ok()?;
        socket.write_all(&connect(login)).await.ok()?;
        let mut connack = [0u8; 4];
        if socket.read_exact(&mut connack).await.is_err() || connack[0] != 0x20 {
            return Some((Outcome::Closed, started.elapsed(), false, None));
        }
        let elapsed = started.elapsed();
        if connack[3] != 0 {
            return Some((Outcome::Connack(connack[3]), elapsed, false, None));
        }
        let mut acknowledged = false;
        if with_report {
            socket.write_all(&report(&login.client_id)).await.ok()?;
            let mut puback = [0u8; 4];
            acknowledged = socket.read_exact(&mut puback).await.is_ok() && puback[0] == 0x40;
        }
        Some((Outcome::Connack(0), elapsed, acknowledged, Some(socket)))
    };
    match tokio::time::timeout(timeout, attempt).await {
        Ok(Some(result)) => result,
        Ok(None) => (Outcome::Closed, started.elapsed(), false, None),
        Err(_) => (Outcome::TimedOut, started.elapsed(), false, None),
    }
}

/// VmRSS and VmHWM of `pid`, in MiB.
fn memory(pid: u32) -> (f64, f64) {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    let field = |name: &str| {
        status
            .lines()
            .find_map(|l| l.strip_prefix(name))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<f64>().ok())
            .unwrap_or(0.0)
            / 1024.0
    };
    (field("VmRSS:"), field("VmHWM:"))
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    // Every held connection is a socket of this process.
    let _ = rlimit::increase_nofile_limit(u64::MAX);
    let logins: Vec<Login> = match &args.logins {
        Some(path) => std::fs::read_to_string(path)?
            .lines()
            .filter(|l| !l.trim().is_empty())
            .map(|line| {
                let mut fields = line.splitn(3, ',');
                let mut next = || fields.next().unwrap_or_default().to_string();
                Login { client_id: next(), username: next(), password: next() }
            })
            .collect(),
        None => (0..args.clients)
            .map(|i| Login { client_id: format!("{}{i}", args.prefix), username: String::new(), password: String::new() })
            .collect(),
    };
    let logins = Arc::new(logins);
    let timeout = Duration::from_secs_f64(args.timeout);
    let rss_before = args.pid.map(|pid| memory(pid).0);
    let mut waves = Vec::new();
    for wave in 1..=args.waves {
        let permits = Arc::new(Semaphore::new(args.in_flight));
        let started = Instant::now();
        let mut tasks = Vec::with_capacity(logins.len());
        for i in 0..logins.len() {
            let (permits, logins, addr) = (permits.clone(), logins.clone(), args.mqtt.clone());
            let permit = permits.acquire_owned().await?;
            let with_report = args.report;
            let retry_busy = (args.retry_busy_ms > 0).then(|| Duration::from_millis(args.retry_busy_ms));
            tasks.push(tokio::spawn(async move {
                let result = one(&addr, &logins[i], with_report, timeout, retry_busy).await;
                drop(permit);
                result
            }));
        }
        let mut outcomes = Vec::with_capacity(tasks.len());
        let mut held = Vec::new();
        let mut busy_retries = 0;
        for task in tasks {
            let client = task.await?;
            busy_retries += client.busy_retries;
            outcomes.push((client.outcome, client.took, client.acknowledged));
            held.extend(client.socket);
        }
        let elapsed = started.elapsed().as_secs_f64();
        let count = |o: Outcome| outcomes.iter().filter(|(x, _, _)| *x == o).count();
        let accepted = count(Outcome::Connack(0));
        let refused: std::collections::BTreeMap<String, usize> = outcomes
            .iter()
            .filter_map(|(o, _, _)| match o {
                Outcome::Connack(code) if *code != 0 => Some(format!("0x{code:02x}")),
                _ => None,
            })
            .fold(Default::default(), |mut map, code| {
                *map.entry(code).or_default() += 1;
                map
            });
        let slowest = outcomes.iter().filter(|(o, _, _)| matches!(o, Outcome::Connack(_))).map(|(_, t, _)| *t).max().unwrap_or_default();
        let reports = outcomes.iter().filter(|(_, _, a)| *a).count();
        let peak = args.pid.map(|pid| memory(pid).1);
        let result = json!({
            "wave": wave,
            "clients": logins.len(),
            "accepted": accepted,
            "refused": refused,
            "busy_retries": busy_retries,
            "closed_unanswered": count(Outcome::Closed),
            "timed_out": count(Outcome::TimedOut),
            "seconds": elapsed,
            "accepted_per_s": accepted as f64 / elapsed,
            "slowest_connack_ms": slowest.as_secs_f64() * 1000.0,
            "reports_acknowledged": args.report.then_some(reports),
            "rss_before_mib": rss_before,
            "peak_rss_mib": peak,
            "rss_growth_mib": peak.zip(rss_before).map(|(p, b)| p - b),
        });
        println!("{result}");
        waves.push(result);
        for mut socket in held {
            let _ = socket.write_all(&[0xe0, 0]).await;
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    if let Some(path) = &args.json {
        std::fs::write(path, serde_json::to_string_pretty(&waves)?)?;
    }
    Ok(())
}
