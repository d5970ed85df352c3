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
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let dir = tempfile::tempdir()?;
    let plan = drive::Plan {
        binary: args.binary,
        bootstrap: args.kafka,
        dir: dir.path().to_path_buf(),
        nodes: args.nodes,
        locks: args.locks,
        partitions: args.partitions,
        rate: args.rate,
        steady: Duration::from_secs(args.steady),
        window: Duration::from_secs(args.window),
    };
    let report = drive::run(&plan).await?;
    println!(
        "{} nodes, {} locks, {} partitions, {} commands/s; time from produce to the lock's receipt\n",
        args.nodes, args.locks, args.partitions, args.rate
    );
    print!("{}", report.table());
    Ok(())
}
