//! Door-lock load generator (`docs/scenario.md`) for any MQTT 3.1.1 broker, and for
//! hookline end to end into Kafka.
//!
//! `--devices` simulated locks connect (at `--connect-rate`), each subscribes QoS 1 to
//! its own `devices/{id}/command` and, once all are connected, publishes state reports
//! to `devices/{id}/state` (`--qos`, `--payload` bytes, `--rate` per lock or
//! `--total-rate`, or as fast as the `--inflight` window allows) until `--messages` per
//! lock are sent or `--duration` has passed. `--commanders` business apps publish unlock
//! commands (QoS 1) round-robin to the locks, which acknowledge them.
//!
//! Every payload is the scenario's JSON with two extra fields, `"seq"` (per lock; per run
//! for commands) and `"sent_us"` (wall clock, microseconds), state reports padded to the
//! payload size with an incompressible `"pad"` string. With `--kafka` (or `--mock-kafka`)
//! a consumer reads `message_state` and `message_command` from the end offsets as they
//! were before the first publish, matches records to publishes by client id and `seq`
//! (loss, duplicates) and measures publish -> record readable latency from `sent_us`.
//! librdkafka's mock cluster keeps only ~5 MB per partition (`rdkafka_mock.c`), a
//! fraction of a second at full rate and less than one lock's records, so with
//! `--mock-kafka` the read-back paces the locks ([`ReadGuard`]): a lock publishes only
//! while its partition holds less unread than the mock keeps, so no record is deleted
//! before it is read and every one is checked. Records deleted unread anyway (the guard
//! gave up on a stalled reader, or real Kafka's retention) are counted apart, as
//! "deleted unread", and are among the missing.
//!
//! `--idle SECONDS` (idle-fleet mode) publishes nothing: the locks connect and subscribe
//! like real ones, hold their connections, and the report is how many connected, why the
//! others failed, and the gateway's RSS per connection. `--source-addrs N` spreads the
//! connections over source addresses 127.0.0.2 upwards, past one address's ephemeral
//! port range. `--window N` lets at most N locks handshake at once, `--reconnects N` has
//! the whole fleet drop its connections after the hold and come back, N times (timed), and
//! `--idle-commands R` has one more lock receive R commands a second among the idle
//! ones (publish-to-receipt latency).
//!
//! Measured: acknowledged publishes per second, PUBACK (QoS 1) / PUBCOMP (QoS 2)
//! latency percentiles, command delivery latency, records per Kafka topic vs sent,
//! end-to-end latency percentiles, and the gateway's CPU and peak RSS (`--gateway-pid`;
//! with `--in-process` it is this process). A progress line every second on stderr; a
//! table on stdout at the end; `--json FILE` writes everything as JSON.
//!
//! The MQTT client is a minimal MQTT 3.1.1 implementation over tokio (CONNECT,
//! SUBSCRIBE, PUBLISH QoS 0/1/2 and their acks), written frames in batches, so the load
//! generator itself stays cheap on the shared 2-core machine.
//!
//! ```text
//! # gateway, broker or Kafka elsewhere
//! cargo run --release --example loadgen -- --mqtt 127.0.0.1:1883 --devices 20 --messages 20000 \
//!     --kafka 127.0.0.1:9092 --gateway-pid $(pgrep -x hookline) --json out.json
//! # gateway in this process, in front of librdkafka's mock cluster (the numbers of docs/performance.md)
//! cargo run --release --example loadgen -- --in-process --mock-kafka --devices 20 --messages 20000
//! # latency at a fixed rate, with unlock commands
//! cargo run --release --example loadgen -- --in-process --mock-kafka --total-rate 20000 \
//!     --duration 10 --messages 0 --commanders 2 --command-rate 50
//! # idle fleet: connect and subscribe, hold 30 s, report RSS per connection
//! cargo run --release --example loadgen -- --mqtt 127.0.0.1:1883 --idle 30 --devices 18000 \
//!     --connect-rate 500 --source-addrs 8 --gateway-pid $(pgrep -x hookline)
//! # a fleet 500 at a time, all reconnecting after the hold, one lock commanded 1,000/s
//! cargo run --release --example loadgen -- --mqtt 127.0.0.1:1883 --idle 10 --devices 18000 \
//!     --connect-rate 0 --window 500 --reconnects 1 --idle-commands 1000 --source-addrs 8
//! # parked persistent sessions: connect (clean session 0), subscribe, leave; RSS per session
//! cargo run --release --example loadgen -- --mqtt 127.0.0.1:1883 --idle 2 --park --devices 20000 \
//!     --connect-rate 2000 --gateway-pid $(pgrep -x hookline)
//! ```

use std::io::Write as _;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use base64::Engine as _;
use clap::Parser;
use hdrhistogram::Histogram;
use hookline::broker::wire;
use hookline::metrics::Outcome;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::error::{KafkaError, KafkaResult};
use rdkafka::types::RDKafkaErrorCode;
use rdkafka::{ClientConfig, Message, Offset, TopicPartitionList};
use serde_json::{json, Value};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::tcp::OwnedWriteHalf;
use tokio::net::{TcpSocket, TcpStream};
use tokio::sync::{watch, Semaphore};

const STATE_TOPIC: &str = "message_state";
const COMMAND_TOPIC: &str = "message_command";
/// How long an idle lock waits for its CONNACK and SUBACK before it counts as failed.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(60);
/// Most publish frames written in one `write` call.
const WRITE_BATCH: u64 = 64;

#[derive(Parser, Clone, Debug)]
#[command(about = "Door-lock MQTT load generator, optionally measuring end to end into Kafka")]
struct Args {
    /// MQTT broker (host:port).
    #[arg(long, default_value = "127.0.0.1:1883")]
    mqtt: String,
    /// Simulated locks, one MQTT connection each.
    #[arg(long, default_value_t = 20)]
    devices: usize,
    /// New connections per second while connecting (0: all at once).
    #[arg(long, default_value_t = 1000.0)]
    connect_rate: f64,
    /// QoS of state reports: 0, 1 or 2.
    #[arg(long, default_value_t = 1)]
    qos: u8,
    /// State report payload size in bytes (the JSON is padded up to it).
    #[arg(long, default_value_t = 1024)]
    payload: usize,
    /// State reports per second per lock (0: as fast as the in-flight window allows).
    #[arg(long, default_value_t = 0.0)]
    rate: f64,
    /// State reports per second over all locks (overrides --rate).
    #[arg(long)]
    total_rate: Option<f64>,
    /// State reports per lock (0: no count bound; then --duration bounds the run).
    #[arg(long, default_value_t = 5000)]
    messages: u64,
    /// Publishing time bound in seconds (0: no time bound; then --messages bounds it).
    #[arg(long, default_value_t = 0.0)]
    duration: f64,
    /// Locks do not subscribe to their command topic (the scenario's locks do).
    #[arg(long)]
    no_subscribe: bool,
    /// Unacknowledged QoS 1/2 publishes per connection.
    #[arg(long, default_value_t = 100)]
    inflight: usize,
    /// Business apps publishing unlock commands to the locks (QoS 1).
    #[arg(long, default_value_t = 0)]
    commanders: usize,
    /// Unlock commands per second per commander.
    #[arg(long, default_value_t = 10.0)]
    command_rate: f64,
    /// Kafka bootstrap servers: read message_state / message_command and match records.
    #[arg(long)]
    kafka: Option<String>,
    /// Create message_state and message_command with this many partitions when missing
    /// (in the mock cluster: always). Default 1; with --mock-kafka and the read-back, 32,
    /// so that the locks share the mock's per-partition retention less.
    #[arg(long)]
    kafka_partitions: Option<i32>,
    /// Extra consumer property, KEY=VALUE (repeatable), e.g. fetch.wait.max.ms=1.
    #[arg(long = "consumer-prop", value_name = "KEY=VALUE")]
    consumer_props: Vec<String>,
    /// With --kafka: do not consume (throughput only).
    #[arg(long)]
    no_consume: bool,
    /// Wait at most this many seconds after publishing for acks and Kafka records.
    #[arg(long, default_value_t = 60.0)]
    drain_timeout: f64,
    /// Start the gateway in this process (rules from --rules) and load it.
    #[arg(long)]
    in_process: bool,
    /// With --in-process: the gateway produces to librdkafka's in-process mock cluster.
    #[arg(long)]
    mock_kafka: bool,
    /// With --in-process: rules directory.
    #[arg(long, default_value = "rules")]
    rules: std::path::PathBuf,
    /// With --in-process: the producer's kafka.linger_ms (default: the gateway's).
    #[arg(long)]
    linger_ms: Option<u64>,
    /// With --in-process: rule worker threads (0: one per core).
    #[arg(long, default_value_t = 0)]
    workers: usize,
    /// Process whose CPU time and peak RSS to report (the gateway or broker under test).
    #[arg(long)]
    gateway_pid: Option<u32>,
    /// Kafka broker process (e.g. tansu) whose CPU time and peak RSS to report too.
    #[arg(long)]
    kafka_pid: Option<u32>,
    /// Name of this run in the table and the JSON.
    #[arg(long, default_value = "")]
    label: String,
    /// Write the results as JSON to this file.
    #[arg(long)]
    json: Option<std::path::PathBuf>,
    /// Keep-alive of every connection, seconds (the broker closes a connection silent
    /// for 1.5 times this).
    #[arg(long, default_value_t = 600)]
    keep_alive: u16,
    /// Idle-fleet mode: the locks connect and subscribe, hold their connections this many
    /// seconds without publishing, then disconnect; reports connections made, failures
    /// and the gateway's RSS per connection (`--gateway-pid`). Nothing is published.
    #[arg(long)]
    idle: Option<f64>,
    /// With `--idle`: each lock connects with clean session 0, subscribes and
    /// disconnects at once, leaving a persistent session parked on the broker; the RSS
    /// is then reported per parked session.
    #[arg(long, requires = "idle")]
    park: bool,
    /// With `--idle`: at most this many locks in their handshake (CONNECT, SUBSCRIBE) at
    /// once, "N at a time" as a fleet comes back (0: no limit; `--connect-rate` still
    /// paces the first connections).
    #[arg(long, default_value_t = 0, requires = "idle")]
    window: usize,
    /// With `--idle`: after the hold, this many times, every lock drops its connection
    /// at once and connects and subscribes again, through `--window`; reports how long
    /// until all were back and the gateway's RSS, then holds them again for as long.
    #[arg(long, default_value_t = 0, requires = "idle", conflicts_with = "park")]
    reconnects: u32,
    /// With `--idle`: during the hold, one more lock receives this many QoS 1 commands a
    /// second from one publisher, among the idle ones; reports publish-to-receipt
    /// latency (0: none).
    #[arg(long, default_value_t = 0.0, requires = "idle", conflicts_with = "park")]
    idle_commands: f64,
    /// Bind each connection to one of this many source addresses, 127.0.0.2 upwards,
    /// round-robin (0: let the OS pick): one address has only the ephemeral port range
    /// (about 28,000 ports) towards one broker port.
    #[arg(long, default_value_t = 0)]
    source_addrs: u8,
    /// No progress line.
    #[arg(long)]
    quiet: bool,
    /// State reports (and one command) a separate client publishes before the run, so
    /// the gateway's Kafka producer has its metadata before measuring (0: none).
    #[arg(long, default_value_t = 10)]
    warmup: u16,
}

/// Counters shared by every task; the progress line and the summary read them.
struct Shared {
    base: Instant,
    state_sent: AtomicU64,
    state_acked: AtomicU64,
    cmd_sent: AtomicU64,
    cmd_acked: AtomicU64,
    cmd_received: AtomicU64,
    next_cmd_seq: AtomicU64,
    connected: AtomicUsize,
    errors: AtomicU64,
    /// ns since `base` of the last ack of a state report.
    last_state_ack_ns: AtomicU64,
    kafka_state: AtomicU64,
    kafka_command: AtomicU64,
    first_error: Mutex<Option<String>>,
}

impl Shared {
    fn now_ns(&self) -> u64 {
        self.base.elapsed().as_nanos() as u64 + 1
    }

    fn error(&self, what: String) {
        self.errors.fetch_add(1, Ordering::Relaxed);
        let mut first = self.first_error.lock().unwrap();
        if first.is_none() {
            eprintln!("loadgen: {what}");
            *first = Some(what);
        }
    }
}

fn wall_us() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_micros() as u64)
}

fn latency_histogram() -> Histogram<u64> {
    Histogram::new_with_bounds(1, 3_600_000_000, 3).expect("valid histogram bounds")
}

// ---------------------------------------------------------------------------------------
// MQTT 3.1.1 frames

mod frame {
    pub const PUBACK: u8 = 0x40;
    pub const PUBREC: u8 = 0x50;
    pub const PUBREL: u8 = 0x62;
    pub const PUBCOMP: u8 = 0x70;
    pub const DISCONNECT: [u8; 2] = [0xe0, 0];

    fn remaining_length(out: &mut Vec<u8>, mut len: usize) {
        loop {
            let mut byte = (len % 128) as u8;
            len /= 128;
            if len > 0 {
                byte |= 0x80;
            }
            out.push(byte);
            if len == 0 {
                return;
            }
        }
    }

    fn string(out: &mut Vec<u8>, s: &[u8]) {
        out.extend_from_slice(&(s.len() as u16).to_be_bytes());
        out.extend_from_slice(s);
    }

    /// CONNECT, MQTT 3.1.1, with a clean session unless `persistent`.
    pub fn connect(client_id: &str, keep_alive: u16, persistent: bool) -> Vec<u8> {
        let mut body = Vec::new();
        string(&mut body, b"MQTT");
        body.push(4);
        body.push(if persistent { 0x00 } else { 0x02 });
        body.extend_from_slice(&keep_alive.to_be_bytes());
        string(&mut body, client_id.as_bytes());
        let mut out = vec![0x10];
        remaining_length(&mut out, body.len());
        out.extend_from_slice(&body);
        out
    }

    pub fn subscribe(pkid: u16, filter: &str, qos: u8) -> Vec<u8> {
        let mut body = pkid.to_be_bytes().to_vec();
        string(&mut body, filter.as_bytes());
        body.push(qos);
        let mut out = vec![0x82];
        remaining_length(&mut out, body.len());
        out.extend_from_slice(&body);
        out
    }

    /// Appends a PUBLISH whose payload is `parts` concatenated.
    pub fn publish(out: &mut Vec<u8>, topic: &str, qos: u8, pkid: u16, parts: &[&[u8]]) {
        let payload_len: usize = parts.iter().map(|p| p.len()).sum();
        let remaining = 2 + topic.len() + if qos > 0 { 2 } else { 0 } + payload_len;
        out.push(0x30 | (qos << 1));
        remaining_length(out, remaining);
        string(out, topic.as_bytes());
        if qos > 0 {
            out.extend_from_slice(&pkid.to_be_bytes());
        }
        for part in parts {
            out.extend_from_slice(part);
        }
    }

    pub fn ack(out: &mut Vec<u8>, kind: u8, pkid: u16) {
        out.push(kind);
        out.push(2);
        out.extend_from_slice(&pkid.to_be_bytes());
    }
}

/// Reads until `buf` holds one whole frame; returns (first byte, whole frame).
async fn read_frame(stream: &mut TcpStream, buf: &mut Vec<u8>) -> anyhow::Result<(u8, Vec<u8>)> {
    loop {
        if let Some((first, remaining, header)) = wire::fixed_header(buf) {
            if buf.len() >= header + remaining {
                let rest = buf.split_off(header + remaining);
                let frame = std::mem::replace(buf, rest);
                return Ok((first, frame));
            }
        }
        let mut chunk = [0u8; 4096];
        let n = stream.read(&mut chunk).await?;
        anyhow::ensure!(n > 0, "connection closed by the broker");
        buf.extend_from_slice(&chunk[..n]);
    }
}

// ---------------------------------------------------------------------------------------
// Payloads

/// Incompressible padding: random alphanumerics. Each lock walks its own stretch of the
/// pool, so no two records within LZ4's 64 KiB window share bytes.
struct Pad {
    pool: Vec<u8>,
}

impl Pad {
    fn new(len: usize) -> Pad {
        const ALPHABET: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789";
        let mut seed = 0x9e37_79b9_7f4a_7c15_u64 ^ wall_us();
        let pool = (0..len)
            .map(|_| {
                seed ^= seed << 13;
                seed ^= seed >> 7;
                seed ^= seed << 17;
                ALPHABET[(seed % 62) as usize]
            })
            .collect();
        Pad { pool }
    }

    fn slice(&self, cursor: &mut usize, len: usize) -> &[u8] {
        let len = len.min(self.pool.len());
        if *cursor + len > self.pool.len() {
            *cursor = 0;
        }
        let s = &self.pool[*cursor..*cursor + len];
        *cursor += len;
        s
    }
}

/// A PUBLISH's packet id (0 at QoS 0) and payload, from its first byte and its body (the
/// frame after the fixed header); an empty payload when the body is cut short.
fn publish_parts(first: u8, body: &[u8]) -> (u16, &[u8]) {
    let qos = (first >> 1) & 3;
    let topic_len = body.get(..2).map_or(0, |b| u16::from_be_bytes([b[0], b[1]]) as usize);
    let id_at = 2 + topic_len;
    let (id, payload_at) = match qos {
        0 => (0, id_at),
        _ => (body.get(id_at..id_at + 2).map_or(0, |b| u16::from_be_bytes([b[0], b[1]])), id_at + 2),
    };
    (id, body.get(payload_at..).unwrap_or_default())
}

/// `seq` and `sent_us` of a scenario payload (they come before the padding).
fn payload_fields(payload: &[u8]) -> Option<(u64, u64)> {
    Some((number_after(payload, b"\"seq\":")?, number_after(payload, b"\"sent_us\":")?))
}

fn number_after(haystack: &[u8], needle: &[u8]) -> Option<u64> {
    let at = find(haystack, needle)? + needle.len();
    let digits = haystack[at..].iter().take_while(|b| b.is_ascii_digit()).count();
    std::str::from_utf8(&haystack[at..at + digits]).ok()?.parse().ok()
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).position(|w| w == needle)
}

// ---------------------------------------------------------------------------------------
// Clients

#[derive(Clone, Copy, PartialEq, Eq)]
enum Role {
    Lock,
    Commander,
}

struct ClientPlan {
    role: Role,
    index: usize,
    client_id: String,
    qos: u8,
    /// msg/s; 0 = unlimited.
    rate: f64,
    /// messages; 0 = unlimited.
    limit: u64,
}

/// What one connection measured.
struct ClientResult {
    role: Role,
    sent: u64,
    acked: u64,
    ack_latency_ns: Histogram<u64>,
    /// Locks: commands received, and their publish -> delivery latency.
    commands_received: u64,
    command_delivery_us: Histogram<u64>,
}

/// State one connection's reader shares with its writer.
struct Link {
    window: Semaphore,
    /// Send time (ns since base, 0 = free) per packet id slot; packet id = slot + 1.
    slots: Vec<AtomicU64>,
    writer: tokio::sync::Mutex<OwnedWriteHalf>,
}

struct Ctx {
    args: Args,
    shared: Arc<Shared>,
    /// With the mock cluster's read-back: holds locks back while the reader is behind.
    guard: Option<ReadGuard>,
    run: String,
    pad: Pad,
    /// Set once every client is connected: publishing starts.
    start: watch::Receiver<Option<Instant>>,
    /// Set when publishing is over everywhere and every client should disconnect.
    disconnect: watch::Receiver<bool>,
    publishing_over: Arc<AtomicBool>,
}

impl Ctx {
    fn lock_id(&self, index: usize) -> String {
        format!("lg{}-{index}", self.run)
    }
}

/// Keeps the read-back exact against librdkafka's mock cluster, which deletes a
/// partition's oldest record batches once it holds more than 5 MiB
/// (`rdkafka_mock.c`, `max_size`, not configurable): a lock sends only while the state
/// records sent to its partition and not yet read fit in [`ReadGuard::budget`], so no
/// record can be deleted before the reader has it. The partition of each lock is the
/// gateway producer's: `consistent_random`, CRC-32 of the key (the client id) modulo the
/// partition count; the reader checks every record against it.
struct ReadGuard {
    /// Per lock, its partition of `message_state`.
    partition_of: Vec<usize>,
    /// Per partition, state records sent and not yet read.
    unread: Vec<std::sync::atomic::AtomicI64>,
    /// Most unread records a partition may hold: well under the mock's 5 MiB.
    budget: i64,
    /// ns since `Shared::base` of the last record read, for [`ReadGuard::STALL`].
    last_read_ns: AtomicU64,
    /// Total time locks waited for the reader, ns.
    held_ns: AtomicU64,
    /// Set when the guard let a lock go on because the reader stalled.
    gave_up: AtomicBool,
}

impl ReadGuard {
    /// How long a lock waits for a reader that reads nothing at all before going on
    /// regardless (records the gateway lost would otherwise hold it for ever).
    const STALL: Duration = Duration::from_secs(10);

    fn new(lock_ids: &[String], partitions: i32, payload: usize) -> ReadGuard {
        let partitions = partitions.max(1) as usize;
        // The envelope carries the payload in base64 plus its other fields; the mock
        // deletes whole batches (up to batch.size, 1 MB) once past 5 MiB, so 3 MiB of
        // records, at their uncompressed size, are always kept.
        let record_bytes = (payload * 4 / 3 + 512) as i64;
        ReadGuard {
            partition_of: lock_ids.iter().map(|id| crc32fast::hash(id.as_bytes()) as usize % partitions).collect(),
            unread: (0..partitions).map(|_| std::sync::atomic::AtomicI64::new(0)).collect(),
            budget: ((3 << 20) / record_bytes).max(WRITE_BATCH as i64),
            last_read_ns: AtomicU64::new(0),
            held_ns: AtomicU64::new(0),
            gave_up: AtomicBool::new(false),
        }
    }

    /// Waits until lock `lock` may send `n` more state records, then counts them.
    async fn admit(&self, shared: &Shared, lock: usize, n: u64) {
        let unread = &self.unread[self.partition_of[lock]];
        if unread.load(Ordering::Relaxed) + n as i64 > self.budget {
            self.wait(shared, unread, n).await;
        }
        unread.fetch_add(n as i64, Ordering::Relaxed);
    }

    async fn wait(&self, shared: &Shared, unread: &std::sync::atomic::AtomicI64, n: u64) {
        let since = shared.now_ns();
        while unread.load(Ordering::Relaxed) + n as i64 > self.budget && !self.gave_up.load(Ordering::Relaxed) {
            let last = self.last_read_ns.load(Ordering::Relaxed).max(since);
            if shared.now_ns().saturating_sub(last) > Self::STALL.as_nanos() as u64 {
                self.gave_up.store(true, Ordering::Relaxed);
                shared.error(format!("the Kafka reader read nothing for {} s; locks no longer wait for it", Self::STALL.as_secs()));
                break;
            }
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
        self.held_ns.fetch_add(shared.now_ns() - since, Ordering::Relaxed);
    }

    /// The reader got a state record of lock `lock` from `partition`; false if that is
    /// not the partition the guard counted it in.
    fn read(&self, shared: &Shared, lock: usize, partition: i32) -> bool {
        self.last_read_ns.store(shared.now_ns(), Ordering::Relaxed);
        let expected = self.partition_of[lock];
        self.unread[expected].fetch_sub(1, Ordering::Relaxed);
        usize::try_from(partition) == Ok(expected)
    }
}

/// Connects to the broker; with `source_addrs` > 0, from 127.0.0.(2 + index % source_addrs),
/// bound before connecting so each source address has its own ephemeral port range.
async fn connect_from(mqtt: &str, source_addrs: u8, index: usize) -> anyhow::Result<TcpStream> {
    if source_addrs == 0 {
        return Ok(TcpStream::connect(mqtt).await?);
    }
    let broker = tokio::net::lookup_host(mqtt)
        .await?
        .find(|a| a.is_ipv4())
        .ok_or_else(|| anyhow::anyhow!("--source-addrs needs an IPv4 broker address, {mqtt} has none"))?;
    let socket = TcpSocket::new_v4()?;
    let last_octet = 2 + (index % usize::from(source_addrs)) as u8;
    socket.bind(std::net::SocketAddr::from(([127, 0, 0, last_octet], 0)))?;
    Ok(socket.connect(broker).await?)
}

async fn run_client(ctx: Arc<Ctx>, plan: ClientPlan) -> anyhow::Result<ClientResult> {
    let shared = &ctx.shared;
    let mut stream = connect_from(&ctx.args.mqtt, ctx.args.source_addrs, plan.index).await?;
    stream.set_nodelay(true)?;
    stream.write_all(&frame::connect(&plan.client_id, ctx.args.keep_alive, false)).await?;
    let mut buf = Vec::new();
    let (first, connack) = read_frame(&mut stream, &mut buf).await?;
    anyhow::ensure!(first >> 4 == 2 && connack.get(3) == Some(&0), "CONNECT refused: {connack:?}");
    if plan.role == Role::Lock && !ctx.args.no_subscribe {
        stream.write_all(&frame::subscribe(1, &format!("devices/{}/command", plan.client_id), 1)).await?;
        let (first, _) = read_frame(&mut stream, &mut buf).await?;
        anyhow::ensure!(first >> 4 == 9, "expected SUBACK, got packet type {}", first >> 4);
    }
    shared.connected.fetch_add(1, Ordering::Relaxed);

    let window = ctx.args.inflight.max(1);
    let (reader, writer) = stream.into_split();
    let link = Arc::new(Link {
        window: Semaphore::new(window),
        slots: (0..(window * 4).clamp(1024, 65_535)).map(|_| AtomicU64::new(0)).collect(),
        writer: tokio::sync::Mutex::new(writer),
    });
    let reader_task = tokio::spawn(read_loop(ctx.clone(), plan.role, link.clone(), reader, buf));

    let mut start = ctx.start.clone();
    let started = loop {
        if let Some(at) = *start.borrow_and_update() {
            break at;
        }
        start.changed().await?;
    };
    let sent = write_loop(&ctx, &plan, &link, started).await?;

    // Wait for the last acks, then stay connected (locks still receive commands) until
    // everyone is done.
    if plan.qos > 0 {
        let deadline = Instant::now() + Duration::from_secs_f64(ctx.args.drain_timeout);
        while link.window.available_permits() < window && Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
    }
    let mut disconnect = ctx.disconnect.clone();
    while !*disconnect.borrow_and_update() {
        disconnect.changed().await?;
    }
    {
        let mut writer = link.writer.lock().await;
        let _ = writer.write_all(&frame::DISCONNECT).await;
        let _ = writer.shutdown().await;
    }
    let mut result = reader_task.await??;
    result.sent = sent;
    Ok(result)
}

/// Publishes until the plan's count or the run's duration is reached; returns how many.
async fn write_loop(ctx: &Ctx, plan: &ClientPlan, link: &Link, started: Instant) -> anyhow::Result<u64> {
    let shared = &ctx.shared;
    let args = &ctx.args;
    let deadline = (args.duration > 0.0).then(|| started + Duration::from_secs_f64(args.duration));
    let lock_topic = format!("devices/{}/state", plan.client_id);
    let mut pad_cursor = (plan.index * 65_537) % ctx.pad.pool.len().max(1);
    let mut out = Vec::with_capacity(WRITE_BATCH as usize * (args.payload + 128));
    let mut head = Vec::with_capacity(256);
    let mut sent = 0u64;
    let mut slot_cursor = 0usize;
    let mut next_target = plan.index;
    loop {
        if (plan.limit > 0 && sent >= plan.limit) || deadline.is_some_and(|d| Instant::now() >= d) {
            break;
        }
        if plan.role == Role::Commander && ctx.publishing_over.load(Ordering::Relaxed) {
            break;
        }
        let mut n = WRITE_BATCH;
        if plan.limit > 0 {
            n = n.min(plan.limit - sent);
        }
        if plan.rate > 0.0 {
            let due = (started.elapsed().as_secs_f64() * plan.rate) as u64 + 1;
            if due <= sent {
                let next = started + Duration::from_secs_f64(sent as f64 / plan.rate);
                let next = match deadline {
                    Some(d) => next.min(d),
                    None => next,
                };
                tokio::time::sleep_until(next.into()).await;
                continue;
            }
            n = n.min(due - sent);
        }
        if plan.qos > 0 {
            match tokio::time::timeout(Duration::from_millis(100), link.window.acquire()).await {
                Ok(permit) => permit?.forget(),
                Err(_) => continue,
            }
            let mut got = 1;
            while got < n {
                match link.window.try_acquire() {
                    Ok(permit) => {
                        permit.forget();
                        got += 1;
                    }
                    Err(_) => break,
                }
            }
            n = got;
        }
        if let (Some(guard), Role::Lock) = (&ctx.guard, plan.role) {
            guard.admit(shared, plan.index, n).await;
        }

        out.clear();
        let sent_us = wall_us();
        let now = shared.now_ns();
        for k in 0..n {
            let mut pkid = 0;
            if plan.qos > 0 {
                // A free slot always exists: at most `window` are taken, slots >= 4x that.
                while link.slots[slot_cursor].load(Ordering::Acquire) != 0 {
                    slot_cursor = (slot_cursor + 1) % link.slots.len();
                }
                link.slots[slot_cursor].store(now, Ordering::Release);
                pkid = slot_cursor as u16 + 1;
                slot_cursor = (slot_cursor + 1) % link.slots.len();
            }
            head.clear();
            match plan.role {
                Role::Lock => {
                    write!(
                        head,
                        r#"{{"process_id":"7802441525528958","action":"unlock","battery":83.4,"lock_state":1,"version":1.1,"client_id":"{}","seq":{},"sent_us":{sent_us},"pad":""#,
                        plan.client_id,
                        sent + k
                    )?;
                    let pad_len = args.payload.saturating_sub(head.len() + 2);
                    let pad = ctx.pad.slice(&mut pad_cursor, pad_len);
                    frame::publish(&mut out, &lock_topic, plan.qos, pkid, &[head.as_slice(), pad, b"\"}".as_slice()]);
                }
                Role::Commander => {
                    let seq = shared.next_cmd_seq.fetch_add(1, Ordering::Relaxed);
                    let target = ctx.lock_id(next_target % args.devices.max(1));
                    next_target += args.commanders.max(1);
                    let nonce = &ctx.pad.slice(&mut pad_cursor, 8);
                    write!(
                        head,
                        r#"{{"process_id":"7802441525528958","action":"unlock","nonce_str":"{}","ts":{},"sign":"e9f5af7deaa28563","seq":{seq},"sent_us":{sent_us}}}"#,
                        String::from_utf8_lossy(nonce),
                        sent_us / 1_000_000
                    )?;
                    frame::publish(&mut out, &format!("devices/{target}/command"), plan.qos, pkid, &[head.as_slice()]);
                }
            }
        }
        link.writer.lock().await.write_all(&out).await?;
        sent += n;
        match plan.role {
            Role::Lock => shared.state_sent.fetch_add(n, Ordering::Relaxed),
            Role::Commander => shared.cmd_sent.fetch_add(n, Ordering::Relaxed),
        };
    }
    Ok(sent)
}

async fn read_loop(
    ctx: Arc<Ctx>,
    role: Role,
    link: Arc<Link>,
    mut reader: tokio::net::tcp::OwnedReadHalf,
    mut buf: Vec<u8>,
) -> anyhow::Result<ClientResult> {
    let shared = &ctx.shared;
    let mut result = ClientResult {
        role,
        sent: 0,
        acked: 0,
        ack_latency_ns: latency_histogram(),
        commands_received: 0,
        command_delivery_us: latency_histogram(),
    };
    let mut replies = Vec::new();
    let mut chunk = vec![0u8; 256 * 1024];
    loop {
        let mut at = 0;
        while let Some((first, remaining, header)) = wire::fixed_header(&buf[at..]) {
            let end = at + header + remaining;
            if buf.len() < end {
                break;
            }
            let body = &buf[at + header..end];
            let pkid = || body.get(..2).map_or(0, |b| u16::from_be_bytes([b[0], b[1]]));
            match first >> 4 {
                // PUBACK (QoS 1) / PUBCOMP (QoS 2): a publish of ours is done.
                4 | 7 => {
                    let slot = (pkid() as usize).wrapping_sub(1);
                    if let Some(sent_at) = link.slots.get(slot).map(|s| s.swap(0, Ordering::AcqRel)) {
                        if sent_at != 0 {
                            let now = shared.now_ns();
                            result.ack_latency_ns.saturating_record(now.saturating_sub(sent_at).max(1));
                            result.acked += 1;
                            link.window.add_permits(1);
                            match role {
                                Role::Lock => {
                                    shared.state_acked.fetch_add(1, Ordering::Relaxed);
                                    shared.last_state_ack_ns.fetch_max(now, Ordering::Relaxed);
                                }
                                Role::Commander => {
                                    shared.cmd_acked.fetch_add(1, Ordering::Relaxed);
                                }
                            }
                        }
                    }
                }
                5 => frame::ack(&mut replies, frame::PUBREL, pkid()),
                6 => frame::ack(&mut replies, frame::PUBCOMP, pkid()),
                // An unlock command for this lock.
                3 => {
                    let (id, payload) = publish_parts(first, body);
                    if let Some((_, sent_us)) = payload_fields(payload) {
                        result.command_delivery_us.saturating_record(wall_us().saturating_sub(sent_us).max(1));
                    }
                    result.commands_received += 1;
                    shared.cmd_received.fetch_add(1, Ordering::Relaxed);
                    match (first >> 1) & 3 {
                        1 => frame::ack(&mut replies, frame::PUBACK, id),
                        2 => frame::ack(&mut replies, frame::PUBREC, id),
                        _ => {}
                    }
                }
                _ => {}
            }
            at = end;
        }
        buf.drain(..at);
        if !replies.is_empty() {
            let written = link.writer.lock().await.write_all(&replies).await;
            // After DISCONNECT the write half is shut: late acks no longer matter.
            if let Err(e) = written {
                if *ctx.disconnect.borrow() {
                    return Ok(result);
                }
                return Err(e.into());
            }
            replies.clear();
        }
        let n = match reader.read(&mut chunk).await {
            Ok(n) => n,
            Err(e) if *ctx.disconnect.borrow() => {
                let _ = e;
                0
            }
            Err(e) => return Err(e.into()),
        };
        if n == 0 {
            anyhow::ensure!(*ctx.disconnect.borrow(), "connection closed by the broker");
            return Ok(result);
        }
        buf.extend_from_slice(&chunk[..n]);
    }
}

/// Publishes `count` state reports (QoS 1) and one unlock command to itself (acked), so
/// both Kafka routes are set up before measuring.
async fn warm_up(mqtt: &str, client_id: &str, count: u16) -> anyhow::Result<()> {
    let mut stream = TcpStream::connect(mqtt).await?;
    stream.set_nodelay(true)?;
    stream.write_all(&frame::connect(client_id, 600, false)).await?;
    let mut buf = Vec::new();
    let (first, connack) = read_frame(&mut stream, &mut buf).await?;
    anyhow::ensure!(first >> 4 == 2 && connack.get(3) == Some(&0), "warm-up CONNECT refused: {connack:?}");
    let command_topic = format!("devices/{client_id}/command");
    stream.write_all(&frame::subscribe(1, &command_topic, 1)).await?;
    let mut out = Vec::new();
    let state_topic = format!("devices/{client_id}/state");
    let body = format!(r#"{{"client_id":"{client_id}","seq":0,"sent_us":{}}}"#, wall_us());
    for i in 0..count {
        frame::publish(&mut out, &state_topic, 1, 100 + i, &[body.as_bytes()]);
    }
    frame::publish(&mut out, &command_topic, 1, 99, &[body.as_bytes()]);
    stream.write_all(&out).await?;
    let (mut acks, mut commands) = (0, 0);
    let deadline = Instant::now() + Duration::from_secs(10);
    while acks < count + 1 || commands < 1 {
        let (first, frame_bytes) = tokio::time::timeout_at(deadline.into(), read_frame(&mut stream, &mut buf))
            .await
            .map_err(|_| anyhow::anyhow!("warm-up: no answer from the broker within 10 s"))??;
        match first >> 4 {
            4 => acks += 1,
            3 => {
                commands += 1;
                let (_, _, header) = wire::fixed_header(&frame_bytes).unwrap_or((0, 0, 2));
                let topic_len = u16::from_be_bytes([frame_bytes[header], frame_bytes[header + 1]]) as usize;
                let at = header + 2 + topic_len;
                let mut ack = Vec::new();
                frame::ack(&mut ack, frame::PUBACK, u16::from_be_bytes([frame_bytes[at], frame_bytes[at + 1]]));
                stream.write_all(&ack).await?;
            }
            _ => {}
        }
    }
    stream.write_all(&frame::DISCONNECT).await?;
    // Let the broker see the PUBACK (message.acked) before the connection goes.
    tokio::time::sleep(Duration::from_millis(50)).await;
    Ok(())
}

// ---------------------------------------------------------------------------------------
// Kafka

/// What the consumer found on one topic.
struct TopicTally {
    received: u64,
    unique: u64,
    duplicates: u64,
    foreign: u64,
    unparsed: u64,
    /// Records the broker deleted before the consumer got to them: they were in Kafka,
    /// but nobody could check which they were.
    unread: u64,
    e2e_us: Histogram<u64>,
    first_at: Option<Instant>,
    last_at: Option<Instant>,
    /// Seen sequence numbers, one bitset per lock (commands: one for the run).
    seen: Vec<Vec<u64>>,
}

impl TopicTally {
    fn new(sets: usize) -> TopicTally {
        TopicTally {
            received: 0,
            unique: 0,
            duplicates: 0,
            foreign: 0,
            unparsed: 0,
            unread: 0,
            e2e_us: latency_histogram(),
            first_at: None,
            last_at: None,
            seen: vec![Vec::new(); sets],
        }
    }

    /// Marks `seq` of set `set` seen; false if it already was.
    fn mark(&mut self, set: usize, seq: u64) -> bool {
        let bits = &mut self.seen[set];
        let (word, bit) = ((seq / 64) as usize, seq % 64);
        if bits.len() <= word {
            bits.resize(word + 1, 0);
        }
        let fresh = bits[word] & (1 << bit) == 0;
        bits[word] |= 1 << bit;
        fresh
    }
}

struct KafkaReader {
    consumer: BaseConsumer,
    /// Every partition read, with the offset reading started at.
    start: Vec<(&'static str, i32, i64)>,
}

impl KafkaReader {
    /// A consumer assigned to both topics at their current end offsets (no group).
    fn new(bootstrap: &str, props: &[String]) -> anyhow::Result<KafkaReader> {
        let mut config = ClientConfig::new();
        config
            .set("bootstrap.servers", bootstrap)
            .set("group.id", "hookline-loadgen")
            .set("enable.auto.commit", "false")
            .set("enable.auto.offset.store", "false")
            // Records deleted before they were read (librdkafka's mock cluster keeps
            // about 5 MB per partition) must show as an error, so they are counted
            // (`skip_deleted`), not skipped silently.
            .set("auto.offset.reset", "error")
            .set("fetch.wait.max.ms", "5")
            .set("fetch.min.bytes", "1")
            .set("fetch.queue.backoff.ms", "1")
            .set("queued.min.messages", "1000000")
            .set("max.partition.fetch.bytes", "10485760")
            .set("fetch.max.bytes", "52428800")
            .set("check.crcs", "false");
        for prop in props {
            let (key, value) = prop.split_once('=').ok_or_else(|| anyhow::anyhow!("--consumer-prop {prop}: KEY=VALUE"))?;
            config.set(key, value);
        }
        let consumer: BaseConsumer = config.create()?;
        let mut start = Vec::new();
        for topic in [STATE_TOPIC, COMMAND_TOPIC] {
            let metadata = consumer.fetch_metadata(Some(topic), Duration::from_secs(10))?;
            let parts: Vec<i32> = metadata.topics().iter().flat_map(|t| t.partitions().iter().map(|p| p.id())).collect();
            anyhow::ensure!(!parts.is_empty(), "Kafka topic {topic} has no partitions (does it exist?)");
            for p in parts {
                let (_, high) = consumer.fetch_watermarks(topic, p, Duration::from_secs(10))?;
                start.push((topic, p, high));
            }
        }
        let reader = KafkaReader { consumer, start };
        reader.assign(&reader.start)?;
        Ok(reader)
    }

    /// Reads each partition from the offset given.
    fn assign(&self, positions: &[(&'static str, i32, i64)]) -> KafkaResult<()> {
        let mut assignment = TopicPartitionList::new();
        for &(topic, partition, offset) in positions {
            assignment.add_partition_offset(topic, partition, Offset::Offset(offset))?;
        }
        self.consumer.assign(&assignment)
    }

    /// After the consumer found its next offset gone: counts, per partition, the
    /// records the broker deleted before they were read, and reads on from the oldest
    /// one it kept. At full rate the mock cluster's ~5 MB are a fraction of a second.
    fn skip_deleted(
        &self,
        positions: &mut [(&'static str, i32, i64)],
        state: &mut TopicTally,
        command: &mut TopicTally,
    ) -> KafkaResult<()> {
        for (topic, partition, next) in positions.iter_mut() {
            let (low, _) = self.consumer.fetch_watermarks(topic, *partition, Duration::from_secs(5))?;
            if *next < low {
                let tally = if *topic == STATE_TOPIC { &mut *state } else { &mut *command };
                tally.unread += (low - *next) as u64;
                *next = low;
            }
        }
        self.assign(positions)
    }

    /// Reads until `done` says so (checked between polls); tallies by topic.
    fn run(&self, ctx: &Ctx, done: impl Fn(&TopicTally, &TopicTally) -> bool) -> (TopicTally, TopicTally) {
        let mut state = TopicTally::new(ctx.args.devices);
        let mut command = TopicTally::new(1);
        let prefix = format!("lg{}-", ctx.run);
        let b64 = base64::engine::general_purpose::STANDARD;
        let mut decoded = vec![0u8; 1024];
        // The offset each partition is read at next.
        let mut positions = self.start.clone();
        while !done(&state, &command) {
            let Some(result) = self.consumer.poll(Duration::from_millis(20)) else { continue };
            let message = match result {
                Ok(m) => m,
                Err(KafkaError::MessageConsumption(RDKafkaErrorCode::AutoOffsetReset)) => {
                    if let Err(e) = self.skip_deleted(&mut positions, &mut state, &mut command) {
                        ctx.shared.error(format!("Kafka consumer: {e}"));
                    }
                    continue;
                }
                Err(e) => {
                    ctx.shared.error(format!("Kafka consumer: {e}"));
                    continue;
                }
            };
            if let Some((_, _, next)) = positions.iter_mut().find(|(t, p, _)| *t == message.topic() && *p == message.partition()) {
                *next = message.offset() + 1;
            }
            let now = Instant::now();
            let is_state = message.topic() == STATE_TOPIC;
            let tally = if is_state { &mut state } else { &mut command };
            let key = message.key().unwrap_or_default();
            let Some(lock) = key
                .strip_prefix(prefix.as_bytes())
                .and_then(|rest| std::str::from_utf8(rest).ok()?.parse::<usize>().ok())
                .filter(|&i| i < ctx.args.devices)
            else {
                tally.foreign += 1;
                continue;
            };
            if let (Some(guard), true) = (&ctx.guard, is_state) {
                if !guard.read(&ctx.shared, lock, message.partition()) {
                    ctx.shared.error(format!(
                        "{} went to partition {}, not the one the read guard counted it in: is the producer's partitioner consistent_random?",
                        ctx.lock_id(lock),
                        message.partition()
                    ));
                }
            }
            tally.received += 1;
            tally.first_at.get_or_insert(now);
            tally.last_at = Some(now);
            if is_state {
                ctx.shared.kafka_state.fetch_add(1, Ordering::Relaxed);
            } else {
                ctx.shared.kafka_command.fetch_add(1, Ordering::Relaxed);
            }
            // The envelope's "payload" is base64 of the MQTT payload; seq and sent_us sit
            // in its first few hundred bytes.
            let value = message.payload().unwrap_or_default();
            let fields = find(value, b"\"payload\":\"").and_then(|at| {
                let start = at + 11;
                let end = start + value[start..].iter().position(|&b| b == b'"')?;
                let text = &value[start..end];
                let text = if text.len() > 512 { &text[..512] } else { text };
                let n = b64.decode_slice(text, &mut decoded).ok()?;
                payload_fields(&decoded[..n])
            });
            let Some((seq, sent_us)) = fields else {
                tally.unparsed += 1;
                continue;
            };
            tally.e2e_us.saturating_record(wall_us().saturating_sub(sent_us).max(1));
            let set = if is_state { lock } else { 0 };
            if tally.mark(set, seq) {
                tally.unique += 1;
            } else {
                tally.duplicates += 1;
            }
        }
        (state, command)
    }
}

/// Counts records landing in Kafka from the topics' high watermarks, whether or not the
/// consumer keeps up: the rate at which the gateway gets records into Kafka.
struct Watermarks {
    consumer: BaseConsumer,
    partitions: Vec<(&'static str, i32)>,
    start: [i64; 2],
}

impl Watermarks {
    fn new(bootstrap: &str) -> anyhow::Result<Watermarks> {
        let consumer: BaseConsumer =
            ClientConfig::new().set("bootstrap.servers", bootstrap).set("group.id", "hookline-loadgen-watermarks").create()?;
        let mut partitions = Vec::new();
        for topic in [STATE_TOPIC, COMMAND_TOPIC] {
            let metadata = consumer.fetch_metadata(Some(topic), Duration::from_secs(10))?;
            for t in metadata.topics() {
                partitions.extend(t.partitions().iter().map(|p| (topic, p.id())));
            }
        }
        let mut w = Watermarks { consumer, partitions, start: [0, 0] };
        w.start = w.totals()?;
        Ok(w)
    }

    /// Sum of high watermarks: [message_state, message_command].
    fn totals(&self) -> anyhow::Result<[i64; 2]> {
        let mut sums = [0, 0];
        for (topic, p) in &self.partitions {
            let (_, high) = self.consumer.fetch_watermarks(topic, *p, Duration::from_secs(5))?;
            sums[usize::from(*topic == COMMAND_TOPIC)] += high;
        }
        Ok(sums)
    }

    /// Records added since `new`.
    fn added(&self) -> anyhow::Result<[u64; 2]> {
        let now = self.totals()?;
        Ok([(now[0] - self.start[0]).max(0) as u64, (now[1] - self.start[1]).max(0) as u64])
    }
}

/// Creates the two topics when missing (a broker that auto-creates needs nothing).
async fn ensure_topics(bootstrap: &str, partitions: i32) -> anyhow::Result<()> {
    use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
    let admin: AdminClient<rdkafka::client::DefaultClientContext> = ClientConfig::new().set("bootstrap.servers", bootstrap).create()?;
    let topics: Vec<NewTopic> =
        [STATE_TOPIC, COMMAND_TOPIC].iter().map(|t| NewTopic::new(t, partitions, TopicReplication::Fixed(1))).collect();
    let options = AdminOptions::new().operation_timeout(Some(Duration::from_secs(10)));
    let results = admin.create_topics(&topics, &options).await?;
    for result in results {
        if let Err((topic, code)) = result {
            if code != rdkafka::types::RDKafkaErrorCode::TopicAlreadyExists {
                eprintln!("loadgen: cannot create Kafka topic {topic}: {code}");
            }
        }
    }
    Ok(())
}

// ---------------------------------------------------------------------------------------
// /proc sampling

/// CPU seconds (user + system) and RSS of a process.
#[derive(Clone, Copy, Default)]
struct ProcSample {
    cpu_s: f64,
    rss_kb: u64,
    hwm_kb: u64,
}

fn sample_proc(pid: u32) -> Option<ProcSample> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // Fields after the command name, which is in parentheses and may hold spaces.
    let rest = &stat[stat.rfind(')')? + 2..];
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let ticks: u64 = fields.get(11)?.parse::<u64>().ok()? + fields.get(12)?.parse::<u64>().ok()?;
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let kb = |name: &str| status.lines().find(|l| l.starts_with(name)).and_then(|l| l.split_whitespace().nth(1)?.parse().ok()).unwrap_or(0);
    // USER_HZ is 100 on every Linux this runs on.
    Some(ProcSample { cpu_s: ticks as f64 / 100.0, rss_kb: kb("VmRSS:"), hwm_kb: kb("VmHWM:") })
}

// ---------------------------------------------------------------------------------------
// Idle fleet

/// Where an idle fleet is: 0 while it first holds, then the number of its reconnect
/// (`--reconnects`), then `STOP`.
type IdlePhase = u32;
const STOP: IdlePhase = IdlePhase::MAX;

/// How many locks are connected now, and how many came back in the current reconnect.
#[derive(Default)]
struct IdleCounts {
    connected: AtomicUsize,
    reconnected: AtomicUsize,
}

/// One lock's CONNECT and SUBSCRIBE (unless `--no-subscribe`), within a place of
/// `window`: the connection, subscribed.
async fn lock_handshake(args: &Args, index: usize, client_id: &str, window: &Semaphore) -> anyhow::Result<TcpStream> {
    let _turn = window.acquire().await?;
    // Boxed: the handshake's read buffer would otherwise stay in every task's future
    // for the whole hold, and the load generator holds 100,000 of them.
    let handshake = Box::pin(async {
        let mut stream = connect_from(&args.mqtt, args.source_addrs, index).await?;
        stream.write_all(&frame::connect(client_id, args.keep_alive, args.park)).await?;
        let mut buf = Vec::new();
        let (first, connack) = read_frame(&mut stream, &mut buf).await?;
        anyhow::ensure!(first >> 4 == 2 && connack.get(3) == Some(&0), "CONNECT refused: {connack:?}");
        if !args.no_subscribe {
            stream.write_all(&frame::subscribe(1, &format!("devices/{client_id}/command"), 1)).await?;
            let (first, _) = read_frame(&mut stream, &mut buf).await?;
            anyhow::ensure!(first >> 4 == 9, "expected SUBACK, got packet type {}", first >> 4);
        }
        anyhow::Ok(stream)
    });
    // A broker that never answers is a failure to count, not a run that never ends.
    match tokio::time::timeout(HANDSHAKE_TIMEOUT, handshake).await {
        Ok(handshake) => handshake,
        Err(_) => anyhow::bail!("no CONNACK or SUBACK within {} s", HANDSHAKE_TIMEOUT.as_secs()),
    }
}

/// Holds an idle connection until the fleet reaches `until`. Anything the broker sends
/// meanwhile, or the connection closing, is an error: nobody publishes to these locks.
async fn hold(stream: &mut TcpStream, phase: &mut watch::Receiver<IdlePhase>, until: IdlePhase, counts: &IdleCounts) -> anyhow::Result<()> {
    let mut byte = [0u8; 1];
    tokio::select! {
        _ = phase.wait_for(|phase| *phase >= until) => Ok(()),
        read = stream.read(&mut byte) => {
            counts.connected.fetch_sub(1, Ordering::Relaxed);
            anyhow::bail!("idle connection ended by the broker ({})", match read {
                Ok(0) => "closed".to_string(),
                Ok(_) => format!("unexpected packet type {}", byte[0] >> 4),
                Err(e) => e.to_string(),
            });
        }
    }
}

/// One idle lock: connects, subscribes QoS 1 to its command topic (unless
/// `--no-subscribe`, which separates the cost of a connection from that of its
/// subscription), counts itself, then holds the connection until the fleet stops (with
/// `--park`, leaves at once instead, its persistent session parked; with `--reconnects`,
/// drops it each time the fleet reconnects and connects again).
async fn idle_lock(
    args: Arc<Args>,
    index: usize,
    client_id: String,
    counts: Arc<IdleCounts>,
    window: Arc<Semaphore>,
    mut phase: watch::Receiver<IdlePhase>,
) -> anyhow::Result<()> {
    let mut stream = lock_handshake(&args, index, &client_id, &window).await?;
    counts.connected.fetch_add(1, Ordering::Relaxed);
    if args.park {
        // Leave: the broker keeps the session; wait until it has closed the connection.
        stream.write_all(&frame::DISCONNECT).await?;
        let mut rest = Vec::new();
        let _ = tokio::time::timeout(Duration::from_secs(5), stream.read_to_end(&mut rest)).await;
        return Ok(());
    }
    for round in 1..=args.reconnects {
        hold(&mut stream, &mut phase, round, &counts).await?;
        // Gone without a word, as a fleet is when its network or its gateway fails.
        drop(stream);
        counts.connected.fetch_sub(1, Ordering::Relaxed);
        stream = lock_handshake(&args, index, &client_id, &window).await?;
        counts.connected.fetch_add(1, Ordering::Relaxed);
        counts.reconnected.fetch_add(1, Ordering::Relaxed);
    }
    hold(&mut stream, &mut phase, STOP, &counts).await?;
    stream.write_all(&frame::DISCONNECT).await?;
    Ok(())
}

/// `--idle-commands`: one lock subscribed to its command topic and one publisher sending
/// it QoS 1 commands at `rate` a second for `seconds`, among the idle fleet. Gives the
/// publish-to-receipt latency of every command received, and how many were sent.
async fn commands_among_idle_locks(args: Arc<Args>, run: String, rate: f64, seconds: f64) -> anyhow::Result<(Histogram<u64>, u64)> {
    let lock_id = format!("lg{run}-active");
    let topic = format!("devices/{lock_id}/command");
    let mut lock = connect_from(&args.mqtt, 0, 0).await?;
    lock.write_all(&frame::connect(&lock_id, args.keep_alive, false)).await?;
    let mut buf = Vec::new();
    read_frame(&mut lock, &mut buf).await?;
    lock.write_all(&frame::subscribe(1, &topic, 1)).await?;
    let (first, _) = read_frame(&mut lock, &mut buf).await?;
    anyhow::ensure!(first >> 4 == 9, "the commanded lock's SUBSCRIBE: packet type {} instead of SUBACK", first >> 4);

    let mut commander = connect_from(&args.mqtt, 0, 0).await?;
    commander.write_all(&frame::connect(&format!("lg{run}-commander"), args.keep_alive, false)).await?;
    read_frame(&mut commander, &mut Vec::new()).await?;
    let (mut acks, mut commands) = commander.into_split();
    // PUBACKs are read and let go: the latency measured is the lock's.
    let drain = tokio::spawn(async move {
        let mut sink = [0u8; 4096];
        while matches!(acks.read(&mut sink).await, Ok(n) if n > 0) {}
    });
    let count = (rate * seconds).round() as u64;
    let send = async {
        let started = Instant::now();
        let mut out = Vec::new();
        for n in 0..count {
            tokio::time::sleep_until((started + Duration::from_secs_f64(n as f64 / rate)).into()).await;
            out.clear();
            let payload = format!("{{\"command\":\"unlock\",\"seq\":{n},\"sent_us\":{}}}", wall_us());
            frame::publish(&mut out, &topic, 1, (n % 65_535 + 1) as u16, &[payload.as_bytes()]);
            commands.write_all(&out).await?;
        }
        anyhow::Ok(())
    };
    let receive = async {
        let mut latency = latency_histogram();
        let mut ack = Vec::new();
        while latency.len() < count {
            let Ok(read) = tokio::time::timeout(Duration::from_secs(2), read_frame(&mut lock, &mut buf)).await else { break };
            let (first, packet) = read?;
            if first >> 4 != 3 {
                continue;
            }
            let header = wire::fixed_header(&packet).map_or(0, |(_, _, header)| header);
            let (pkid, payload) = publish_parts(first, &packet[header..]);
            if let Some((_, sent_us)) = payload_fields(payload) {
                latency.saturating_record(wall_us().saturating_sub(sent_us).max(1));
            }
            ack.clear();
            frame::ack(&mut ack, frame::PUBACK, pkid);
            lock.write_all(&ack).await?;
        }
        anyhow::Ok(latency)
    };
    let (sent, latency) = tokio::join!(send, receive);
    sent?;
    drain.abort();
    lock.write_all(&frame::DISCONNECT).await?;
    Ok((latency?, count))
}

/// Counts a finished idle lock's error by its message (a lock only finishes early on one).
fn record_failure(failures: &mut std::collections::BTreeMap<String, u64>, joined: Result<anyhow::Result<()>, tokio::task::JoinError>) {
    let why = match joined {
        Ok(Ok(())) => return,
        Ok(Err(e)) => format!("{e:#}"),
        Err(e) => format!("task: {e}"),
    };
    *failures.entry(why).or_default() += 1;
}

/// Waits until `done()` (locks up, or back) plus the locks failed since reaches `of`,
/// showing progress each second; returns the seconds since `since`.
async fn wait_for_locks(
    tasks: &mut tokio::task::JoinSet<anyhow::Result<()>>,
    failures: &mut std::collections::BTreeMap<String, u64>,
    args: &Args,
    since: Instant,
    of: usize,
    done: impl Fn() -> usize,
) -> f64 {
    let mut last_progress = Instant::now();
    loop {
        while let Some(joined) = tasks.try_join_next() {
            record_failure(failures, joined);
        }
        let (up, failed) = (done(), failures.values().sum::<u64>());
        if up + failed as usize >= of {
            return since.elapsed().as_secs_f64();
        }
        if last_progress.elapsed() >= Duration::from_secs(1) && !args.quiet {
            let gw = args.gateway_pid.and_then(sample_proc).unwrap_or_default();
            eprintln!("[{:>4.0}s] up {up} failed {failed} | gw rss {} MB", since.elapsed().as_secs_f64(), gw.rss_kb / 1024);
            last_progress = Instant::now();
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

fn window_text(window: usize) -> String {
    match window {
        0 => "all at once".to_string(),
        n => format!("{n} at a time"),
    }
}

/// `--idle`: opens `--devices` connections at `--connect-rate`, holds them `idle` seconds,
/// and reports how many stayed up, why the others failed, and the gateway's RSS.
async fn idle_fleet(args: Args, idle: f64) -> anyhow::Result<()> {
    anyhow::ensure!(!args.in_process, "--idle measures a gateway in its own process: give --mqtt and --gateway-pid, not --in-process");
    anyhow::ensure!(
        idle < f64::from(args.keep_alive),
        "--idle {idle} must be shorter than --keep-alive {}, or the locks would have to ping",
        args.keep_alive
    );
    let args = Arc::new(args);
    let run = format!("{:x}", wall_us() % 0xffff_ffff);
    let counts = Arc::new(IdleCounts::default());
    let window = Arc::new(Semaphore::new(if args.window > 0 { args.window } else { Semaphore::MAX_PERMITS }));
    let (phase_tx, phase_rx) = watch::channel(0);
    let gw_before = args.gateway_pid.and_then(sample_proc);
    let self_before = sample_proc(std::process::id());

    let started = Instant::now();
    let mut tasks = tokio::task::JoinSet::new();
    for i in 0..args.devices {
        let client_id = format!("lg{run}-{i}");
        tasks.spawn(idle_lock(args.clone(), i, client_id, counts.clone(), window.clone(), phase_rx.clone()));
        if args.connect_rate > 0.0 {
            tokio::time::sleep_until((started + Duration::from_secs_f64((i + 1) as f64 / args.connect_rate)).into()).await;
        }
    }
    // Every lock is connected, or has failed; failures are collected as they come.
    let mut failures: std::collections::BTreeMap<String, u64> = Default::default();
    let all_up = |counts: &IdleCounts| counts.connected.load(Ordering::Relaxed);
    let connect_secs = wait_for_locks(&mut tasks, &mut failures, &args, started, args.devices, || all_up(&counts)).await;
    let connected_all = all_up(&counts);
    let gw_connected = args.gateway_pid.and_then(sample_proc);

    let commands =
        (args.idle_commands > 0.0).then(|| tokio::spawn(commands_among_idle_locks(args.clone(), run.clone(), args.idle_commands, idle)));
    tokio::time::sleep(Duration::from_secs_f64(idle)).await;
    while let Some(joined) = tasks.try_join_next() {
        record_failure(&mut failures, joined);
    }
    let still_connected = all_up(&counts);
    let gw_idle = args.gateway_pid.and_then(sample_proc);
    let self_idle = sample_proc(std::process::id());
    let commands = match commands {
        Some(task) => Some(task.await??),
        None => None,
    };
    let mut reconnects = Vec::new();
    for round in 1..=args.reconnects {
        let failed_before: u64 = failures.values().sum();
        let holding = counts.connected.load(Ordering::Relaxed);
        counts.reconnected.store(0, Ordering::Relaxed);
        let again = Instant::now();
        phase_tx.send(round)?;
        let back = |counts: &IdleCounts| counts.reconnected.load(Ordering::Relaxed);
        // Done once every lock that held is back, or has failed since.
        let secs = wait_for_locks(&mut tasks, &mut failures, &args, again, holding + failed_before as usize, || back(&counts)).await;
        let gw_back = args.gateway_pid.and_then(sample_proc);
        tokio::time::sleep(Duration::from_secs_f64(idle)).await;
        reconnects.push((secs, back(&counts), gw_back));
    }
    phase_tx.send(STOP)?;
    while let Some(joined) = tasks.join_next().await {
        record_failure(&mut failures, joined);
    }

    let mb = |kb: u64| kb as f64 / 1024.0;
    let rss = |s: Option<ProcSample>| s.map(|s| json!({ "rss_mb": mb(s.rss_kb), "hwm_mb": mb(s.hwm_kb) }));
    let per_connection_kb = match (gw_before, gw_idle) {
        (Some(b), Some(a)) if still_connected > 0 => json!((a.rss_kb as f64 - b.rss_kb as f64) / still_connected as f64),
        _ => Value::Null,
    };
    let out = json!({
        "label": args.label,
        "target": args.mqtt,
        "config": {
            "devices": args.devices,
            "connect_rate": args.connect_rate,
            "source_addrs": args.source_addrs,
            "keep_alive_s": args.keep_alive,
            "idle_s": idle,
            "subscribe": !args.no_subscribe,
            "park": args.park,
        },
        "connect_seconds": connect_secs,
        "connected": connected_all,
        "connected_after_idle": still_connected,
        "window": args.window,
        "reconnects": reconnects.iter().map(|(secs, back, gw)| json!({ "seconds": secs, "reconnected": back, "gateway": rss(*gw) })).collect::<Vec<_>>(),
        "commands": commands.as_ref().map(|(latency, sent)| json!({
            "rate": args.idle_commands,
            "sent": sent,
            "received": latency.len(),
            "latency_ms": percentiles(latency, 1000.0),
        })),
        "failures": failures,
        "gateway": {
            "pid": args.gateway_pid,
            "before": rss(gw_before),
            "connected": rss(gw_connected),
            "after_idle": rss(gw_idle),
            "rss_kb_per_connection": per_connection_kb,
        },
        "loadgen_rss_mb": match (self_before, self_idle) {
            (Some(b), Some(a)) => json!({ "before": mb(b.rss_kb), "after_idle": mb(a.rss_kb) }),
            _ => Value::Null,
        },
    });
    let fmt_rss = |v: &Value| match v.as_object() {
        Some(_) => format!("RSS {:.0} MB (peak {:.0} MB)", v["rss_mb"].as_f64().unwrap_or(0.0), v["hwm_mb"].as_f64().unwrap_or(0.0)),
        None => "-".into(),
    };
    if !args.label.is_empty() {
        println!("== {}", args.label);
    }
    let g = &out["gateway"];
    let what = if args.park { "parked session" } else { "connection" };
    println!(
        "idle locks                  {} at {}/s from {} source addresses, held {idle} s{}{}",
        args.devices,
        args.connect_rate,
        args.source_addrs.max(1),
        if args.no_subscribe { ", not subscribed" } else { "" },
        if args.park { ", persistent sessions parked (clean session 0, then DISCONNECT)" } else { "" }
    );
    println!("connected                   {connected_all} in {connect_secs:.1} s; {still_connected} {what}s after the hold");
    let failed: u64 = failures.values().sum();
    println!("failed                      {failed}");
    for (why, n) in &failures {
        println!("  {n:>8} x {why}");
    }
    for (secs, back, gw) in &reconnects {
        println!(
            "reconnected                 {back} in {secs:.1} s ({}); {}",
            window_text(args.window),
            fmt_rss(&rss(*gw).unwrap_or_default())
        );
    }
    if let Some((latency, sent)) = &commands {
        let at = args.idle_commands;
        println!(
            "commands among idle locks   {} of {sent} received at {at}/s, latency {}",
            latency.len(),
            fmt_latency(&percentiles(latency, 1.0))
        );
    }
    println!("gateway before              {}", fmt_rss(&g["before"]));
    println!("gateway all connected       {}", fmt_rss(&g["connected"]));
    println!("gateway after the hold      {}", fmt_rss(&g["after_idle"]));
    if let Some(kb) = per_connection_kb.as_f64() {
        println!("gateway RSS per {what:<11} {kb:.1} KB (RSS after the hold - before, / {what}s)");
    }
    if let Some(path) = &args.json {
        std::fs::write(path, serde_json::to_string_pretty(&out)? + "\n")?;
    }
    anyhow::ensure!(failed == 0, "{failed} of {} idle connections failed (see above)", args.devices);
    Ok(())
}

// ---------------------------------------------------------------------------------------
// Results

fn percentiles(h: &Histogram<u64>, scale: f64) -> Value {
    if h.is_empty() {
        return Value::Null;
    }
    let q = |q: f64| h.value_at_quantile(q) as f64 / scale;
    json!({
        "count": h.len(),
        "mean": h.mean() / scale,
        "p50": q(0.50),
        "p90": q(0.90),
        "p99": q(0.99),
        "p99_9": q(0.999),
        "max": h.max() as f64 / scale,
    })
}

fn fmt_latency(v: &Value) -> String {
    if v.is_null() {
        return "-".into();
    }
    let ms = |k: &str| v[k].as_f64().unwrap_or(0.0) / 1000.0;
    format!(
        "p50 {:.2} / p90 {:.2} / p99 {:.2} / p99.9 {:.2} / max {:.2} ms (n={})",
        ms("p50"),
        ms("p90"),
        ms("p99"),
        ms("p99_9"),
        ms("max"),
        v["count"]
    )
}

fn tally_json(t: Option<&TopicTally>, expected: u64, started: Instant) -> Value {
    let Some(t) = t else { return Value::Null };
    let span = t.last_at.map_or(0.0, |l| l.duration_since(started).as_secs_f64());
    json!({
        "expected": expected,
        "received": t.received,
        "unique": t.unique,
        "duplicates": t.duplicates,
        // Not read is missing, whether the broker deleted it unread or never had it.
        "missing": expected.saturating_sub(t.unique),
        "deleted_unread": t.unread,
        "unparsed": t.unparsed,
        "other_runs": t.foreign,
        "records_per_s": if span > 0.0 { t.received as f64 / span } else { 0.0 },
        "e2e_latency_us": percentiles(&t.e2e_us, 1.0),
    })
}

// ---------------------------------------------------------------------------------------

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let mut args = Args::parse();
    anyhow::ensure!(args.qos <= 2, "--qos must be 0, 1 or 2");
    anyhow::ensure!(args.devices > 0, "--devices must be at least 1");
    anyhow::ensure!(args.source_addrs <= 253, "--source-addrs must be at most 253 (127.0.0.2 to 127.0.0.254)");
    if let Some(idle) = args.idle {
        return idle_fleet(args, idle).await;
    }
    anyhow::ensure!(args.messages > 0 || args.duration > 0.0, "give --messages or --duration (or both) so the run ends");
    init_logging();

    // The mock cluster's retention is what the read guard works around (see `ReadGuard`).
    let guarded = args.mock_kafka && !args.no_consume;
    let partitions = args.kafka_partitions.unwrap_or(if guarded { 32 } else { 1 });
    anyhow::ensure!(partitions >= 1, "--kafka-partitions must be at least 1");
    let mock = if args.mock_kafka {
        anyhow::ensure!(args.in_process, "--mock-kafka needs --in-process (the mock cluster lives in this process)");
        let cluster = rdkafka::mocking::MockCluster::new(1)?;
        cluster.create_topic(STATE_TOPIC, partitions, 1)?;
        cluster.create_topic(COMMAND_TOPIC, partitions, 1)?;
        // The gateway's cluster topics (the mock cluster cannot be asked to create them).
        for (topic, partitions) in hookline::cluster::topics(&Default::default()) {
            cluster.create_topic(&topic, partitions, 1)?;
        }
        args.kafka = Some(cluster.bootstrap_servers());
        Some(cluster)
    } else {
        None
    };
    let data_dir = tempfile::tempdir()?;
    let gateway = if args.in_process {
        let port = std::net::TcpListener::bind("127.0.0.1:0")?.local_addr()?.port();
        args.mqtt = format!("127.0.0.1:{port}");
        let mut config = hookline::Config::default();
        config.broker.listen = args.mqtt.parse()?;
        config.rules.dir = args.rules.clone();
        config.rules.workers = args.workers;
        config.data = data_dir.path().to_path_buf();
        // Simulated locks connect without credentials; no admin endpoint in here.
        config.auth.anonymous = true;
        config.admin.enabled = false;
        if let Some(kafka) = &args.kafka {
            config.sink.kind = Some(hookline::config::SinkKind::Kafka);
            config.kafka.bootstrap_servers = kafka.clone();
        }
        if let Some(linger) = args.linger_ms {
            config.kafka.linger_ms = linger;
        }
        if guarded {
            // librdkafka's default, named: the read guard computes partitions with it.
            config.kafka.properties.insert("partitioner".into(), "consistent_random".into());
        }
        args.gateway_pid = Some(std::process::id());
        Some(hookline::Gateway::start(config.validate()?).await?)
    } else {
        None
    };

    let per_lock_rate = match args.total_rate {
        Some(total) => total / args.devices as f64,
        None => args.rate,
    };
    let run = format!("{:x}", wall_us() % 0xffff_ffff);
    let shared = Arc::new(Shared {
        base: Instant::now(),
        state_sent: AtomicU64::new(0),
        state_acked: AtomicU64::new(0),
        cmd_sent: AtomicU64::new(0),
        cmd_acked: AtomicU64::new(0),
        cmd_received: AtomicU64::new(0),
        next_cmd_seq: AtomicU64::new(0),
        connected: AtomicUsize::new(0),
        errors: AtomicU64::new(0),
        last_state_ack_ns: AtomicU64::new(0),
        kafka_state: AtomicU64::new(0),
        kafka_command: AtomicU64::new(0),
        first_error: Mutex::new(None),
    });
    let (start_tx, start_rx) = watch::channel(None);
    let (disconnect_tx, disconnect_rx) = watch::channel(false);
    let publishing_over = Arc::new(AtomicBool::new(false));
    let guard = guarded.then(|| {
        let lock_ids: Vec<String> = (0..args.devices).map(|i| format!("lg{run}-{i}")).collect();
        ReadGuard::new(&lock_ids, partitions, args.payload)
    });
    let ctx = Arc::new(Ctx {
        args: args.clone(),
        shared: shared.clone(),
        guard,
        run: run.clone(),
        pad: Pad::new(4 << 20),
        start: start_rx,
        disconnect: disconnect_rx,
        publishing_over: publishing_over.clone(),
    });

    // The consumer is assigned before the first publish, at the end offsets.
    if let (Some(bootstrap), false) = (&args.kafka, args.mock_kafka) {
        ensure_topics(bootstrap, partitions).await?;
    }
    let mut watermarks = match &args.kafka {
        Some(bootstrap) => Some(Watermarks::new(bootstrap)?),
        None => None,
    };
    // Warm-up: the gateway's producer fetches topic metadata (and its idempotent
    // producer id) at the first record, which would show as a latency spike.
    if args.warmup > 0 {
        warm_up(&args.mqtt, &format!("lg{run}-warmup"), args.warmup).await?;
        if let Some(w) = watermarks.take() {
            watermarks = Some(
                tokio::task::spawn_blocking(move || -> anyhow::Result<Watermarks> {
                    // At most 3 s: a broker whose watermark trails by a batch never counts it.
                    let deadline = Instant::now() + Duration::from_secs(3);
                    while Instant::now() < deadline {
                        let added = w.added()?;
                        // Some brokers' high watermark stops at the last batch's base offset.
                        if added[0] >= 1 && added[1] >= 1 {
                            break;
                        }
                        std::thread::sleep(Duration::from_millis(20));
                    }
                    let mut w = w;
                    w.start = w.totals()?;
                    Ok(w)
                })
                .await??,
            );
        }
    }
    let reader = match (&args.kafka, args.no_consume) {
        (Some(bootstrap), false) => Some(KafkaReader::new(bootstrap, &args.consumer_props)?),
        _ => None,
    };

    // Connect everyone, at --connect-rate.
    let connect_started = Instant::now();
    let mut tasks = Vec::new();
    let total_clients = args.devices + args.commanders;
    for i in 0..total_clients {
        let plan = if i < args.devices {
            ClientPlan { role: Role::Lock, index: i, client_id: ctx.lock_id(i), qos: args.qos, rate: per_lock_rate, limit: args.messages }
        } else {
            let c = i - args.devices;
            ClientPlan { role: Role::Commander, index: c, client_id: format!("lg{run}-app-{c}"), qos: 1, rate: args.command_rate, limit: 0 }
        };
        let ctx = ctx.clone();
        tasks.push(tokio::spawn(async move {
            let id = plan.client_id.clone();
            let result = run_client(ctx.clone(), plan).await;
            if let Err(e) = &result {
                ctx.shared.error(format!("client {id}: {e:#}"));
            }
            result
        }));
        if args.connect_rate > 0.0 {
            tokio::time::sleep_until((connect_started + Duration::from_secs_f64((i + 1) as f64 / args.connect_rate)).into()).await;
        }
    }
    let connect_deadline = Instant::now() + Duration::from_secs(60);
    while shared.connected.load(Ordering::Relaxed) < total_clients {
        anyhow::ensure!(
            Instant::now() < connect_deadline,
            "only {} of {total_clients} clients connected within 60 s",
            shared.connected.load(Ordering::Relaxed)
        );
        if let Some(e) = shared.first_error.lock().unwrap().clone() {
            anyhow::bail!("{e}");
        }
        if tasks.iter().any(|t| t.is_finished()) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let connect_time = connect_started.elapsed();

    let gw_pid = args.gateway_pid;
    let gw_before = gw_pid.and_then(sample_proc);
    let kafka_before = args.kafka_pid.and_then(sample_proc);
    let self_before = sample_proc(std::process::id());
    let started = Instant::now();
    let started_ns = shared.now_ns();
    start_tx.send(Some(started))?;

    // Kafka consumer thread: runs until every expected record is in or the drain ends.
    let expected_state = Arc::new(AtomicU64::new(u64::MAX));
    let expected_cmd = Arc::new(AtomicU64::new(u64::MAX));
    let drain_deadline_ns = Arc::new(AtomicU64::new(u64::MAX));
    let consumer_thread = reader.map(|reader| {
        let (ctx, es, ec, dd) = (ctx.clone(), expected_state.clone(), expected_cmd.clone(), drain_deadline_ns.clone());
        std::thread::spawn(move || {
            reader.run(&ctx, |s, c| {
                // Records deleted unread can never come: counting them ends the wait.
                let all = s.unique + s.unread >= es.load(Ordering::Relaxed) && c.unique + c.unread >= ec.load(Ordering::Relaxed);
                let deadline = dd.load(Ordering::Relaxed);
                // Once publishing is over: stop at the deadline, or after 5 s without a
                // new record (records the gateway dropped will never come).
                let quiet = deadline != u64::MAX && {
                    let last = s.last_at.max(c.last_at).map_or(0, |t| t.duration_since(ctx.shared.base).as_nanos() as u64);
                    let publish_over = deadline - (ctx.args.drain_timeout * 1e9) as u64;
                    ctx.shared.now_ns().saturating_sub(last.max(publish_over)) >= 5_000_000_000
                };
                all || quiet || ctx.shared.now_ns() >= deadline
            })
        })
    });

    // Progress line every second; publishing ends when every lock's writer is done.
    let progress = {
        let (shared, quiet) = (shared.clone(), args.quiet);
        let metrics = gateway.as_ref().map(|g| g.metrics().clone());
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(Duration::from_secs(1));
            tick.tick().await;
            let (mut last_acked, mut last_kafka) = (0, 0);
            let mut peak_rss_kb = 0;
            loop {
                tick.tick().await;
                let acked = shared.state_acked.load(Ordering::Relaxed);
                let sent = shared.state_sent.load(Ordering::Relaxed);
                let kafka = match &metrics {
                    Some(m) => m.records.total(Outcome::Delivered),
                    None => shared.kafka_state.load(Ordering::Relaxed) + shared.kafka_command.load(Ordering::Relaxed),
                };
                let gw = gw_pid.and_then(sample_proc).unwrap_or_default();
                peak_rss_kb = peak_rss_kb.max(gw.rss_kb);
                if !quiet {
                    eprintln!(
                        "[{:>4.0}s] state sent {sent} acked {acked} ({:.1}k/s) | cmd sent {} acked {} rx {} | kafka {kafka} ({:.1}k/s) | gw cpu {:.0} s rss {} MB",
                        started.elapsed().as_secs_f64(),
                        (acked - last_acked) as f64 / 1000.0,
                        shared.cmd_sent.load(Ordering::Relaxed),
                        shared.cmd_acked.load(Ordering::Relaxed),
                        shared.cmd_received.load(Ordering::Relaxed),
                        (kafka - last_kafka) as f64 / 1000.0,
                        gw.cpu_s,
                        gw.rss_kb / 1024,
                    );
                }
                last_acked = acked;
                last_kafka = kafka;
            }
        })
    };

    // Locks finish on their own (count or duration); then commanders stop.
    let (locks, commanders): (Vec<_>, Vec<_>) = tasks.into_iter().enumerate().partition(|(i, _)| *i < args.devices);
    let watch_locks = {
        let shared = shared.clone();
        let (messages, devices, qos) = (args.messages, args.devices as u64, args.qos);
        let duration = args.duration;
        let publishing_over = publishing_over.clone();
        async move {
            // Publishing is over when every lock has sent its count (and, QoS > 0, got
            // its acks) or the duration has passed and the window drained.
            loop {
                let sent = shared.state_sent.load(Ordering::Relaxed);
                let acked = shared.state_acked.load(Ordering::Relaxed);
                let count_done = messages > 0 && sent >= messages * devices && (qos == 0 || acked >= sent);
                let time_done = duration > 0.0 && started.elapsed().as_secs_f64() >= duration;
                let failed = shared.errors.load(Ordering::Relaxed) > 0;
                if count_done || time_done || failed {
                    publishing_over.store(true, Ordering::Relaxed);
                    return;
                }
                tokio::time::sleep(Duration::from_millis(2)).await;
            }
        }
    };
    watch_locks.await;
    // Give commands in flight a moment to reach their locks and be acknowledged.
    let cmd_deadline = Instant::now() + Duration::from_secs(5);
    while args.commanders > 0
        && shared.cmd_received.load(Ordering::Relaxed) < shared.cmd_acked.load(Ordering::Relaxed)
        && Instant::now() < cmd_deadline
    {
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    // Acks of the last state reports (duration-bounded runs).
    let ack_deadline = Instant::now() + Duration::from_secs_f64(args.drain_timeout);
    while args.qos > 0
        && shared.state_acked.load(Ordering::Relaxed) < shared.state_sent.load(Ordering::Relaxed)
        && Instant::now() < ack_deadline
        && shared.errors.load(Ordering::Relaxed) == 0
    {
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    let publish_end_ns = match args.qos {
        0 => shared.now_ns(),
        _ => shared.last_state_ack_ns.load(Ordering::Relaxed).max(started_ns + 1),
    };
    let publish_secs = (publish_end_ns - started_ns) as f64 / 1e9;
    let gw_after_publish = gw_pid.and_then(sample_proc);
    let kafka_after_publish = args.kafka_pid.and_then(sample_proc);
    let self_after_publish = sample_proc(std::process::id());
    disconnect_tx.send(true)?;
    let mut results = Vec::new();
    for (_, task) in locks.into_iter().chain(commanders) {
        // A failed client has already reported its error.
        if let Ok(r) = task.await? {
            results.push(r);
        }
    }

    // Kafka: expected records are the accepted publishes (QoS 0: the sent ones).
    let state_accepted = if args.qos == 0 { shared.state_sent.load(Ordering::Relaxed) } else { shared.state_acked.load(Ordering::Relaxed) };
    let cmd_expected = shared.cmd_received.load(Ordering::Relaxed);
    expected_state.store(state_accepted, Ordering::Relaxed);
    expected_cmd.store(cmd_expected, Ordering::Relaxed);
    drain_deadline_ns.store(shared.now_ns() + (args.drain_timeout * 1e9) as u64, Ordering::Relaxed);
    // In process, also wait for the delivery reports (acks=all) of every record.
    let mut delivered_secs = None;
    if let Some(gateway) = &gateway {
        let m = gateway.metrics();
        let expected = state_accepted + if args.kafka.is_some() { cmd_expected } else { 0 };
        let deadline = Instant::now() + Duration::from_secs_f64(args.drain_timeout);
        let delivered = || m.records.total(Outcome::Delivered);
        let (mut last, mut last_change) = (delivered(), started.elapsed().as_secs_f64());
        // Until every record is reported, or nothing moved for 2 s (dropped hook events
        // never become records), or the deadline.
        while last < expected && Instant::now() < deadline && started.elapsed().as_secs_f64() - last_change < 2.0 {
            tokio::time::sleep(Duration::from_millis(1)).await;
            let now = delivered();
            if now != last {
                (last, last_change) = (now, started.elapsed().as_secs_f64());
            }
        }
        delivered_secs = Some(last_change);
    }
    // Records in Kafka, from the high watermarks (does not depend on the consumer).
    let in_kafka = match watermarks {
        Some(w) => {
            let (expect_state, expect_cmd) = (state_accepted, cmd_expected);
            let deadline = Instant::now() + Duration::from_secs_f64(args.drain_timeout);
            Some(
                tokio::task::spawn_blocking(move || -> anyhow::Result<([u64; 2], f64)> {
                    // Ends when every record is counted, or when the counts have not moved
                    // for 2 s (some Kafka-compatible brokers report the last batch's base
                    // offset as the high watermark, so the count may stop short), or at
                    // the drain deadline.
                    let (mut last, mut last_change) = (w.added()?, started.elapsed().as_secs_f64());
                    loop {
                        let added = w.added()?;
                        let at = started.elapsed().as_secs_f64();
                        if added != last {
                            (last, last_change) = (added, at);
                        }
                        if (added[0] >= expect_state && added[1] >= expect_cmd) || Instant::now() >= deadline {
                            return Ok((added, at));
                        }
                        if at - last_change >= 2.0 {
                            return Ok((added, last_change));
                        }
                        std::thread::sleep(Duration::from_millis(10));
                    }
                })
                .await??,
            )
        }
        None => None,
    };
    let tallies = match consumer_thread {
        Some(thread) => {
            Some(tokio::task::spawn_blocking(move || thread.join()).await?.map_err(|_| anyhow::anyhow!("consumer thread panicked"))?)
        }
        None => None,
    };
    progress.abort();
    let gw_end = gw_pid.and_then(sample_proc);

    // ----- summary
    let mut lock_ack = latency_histogram();
    let mut cmd_ack = latency_histogram();
    let mut cmd_delivery = latency_histogram();
    for r in &results {
        match r.role {
            Role::Lock => {
                lock_ack.add(&r.ack_latency_ns).ok();
                cmd_delivery.add(&r.command_delivery_us).ok();
            }
            Role::Commander => {
                cmd_ack.add(&r.ack_latency_ns).ok();
            }
        }
    }
    let state_sent = shared.state_sent.load(Ordering::Relaxed);
    let state_acked = shared.state_acked.load(Ordering::Relaxed);
    let cpu = |before: Option<ProcSample>, after: Option<ProcSample>| match (before, after) {
        (Some(b), Some(a)) => json!({
            "cpu_seconds": a.cpu_s - b.cpu_s,
            "cpu_percent_of_one_core": 100.0 * (a.cpu_s - b.cpu_s) / publish_secs,
        }),
        _ => Value::Null,
    };
    let gateway_json = match gw_pid {
        Some(pid) => json!({
            "pid": pid,
            "in_process_with_loadgen": gateway.is_some(),
            "publish_phase": cpu(gw_before, gw_after_publish),
            "cpu_seconds_total_run": match (gw_before, gw_end) { (Some(b), Some(e)) => json!(e.cpu_s - b.cpu_s), _ => Value::Null },
            "rss_mb_end": gw_end.map(|s| s.rss_kb as f64 / 1024.0),
            "peak_rss_mb": gw_end.map(|s| s.hwm_kb as f64 / 1024.0),
        }),
        None => Value::Null,
    };
    let (state_tally, cmd_tally) = match &tallies {
        Some((s, c)) => (Some(s), Some(c)),
        None => (None, None),
    };
    let metrics_json = gateway.as_ref().map(|g| json!(g.metrics().snapshot()));
    let out = json!({
        "label": args.label,
        "target": if args.in_process { format!("in-process gateway ({})", if args.mock_kafka { "mock Kafka".to_string() } else { args.kafka.clone().map_or("file sink".into(), |k| format!("Kafka {k}")) }) } else { args.mqtt.clone() },
        "config": {
            "devices": args.devices,
            "qos": args.qos,
            "payload_bytes": args.payload,
            "messages_per_device": args.messages,
            "duration_s": args.duration,
            "rate_per_device": per_lock_rate,
            "inflight": args.inflight,
            "commanders": args.commanders,
            "command_rate_per_commander": args.command_rate,
            "kafka": args.kafka,
            "kafka_partitions": partitions,
        },
        "connect_seconds": connect_time.as_secs_f64(),
        "state": {
            "sent": state_sent,
            "acked": state_acked,
            "publish_seconds": publish_secs,
            "throughput_msg_s": if args.qos == 0 { state_sent as f64 / publish_secs } else { state_acked as f64 / publish_secs },
            "ack_latency_us": percentiles(&lock_ack, 1000.0),
        },
        "commands": {
            "sent": shared.cmd_sent.load(Ordering::Relaxed),
            "acked_by_broker": shared.cmd_acked.load(Ordering::Relaxed),
            "received_by_locks": shared.cmd_received.load(Ordering::Relaxed),
            "ack_latency_us": percentiles(&cmd_ack, 1000.0),
            "delivery_latency_us": percentiles(&cmd_delivery, 1.0),
        },
        "kafka": {
            "message_state": tally_json(state_tally, state_accepted, started),
            "message_command": tally_json(cmd_tally, cmd_expected, started),
            "in_kafka": in_kafka.map(|(added, secs)| json!({
                "message_state_records": added[0],
                "message_command_records": added[1],
                "seconds_from_first_publish": secs,
                "records_per_s": (added[0] + added[1]) as f64 / secs,
            })),
            "read_guard": ctx.guard.as_ref().map(|g| json!({
                "partitions": partitions,
                "budget_records_per_partition": g.budget,
                "locks_held_seconds": g.held_ns.load(Ordering::Relaxed) as f64 / 1e9,
                "gave_up": g.gave_up.load(Ordering::Relaxed),
            })),
            "delivery_reports_per_s": match (&gateway, delivered_secs) {
                (Some(g), Some(secs)) => json!(g.metrics().records.total(Outcome::Delivered) as f64 / secs),
                _ => Value::Null,
            },
        },
        "gateway": gateway_json,
        "kafka_broker": args.kafka_pid.map(|pid| json!({
            "pid": pid,
            "publish_phase": cpu(kafka_before, kafka_after_publish),
            "peak_rss_mb": kafka_after_publish.map(|s| s.hwm_kb as f64 / 1024.0),
        })),
        "loadgen_cpu": if gateway.is_none() { cpu(self_before, self_after_publish) } else { Value::Null },
        "gateway_metrics": metrics_json,
        "errors": shared.errors.load(Ordering::Relaxed),
        "first_error": shared.first_error.lock().unwrap().clone(),
    });
    print_table(&out);
    if let Some(path) = &args.json {
        std::fs::write(path, serde_json::to_string_pretty(&out)? + "\n")?;
    }
    if let Some(gateway) = gateway {
        gateway.shutdown().await?;
    }
    // The gateway's producer outlives `shutdown` (rumqttd keeps the codecs); keep the
    // mock cluster up until the process exits so it does not log the broker going away.
    std::mem::forget(mock);
    anyhow::ensure!(shared.errors.load(Ordering::Relaxed) == 0, "the run had errors (see above)");
    Ok(())
}

/// Warnings of the in-process gateway to stderr, filtered as the hookline binary does
/// (`src/cli`): rumqttd's per-publish spans are never recorded, so the in-process
/// gateway pays what the binary pays. `RUST_LOG` overrides the level (default warn).
fn init_logging() {
    use tracing_subscriber::filter::{EnvFilter, FilterExt, FilterFn};
    use tracing_subscriber::layer::SubscriberExt;
    use tracing_subscriber::util::SubscriberInitExt;
    use tracing_subscriber::Layer;

    let levels = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("warn"));
    let no_rumqttd_spans = FilterFn::new(|meta| !(meta.is_span() && meta.target().starts_with("rumqttd")));
    let layer = tracing_subscriber::fmt::layer().with_writer(std::io::stderr).with_ansi(false);
    let _ = tracing_subscriber::registry().with(layer.with_filter(levels.and(no_rumqttd_spans))).try_init();
}

fn print_table(v: &Value) {
    let mut rows: Vec<(String, String)> = Vec::new();
    let mut row = |k: &str, val: String| rows.push((k.to_string(), val));
    let c = &v["config"];
    row("target", v["target"].as_str().unwrap_or("").to_string());
    row(
        "load",
        format!(
            "{} locks, QoS {}, {} B, {} msg/lock{}{}, inflight {}",
            c["devices"],
            c["qos"],
            c["payload_bytes"],
            c["messages_per_device"],
            if c["duration_s"].as_f64() > Some(0.0) { format!(", {} s max", c["duration_s"]) } else { String::new() },
            match c["rate_per_device"].as_f64() {
                Some(r) if r > 0.0 => format!(", {:.0} msg/s/lock", r),
                _ => ", max rate".into(),
            },
            c["inflight"],
        ),
    );
    let s = &v["state"];
    row("state reports sent / acked", format!("{} / {} in {:.2} s", s["sent"], s["acked"], s["publish_seconds"].as_f64().unwrap_or(0.0)));
    row("publish throughput", format!("{:.0} msg/s", s["throughput_msg_s"].as_f64().unwrap_or(0.0)));
    row("PUBACK/PUBCOMP latency", fmt_latency(&s["ack_latency_us"]));
    if c["commanders"].as_u64() > Some(0) {
        let cm = &v["commands"];
        row("commands sent / acked / received", format!("{} / {} / {}", cm["sent"], cm["acked_by_broker"], cm["received_by_locks"]));
        row("command delivery latency", fmt_latency(&cm["delivery_latency_us"]));
    }
    for topic in [STATE_TOPIC, COMMAND_TOPIC] {
        let k = &v["kafka"][topic];
        if k.is_null() || (topic == COMMAND_TOPIC && c["commanders"].as_u64() == Some(0)) {
            continue;
        }
        row(
            &format!("kafka {topic}"),
            format!(
                "{} received / {} expected: {} missing ({} of them deleted unread by the broker), {} duplicates ({:.0} records/s)",
                k["received"],
                k["expected"],
                k["missing"],
                k["deleted_unread"],
                k["duplicates"],
                k["records_per_s"].as_f64().unwrap_or(0.0),
            ),
        );
        row(&format!("end-to-end latency {topic}"), fmt_latency(&k["e2e_latency_us"]));
    }
    let g = &v["kafka"]["read_guard"];
    if !g.is_null() {
        row(
            "read guard (mock retention)",
            format!(
                "{} unread records per partition at most, {} partitions; locks waited for the reader {:.2} s in all{}",
                g["budget_records_per_partition"],
                g["partitions"],
                g["locks_held_seconds"].as_f64().unwrap_or(0.0),
                if g["gave_up"].as_bool() == Some(true) { "; gave up on a stalled reader" } else { "" },
            ),
        );
    }
    let k = &v["kafka"]["in_kafka"];
    if !k.is_null() {
        row(
            "records in Kafka (watermarks)",
            format!(
                "{} message_state + {} message_command in {:.2} s = {:.0} records/s (first publish to last record stored)",
                k["message_state_records"],
                k["message_command_records"],
                k["seconds_from_first_publish"].as_f64().unwrap_or(0.0),
                k["records_per_s"].as_f64().unwrap_or(0.0)
            ),
        );
    }
    if let Some(rate) = v["kafka"]["delivery_reports_per_s"].as_f64() {
        row("Kafka delivery reports", format!("{rate:.0} records/s (first publish to last report)"));
    }
    let g = &v["gateway"];
    if !g.is_null() {
        row(
            "gateway CPU (publish phase)",
            format!(
                "{:.0}% of one core ({:.1} s){}",
                g["publish_phase"]["cpu_percent_of_one_core"].as_f64().unwrap_or(0.0),
                g["publish_phase"]["cpu_seconds"].as_f64().unwrap_or(0.0),
                if g["in_process_with_loadgen"].as_bool() == Some(true) { ", includes the load generator" } else { "" }
            ),
        );
        row("gateway peak RSS", format!("{:.0} MB", g["peak_rss_mb"].as_f64().unwrap_or(0.0)));
    }
    if !v["kafka_broker"].is_null() {
        row(
            "Kafka broker CPU (publish phase)",
            format!(
                "{:.0}% of one core, peak RSS {:.0} MB",
                v["kafka_broker"]["publish_phase"]["cpu_percent_of_one_core"].as_f64().unwrap_or(0.0),
                v["kafka_broker"]["peak_rss_mb"].as_f64().unwrap_or(0.0)
            ),
        );
    }
    if !v["loadgen_cpu"].is_null() {
        row("load generator CPU", format!("{:.0}% of one core", v["loadgen_cpu"]["cpu_percent_of_one_core"].as_f64().unwrap_or(0.0)));
    }
    if let Some(m) = v["gateway_metrics"].as_object() {
        let get = |k: &str| m.get(k).and_then(Value::as_i64).unwrap_or(0);
        row(
            "gateway counters",
            format!(
                "rule_calls {} routes {} records sent {} delivered {} failed {} spool dropped {}",
                get("rule_calls"),
                get("rule_routes"),
                get("records_sent"),
                get("records_delivered"),
                get("records_failed"),
                get("spool_dropped")
            ),
        );
    }
    row("errors", format!("{}{}", v["errors"], v["first_error"].as_str().map(|e| format!(" (first: {e})")).unwrap_or_default()));
    let width = rows.iter().map(|(k, _)| k.len()).max().unwrap_or(0);
    let label = v["label"].as_str().unwrap_or("");
    if !label.is_empty() {
        println!("== {label}");
    }
    for (k, val) in rows {
        println!("{k:<width$}  {val}");
    }
}
