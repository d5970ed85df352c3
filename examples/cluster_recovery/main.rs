//! Cluster recovery benchmark: how long commands take to reach their locks, from
//! produce to receipt, in steady state and around each event a cluster lives through
//! (see `drive.rs`), on a real Kafka (`bench/cluster_recovery.sh` runs it on tansu).
//!
//!   cargo run --release --example cluster_recovery -- --kafka 127.0.0.1:9092

#[path = "drive.rs"]
mod drive;

use std::time::Duration;

use clap::Parser;

#[derive(Parser)]
struct Args {
    /// Kafka's bootstrap servers.
    #[arg(long)]
    kafka: String,
    /// The hookline binary.
    #[arg(long, default_value = "target/release/hookline")]
    binary: std::path::PathBuf,
    #[arg(long, default_value_t = 3)]
    nodes: usize,
    #[arg(long, default_value_t = 30)]
    locks: usize,
    /// Partitions of `device_commands`.
    #[arg(long, default_value_t = 6)]
    partitions: i32,
    /// Commands per second.
    #[arg(long, default_value_t = 100)]
    rate: u64,
    /// Seconds of steady state.
    #[arg(long, default_value_t = 20)]
    steady: u64,
    /// Seconds after an event whose commands count for it.
    #[arg(long, default_value_t = 10)]
    window: u64,
    /// Where the nodes' logs and data go (kept); a temporary directory otherwise.
    #[arg(long)]
    dir: Option<std::path::PathBuf>,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let scratch = tempfile::tempdir()?;
    let plan = drive::Plan {
        binary: args.binary,
        bootstrap: args.kafka,
        dir: args.dir.unwrap_or_else(|| scratch.path().to_path_buf()),
        nodes: args.nodes,
        locks: args.locks,
        partitions: args.partitions,
        rate: args.rate,
        steady: Duration::from_secs(args.steady),
        window: Duration::from_secs(args.window),
        settle: Duration::from_secs(3),
    };
    let report = drive::run(&plan).await?;
    println!(
        "{} nodes, {} locks, {} partitions, {} commands/s; time from produce to the lock's receipt\n",
        args.nodes, args.locks, args.partitions, args.rate
    );
    print!("{}", report.table());
    let joined = group_join(&plan.bootstrap)?;
    println!(
        "\nFor comparison, a plain consumer joining a new consumer group (subscribe) on this Kafka had its first record after {joined:?}."
    );
    Ok(())
}

/// How long a new consumer group takes to form and hand a record over: what a
/// downlink shared through a consumer group would wait for on a fresh start.
fn group_join(bootstrap: &str) -> anyhow::Result<Duration> {
    use rdkafka::consumer::{BaseConsumer, Consumer};
    let consumer: BaseConsumer = rdkafka::ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .set("group.id", "join-probe")
        .set("auto.offset.reset", "earliest")
        .create()?;
    let started = std::time::Instant::now();
    consumer.subscribe(&["device_commands"])?;
    while started.elapsed() < Duration::from_secs(120) {
        if let Some(Ok(_)) = consumer.poll(Duration::from_millis(100)) {
            return Ok(started.elapsed());
        }
    }
    anyhow::bail!("no record within 120 s")
}
