#!/usr/bin/env bash
# Downlink: commands produced to Kafka (librdkafka's mock cluster) and delivered by the
# gateway to MQTT locks, beside a plain Kafka consumer of the same records (the floor),
# in one process (examples/downlink_bench.rs), on one gateway node and on a cluster of
# NODES (the locks spread over them). For each: a steady rate (latency) and as fast as
# possible (throughput). Writes bench/results/downlink.md.
#
#   bash bench/downlink.sh          LOCKS=50 RATE=1000 COMMANDS=20000 NODES=3 to change them
set -euo pipefail
cd "$(dirname "$0")/.."
LOCKS=${LOCKS:-50}
RATE=${RATE:-1000}
COMMANDS=${COMMANDS:-20000}
NODES=${NODES:-3}
mkdir -p bench/results
cargo build --release --example downlink_bench
out=bench/results/downlink.md
{
    echo "# Downlink ($(date -u +%Y-%m-%dT%H:%MZ), $(nproc) cores)"
    echo
    echo '```'
    for nodes in 1 "$NODES"; do
        target/release/examples/downlink_bench --locks "$LOCKS" --commands $((RATE * 10)) --rate "$RATE" --nodes "$nodes"
        target/release/examples/downlink_bench --locks "$LOCKS" --commands "$COMMANDS" --nodes "$nodes"
    done
    echo '```'
} | tee "$out"
