//! The cluster's recovery as a lock sees it (see `examples/cluster_recovery/drive.rs`):
//! three gateway processes on tansu, locks with persistent sessions, commands at a
//! steady rate through a lock moving, a node stopped and started again, a node killed
//! and restarted, and a node killed for good. Every command produced reaches its lock;
//! the time each took is printed as a table (`bench/cluster_recovery.sh` measures it
//! at length; times are not asserted here).

#[path = "../../examples/cluster_recovery/drive.rs"]
mod drive;

use std::time::Duration;

use crate::support::tansu::Tansu;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn commands_reach_their_locks_through_every_event_a_cluster_lives_through() {
    let tansu = Tansu::start();
    let dir = tempfile::tempdir().unwrap();
    let plan = drive::Plan {
        binary: env!("CARGO_BIN_EXE_hookline").into(),
        bootstrap: tansu.bootstrap(),
        dir: dir.path().to_path_buf(),
        nodes: 3,
        locks: 9,
        partitions: 6,
        rate: 30,
        steady: Duration::from_secs(3),
        window: Duration::from_secs(3),
        settle: Duration::from_secs(1),
    };
    let report = drive::run(&plan).await.expect("the run completes");
    let table = report.table();
    println!("{table}");
    assert!(report.rows.iter().all(|row| row.commands > 0), "every event had commands in its window:\n{table}");
    assert_eq!(report.lost, 0, "every command produced reached its lock:\n{table}");
}
