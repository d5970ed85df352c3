#!/usr/bin/env bash
# The door-lock demo stack without Docker: Kafka (tansu, or yours), the hookline gateway
# (one node, or a cluster of several), the notifier, the monitor, the auditor and the
# lock simulator with every fault.
#
#   examples/door-lock-platform/run-local.sh [options] [-- extra simulator flags]
#
#   --duration SECS   stop everything after SECS (default: run until Ctrl-C)
#   --bin-dir DIR     take hookline and the platform binaries from DIR
#                     (default: build them first, release, the gateway exactly as
#                     README's `cargo run --release` does)
#   --work DIR        logs, audit file, gateway data, config (default: a new temp dir)
#   --rules DIR       the gateway's rules directory (default: the repository's rules/)
#   --nodes N         run N gateway nodes, one cluster sharing the one Kafka (default 1,
#                     or NODES from the environment). Node i (1..N) is gateway@local-i,
#                     MQTT on port MQTT_PORT+i-1, admin on ADMIN's port +i-1, data in
#                     WORK/data-i, log WORK/hookline-i.log. With 1 node: gateway@local,
#                     WORK/data, WORK/hookline.log. There is no load balancer here and
#                     the simulator takes one MQTT address: every lock and the business
#                     app connect to node 1; connect other clients to the other nodes.
#
# Environment: KAFKA=host:port uses that Kafka instead of starting tansu (TANSU_BIN,
# default tansu, on TANSU_PORT, default 9092); MQTT_PORT (1883) and ADMIN
# (127.0.0.1:9180) place the gateway (node 1); NODES (1) as --nodes; REPORT_INTERVAL
# (10) is the locks' reporting interval in seconds, a lock is silent after 2 of them.
set -euo pipefail

REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
DURATION=0
BIN_DIR=""
WORK=""
RULES="$REPO/rules"
NODES=${NODES:-1}
while [ $# -gt 0 ]; do
    case "$1" in
        --duration) DURATION=$2; shift 2 ;;
        --bin-dir) BIN_DIR=$2; shift 2 ;;
        --work) WORK=$2; shift 2 ;;
        --rules) RULES=$2; shift 2 ;;
        --nodes) NODES=$2; shift 2 ;;
        --) shift; break ;;
        *) echo "run-local.sh: unknown option $1 (see the header of this script)" >&2; exit 2 ;;
    esac
done
MQTT_PORT=${MQTT_PORT:-1883}
ADMIN=${ADMIN:-127.0.0.1:9180}
REPORT_INTERVAL=${REPORT_INTERVAL:-10}
TANSU_BIN=${TANSU_BIN:-tansu}
TANSU_PORT=${TANSU_PORT:-9092}

note() { echo "run-local.sh: $*" >&2; }

case "$NODES" in
    '' | *[!0-9]* | 0*) note "error: --nodes (NODES) must be a whole number from 1, not '$NODES'"; exit 2 ;;
esac
# ADMIN is host:port; node i's admin port is that port + i - 1.
ADMIN_HOST=${ADMIN%:*}
ADMIN_PORT=${ADMIN##*:}
if [ "$ADMIN_HOST" = "$ADMIN" ] || [ -z "$ADMIN_PORT" ] || [[ $ADMIN_PORT == *[!0-9]* ]]; then
    note "error: ADMIN must be host:port, not '$ADMIN'"
    exit 2
fi
# node_name I, node_data I, node_log I, node_mqtt_port I, node_admin I: node I's
# settings. One node keeps the names of a single gateway.
node_name() { if [ "$NODES" = 1 ]; then echo gateway@local; else echo "gateway@local-$1"; fi; }
node_data() { if [ "$NODES" = 1 ]; then echo "$WORK/data"; else echo "$WORK/data-$1"; fi; }
node_log() { if [ "$NODES" = 1 ]; then echo "$WORK/hookline.log"; else echo "$WORK/hookline-$1.log"; fi; }
node_mqtt_port() { echo $((MQTT_PORT + $1 - 1)); }
node_admin() { echo "$ADMIN_HOST:$((ADMIN_PORT + $1 - 1))"; }

if [ -z "$BIN_DIR" ]; then
    note "building hookline and the platform (release)"
    # One package per build. Built together, the platform's dependencies would add
    # features to the gateway's (hyper, rustls, sha2, ...) and recompile them, wasmtime
    # included; alone, the gateway is the very build of README's `cargo run --release`.
    (cd "$REPO" && cargo build --release --locked -p hookline --bin hookline &&
        cargo build --release --locked -p hookline-platform --bins)
    target=${CARGO_TARGET_DIR:-target}
    case "$target" in /*) ;; *) target=$REPO/$target ;; esac
    BIN_DIR="$target/release"
fi
for bin in hookline notifier monitor auditor simulator; do
    [ -x "$BIN_DIR/$bin" ] || { note "error: $BIN_DIR/$bin missing; build it or give --bin-dir"; exit 1; }
done
WORK=${WORK:-$(mktemp -d /tmp/door-lock-platform.XXXXXX)}
for ((i = 1; i <= NODES; i++)); do
    mkdir -p "$(node_data "$i")"
done

pids=()
stop_all() {
    # Newest first: the simulator stops before the gateways, the gateways before Kafka.
    for ((i = ${#pids[@]} - 1; i >= 0; i--)); do
        kill -TERM "${pids[i]}" 2>/dev/null || true
        wait "${pids[i]}" 2>/dev/null || true
    done
}
trap stop_all EXIT
trap 'exit 130' INT TERM

# wait_port HOST PORT WHAT: until something listens there (20 s at most).
wait_port() {
    for _ in $(seq 200); do
        (exec 3<>"/dev/tcp/$1/$2") 2>/dev/null && return 0
        sleep 0.1
    done
    note "error: $3 not listening on $1:$2 after 20 s; see the logs in $WORK"
    exit 1
}

if [ -z "${KAFKA:-}" ]; then
    KAFKA=127.0.0.1:$TANSU_PORT
    note "starting tansu on $KAFKA (in memory)"
    "$TANSU_BIN" broker --listener-url "tcp://$KAFKA" --advertised-listener-url "tcp://$KAFKA" \
        --storage-engine memory://tansu/ >"$WORK/tansu.log" 2>&1 &
    pids+=($!)
    wait_port 127.0.0.1 "$TANSU_PORT" tansu
fi
# tansu's CLI creates topics on any Kafka; an existing topic is reported and kept.
for topic in message_state message_command alarms audit alarm_state device_commands; do
    "$TANSU_BIN" topic create "$topic" --broker "tcp://$KAFKA" --partitions 1 >>"$WORK/topics.log" 2>&1 ||
        note "topic $topic not created (exists already?); see $WORK/topics.log"
done

# The platform config: the example's four locks, thresholds for a quick demo.
cat >"$WORK/platform.toml" <<TOML
[kafka]
bootstrap_servers = "$KAFKA"

[kafka.properties]
# tansu 0.6 completes a group join only within the rebalance timeout librdkafka sends
# (max.poll.interval.ms, 5 min by default): keep it short so consumers start at once.
"max.poll.interval.ms" = "10000"
"session.timeout.ms" = "6000"

[monitor]
report_interval_secs = $REPORT_INTERVAL
silent_intervals = 2

[auditor]
audit_file = "$WORK/audit.jsonl"
ts_window_secs = 60

$(sed -n '/^\[locks\./,$p' "$REPO/examples/door-lock-platform/platform.toml")
TOML

# Every node on the same Kafka with the default cluster name: one cluster.
for ((i = 1; i <= NODES; i++)); do
    if [ "$NODES" = 1 ]; then what="the gateway"; else what="gateway node $i of $NODES ($(node_name "$i"))"; fi
    note "starting $what: MQTT 127.0.0.1:$(node_mqtt_port "$i"), metrics http://$(node_admin "$i")/metrics, rules $RULES"
    RUST_LOG=${RUST_LOG:-info,rumqttd=warn} "$BIN_DIR/hookline" run --allow-anonymous \
        --listen "127.0.0.1:$(node_mqtt_port "$i")" --kafka "$KAFKA" --rules "$RULES" --data "$(node_data "$i")" \
        --admin "$(node_admin "$i")" --node "$(node_name "$i")" >"$(node_log "$i")" 2>&1 &
    pids+=($!)
done
for ((i = 1; i <= NODES; i++)); do
    if [ "$NODES" = 1 ]; then what="the gateway"; else what="gateway node $i"; fi
    wait_port 127.0.0.1 "$(node_mqtt_port "$i")" "$what"
done

for consumer in notifier monitor auditor; do
    "$BIN_DIR/$consumer" --config "$WORK/platform.toml" >"$WORK/$consumer.log" 2>&1 &
    pids+=($!)
done

# Locks 171-174: 171 healthy (and sent a tampered, a replayed and a stale command),
# 172 low battery, 173 abnormal lock_state, 174 silent after its first report. All on
# node 1: the simulator takes one MQTT address.
"$BIN_DIR/simulator" --config "$WORK/platform.toml" --mqtt "127.0.0.1:$MQTT_PORT" \
    --unlock-every-secs "$REPORT_INTERVAL" --ts-window-secs 60 \
    --tampered 10083618796833171 --replay 10083618796833171 --stale 10083618796833171 \
    --low-battery 10083618796833172 --bad-state 10083618796833173 --silent 10083618796833174 \
    "$@" >"$WORK/simulator.log" 2>&1 &
pids+=($!)

gateways=""
for ((i = 1; i <= NODES; i++)); do
    if [ "$NODES" = 1 ]; then
        gateways="  gateway:       $(node_log 1), curl -s http://$ADMIN/metrics"
    else
        printf -v line '  %-15s%s, MQTT 127.0.0.1:%s, %s,\n%17scurl -s http://%s/metrics' "node $i:" \
            "$(node_name "$i")" "$(node_mqtt_port "$i")" "$(node_log "$i")" "" "$(node_admin "$i")"
        gateways+="${gateways:+$'\n'}$line"
    fi
done
cat >&2 <<EOF_HELP
run-local.sh: running; everything is in $WORK
  alarms:        grep alarm $WORK/monitor.log
  audit:         tail -f $WORK/audit.jsonl
  notifications: grep notify $WORK/notifier.log $WORK/monitor.log
$gateways
  a new rule:    cp $REPO/rules/examples/wat/battery_alarm.wat $RULES/
                 (routes low battery and bad lock_state to topic alarm_state)
EOF_HELP
if [ "$DURATION" != 0 ]; then
    sleep "$DURATION"
    note "stopping after $DURATION s"
else
    wait "${pids[-1]}"
fi
