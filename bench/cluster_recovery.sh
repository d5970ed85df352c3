#!/usr/bin/env bash
# Cluster recovery: three gateway processes on tansu, 30 locks with persistent sessions,
# 100 commands/s produced to device_commands; each command's time from produce to its
# lock's receipt in steady state and around each event (a lock moving, a node stopped
# and started again, a node killed and restarted, a node killed for good, a fresh
# cluster's first command), beside a plain Kafka consumer of the same records
# (examples/cluster_recovery). Writes bench/results/cluster-recovery.md.
#
#   bash bench/cluster_recovery.sh      NODES=3 LOCKS=30 RATE=100 STEADY=20 WINDOW=10 to change them
set -euo pipefail
cd "$(dirname "$0")/.."
LOG_NAME=recovery
source bench/lib.sh
NODES=${NODES:-3}
LOCKS=${LOCKS:-30}
RATE=${RATE:-100}
STEADY=${STEADY:-20}
WINDOW=${WINDOW:-10}
TANSU=${TANSU_BIN:-tansu}
cargo build --release --bin hookline --example cluster_recovery
port=$(free_port)
"$TANSU" broker --silent --listener-url "tcp://127.0.0.1:$port" --advertised-listener-url "tcp://127.0.0.1:$port" \
    --storage-engine memory://tansu/ >/dev/null 2>&1 &
PIDS+=("$!")
wait_listening "$port"
mkdir -p bench/results
out=bench/results/cluster-recovery.md
log "running: $NODES nodes, $LOCKS locks, $RATE commands/s"
{
    echo "# Cluster recovery ($(date -u +%Y-%m-%dT%H:%MZ), $(nproc) cores, tansu $("$TANSU" --version 2>/dev/null | head -1))"
    echo
    target/release/examples/cluster_recovery --kafka "127.0.0.1:$port" --nodes "$NODES" --locks "$LOCKS" \
        --rate "$RATE" --steady "$STEADY" --window "$WINDOW"
} | tee "$out"
