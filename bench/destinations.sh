#!/usr/bin/env bash
# Destinations: state reports per second the gateway delivers into Kafka (a tansu
# process), into RabbitMQ (a rabbitmq-server process, publisher confirms) and into both
# at once, beside a bare librdkafka producer and a bare lapin publisher into the same
# brokers, in one run (examples/destinations_bench.rs). Writes
# bench/results/destinations.md.
#
#   bash bench/destinations.sh          LOCKS=10 MESSAGES=5000 PAYLOAD=1024 to change them
#
# Needs tansu (.ci/install-kafka-tools.sh) and Debian's rabbitmq-server (as .ci/run
# installs them).
set -euo pipefail
cd "$(dirname "$0")/.."
LOCKS=${LOCKS:-10}
MESSAGES=${MESSAGES:-5000}
PAYLOAD=${PAYLOAD:-1024}
TMP=$(mktemp -d)
PIDS=()
cleanup() {
    local pid
    for pid in "${PIDS[@]}"; do kill -- "-$pid" 2>/dev/null || kill "$pid" 2>/dev/null || true; done
    for pid in "${PIDS[@]}"; do wait "$pid" 2>/dev/null || true; done
    rm -rf "$TMP"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
KAFKA_PORT=$(free_port)
AMQP_PORT=$(free_port)

cargo build --release --example destinations_bench

tansu broker --silent --listener-url "tcp://127.0.0.1:$KAFKA_PORT" \
    --advertised-listener-url "tcp://127.0.0.1:$KAFKA_PORT" \
    --storage-engine memory://tansu/ >"$TMP/tansu.log" 2>&1 &
PIDS+=($!)

# Its own process group (setsid): the script starts the Erlang VM as a child.
mkdir -p "$TMP/rabbit"
echo '[].' >"$TMP/rabbit/enabled_plugins"
echo 'loopback_users = none' >"$TMP/rabbit/rabbitmq.conf"
RABBITMQ_NODENAME="hookline-bench-$AMQP_PORT@localhost" RABBITMQ_NODE_PORT=$AMQP_PORT \
    RABBITMQ_DIST_PORT=$(free_port) RABBITMQ_MNESIA_BASE="$TMP/rabbit/mnesia" \
    RABBITMQ_LOG_BASE="$TMP/rabbit/log" RABBITMQ_ENABLED_PLUGINS_FILE="$TMP/rabbit/enabled_plugins" \
    RABBITMQ_CONFIG_FILE="$TMP/rabbit/rabbitmq" RABBITMQ_PID_FILE="$TMP/rabbit/pid" \
    setsid /usr/lib/rabbitmq/bin/rabbitmq-server >"$TMP/rabbit.log" 2>&1 &
PIDS+=($!)
/usr/lib/rabbitmq/bin/rabbitmqctl -n "hookline-bench-$AMQP_PORT@localhost" wait "$TMP/rabbit/pid" --timeout 60 >/dev/null

mkdir -p bench/results
out=bench/results/destinations.md
{
    echo "# Destinations ($(date -u +%Y-%m-%dT%H:%MZ), $(nproc) cores; tansu $(tansu --version 2>/dev/null | head -1), $(dpkg-query -W -f 'RabbitMQ ${Version}' rabbitmq-server))"
    echo
    target/release/examples/destinations_bench --kafka "127.0.0.1:$KAFKA_PORT" \
        --amqp "amqp://guest:guest@127.0.0.1:$AMQP_PORT/%2f" \
        --locks "$LOCKS" --messages "$MESSAGES" --payload "$PAYLOAD"
} | tee "$out"
