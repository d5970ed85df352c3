#!/usr/bin/env bash
# The same door-lock load (examples/loadgen.rs) against four MQTT endpoints, on loopback:
#   (a) bare rumqttd, no hooks (examples/bare_rumqttd.rs, hookline's broker settings)
#   (b) Mosquitto (Debian package), minimal config
#   (c) hookline release binary, file sink
#   (d) hookline release binary, Kafka = a tansu process (in-memory storage)
#   (e) hookline in process in front of librdkafka's mock cluster (the setup of docs/performance.md)
# and a fleet-size run (SCALE_DEVICES locks, with and without their command
# subscriptions) against (a) and (c).
#
# Throughput: DEVICES locks x MESSAGES QoS QOS reports of PAYLOAD bytes, as fast as each
# lock's in-flight window (100) allows, REPEAT times per target, a fresh server process
# each time; the median run counts. Latency: LAT_RATE msg/s in total for LAT_SECONDS,
# with 2 command senders (50 unlocks/s each) the locks acknowledge.
#
# Writes bench/RESULTS.md (override with RESULTS=...) and the raw JSON of every run in
# bench/results/compare-<time>/. Every process it starts is stopped on exit.
#
#   bash bench/compare.sh                    # about 6-8 minutes on the 2-core machine
#   REPEAT=1 MESSAGES=5000 bash bench/compare.sh   # quick check
#
# Needs: cargo, python3 (summary), mosquitto (installed with apt-get when missing and
# running as root), tansu on PATH (as .ci/run installs it) for (d).
set -euo pipefail
cd "$(dirname "$0")/.."

DEVICES=${DEVICES:-20}
MESSAGES=${MESSAGES:-20000}
QOS=${QOS:-1}
PAYLOAD=${PAYLOAD:-1024}
REPEAT=${REPEAT:-3}
LAT_RATE=${LAT_RATE:-20000}
LAT_SECONDS=${LAT_SECONDS:-10}
SCALE_DEVICES=${SCALE_DEVICES:-1000}
SCALE_MESSAGES=${SCALE_MESSAGES:-100}
PARTITIONS=${PARTITIONS:-4}     # of message_state / message_command in tansu
QUIET_WAIT=${QUIET_WAIT:-60}    # seconds to wait for an idle machine before each run
BUILD=${BUILD:-1}
RESULTS=${RESULTS:-bench/RESULTS.md}
OUT=${OUT:-bench/results/compare-$(date -u +%Y%m%dT%H%M%SZ)}
BIN=${CARGO_TARGET_DIR:-target}/release

mkdir -p "$OUT"
TMP=$(mktemp -d)
PIDS=()

cleanup() {
    local pid
    (( ${#PIDS[@]} )) || { rm -rf "$TMP"; return; }
    for pid in "${PIDS[@]}"; do
        kill "$pid" 2>/dev/null || true
    done
    for pid in "${PIDS[@]}"; do
        wait "$pid" 2>/dev/null || true
    done
    rm -rf "$TMP"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

log() { printf '[compare %s] %s\n' "$(date +%H:%M:%S)" "$*" >&2; }

free_port() {
    python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}

wait_listening() {
    local port=$1 i
    for i in $(seq 150); do
        if ss -Hltn "sport = :$port" | grep -q .; then
            return 0
        fi
        sleep 0.1
    done
    log "nothing listens on port $port after 15 s"
    return 1
}

# Busy share of all CPUs over one second, in percent (0-100).
busy_percent() {
    local a b
    read -r -a a < <(head -1 /proc/stat)
    sleep 1
    read -r -a b < <(head -1 /proc/stat)
    local idle=$(( (b[4] + b[5]) - (a[4] + a[5]) ))
    local total=0 i
    for i in 1 2 3 4 5 6 7 8; do
        total=$(( total + b[i] - a[i] ))
    done
    echo $(( total > 0 ? 100 * (total - idle) / total : 0 ))
}

# Waits (up to QUIET_WAIT s) until the machine is idle: other builds and tests running
# on it would be measured too. Records what it found.
wait_quiet() {
    local waited=0 busy
    while :; do
        busy=$(busy_percent)
        if (( busy <= 15 )); then
            echo "$busy" >"$TMP/busy"
            return 0
        fi
        if (( waited >= QUIET_WAIT )); then
            log "machine still ${busy}% busy after ${QUIET_WAIT} s; measuring anyway (noted in the results)"
            echo "$busy" >"$TMP/busy"
            return 0
        fi
        waited=$(( waited + 1 ))
    done
}

stop() {
    local pid=$1 keep=() p
    kill "$pid" 2>/dev/null || true
    wait "$pid" 2>/dev/null || true
    for p in "${PIDS[@]}"; do
        [[ $p == "$pid" ]] || keep+=("$p")
    done
    PIDS=("${keep[@]}")
}

SERVER_PID=
TANSU_PID=
TANSU_PORT=

start_bare() {
    "$BIN/examples/bare_rumqttd" --listen "127.0.0.1:$1" 2>"$TMP/server.log" &
    SERVER_PID=$!
    PIDS+=("$SERVER_PID")
}

start_mosquitto() {
    cat >"$TMP/mosquitto.conf" <<EOF
listener $1 127.0.0.1
allow_anonymous true
persistence false
log_dest none
max_inflight_messages 100
max_queued_messages 10000
EOF
    mosquitto -c "$TMP/mosquitto.conf" 2>"$TMP/server.log" &
    SERVER_PID=$!
    PIDS+=("$SERVER_PID")
}

start_tansu() {
    TANSU_PORT=$(free_port)
    tansu broker --silent \
        --listener-url "tcp://127.0.0.1:$TANSU_PORT" \
        --advertised-listener-url "tcp://127.0.0.1:$TANSU_PORT" \
        --storage-engine memory://tansu/ >"$TMP/tansu.log" 2>&1 &
    TANSU_PID=$!
    PIDS+=("$TANSU_PID")
    wait_listening "$TANSU_PORT"
}

start_hookline() {
    local port=$1 kafka=${2:-}
    local data="$TMP/data-$port"
    mkdir -p "$data"
    local args=(run --listen "127.0.0.1:$port" --rules rules --data "$data" --node gateway@127.0.0.1
                --allow-anonymous --admin "127.0.0.1:$(free_port)")
    if [[ -n $kafka ]]; then
        args+=(--kafka "$kafka")
    fi
    RUST_LOG=${HOOKLINE_LOG:-warn} "$BIN/hookline" "${args[@]}" 2>"$TMP/server.log" &
    SERVER_PID=$!
    PIDS+=("$SERVER_PID")
}

# run_case NAME REP START_FN [loadgen args...]: one fresh server, one load run.
run_case() {
    local name=$1 rep=$2 start=$3
    shift 3
    local port json="$OUT/$name-$rep.json"
    port=$(free_port)
    wait_quiet
    local kafka_args=()
    if [[ $start == start_hookline_tansu ]]; then
        start_tansu
        # The topics exist before the gateway produces (loadgen creates them too).
        start_hookline "$port" "127.0.0.1:$TANSU_PORT"
        kafka_args=(--kafka "127.0.0.1:$TANSU_PORT" --kafka-partitions "$PARTITIONS" --kafka-pid "$TANSU_PID")
    else
        "$start" "$port"
    fi
    wait_listening "$port"
    log "$name #$rep on port $port (machine $(cat "$TMP/busy")% busy before)"
    if ! "$BIN/examples/loadgen" --mqtt "127.0.0.1:$port" --gateway-pid "$SERVER_PID" \
        --label "$name" --json "$json" --quiet "${kafka_args[@]}" "$@" >"$OUT/$name-$rep.txt" 2>&1; then
        log "$name #$rep failed: $(tail -3 "$OUT/$name-$rep.txt")"
    fi
    record_busy "$json"
    stop "$SERVER_PID"
    if [[ -n $TANSU_PID ]]; then
        stop "$TANSU_PID"
        TANSU_PID=
    fi
}

# record_busy JSON: notes in a run's JSON how busy the machine was before it.
record_busy() {
    python3 - "$1" "$(cat "$TMP/busy")" <<'EOF' || true
import json, sys
path, busy = sys.argv[1], int(sys.argv[2])
with open(path) as f:
    run = json.load(f)
run["machine_busy_percent_before"] = busy
with open(path, "w") as f:
    json.dump(run, f, indent=2)
EOF
}

# run_inprocess NAME REP [loadgen args...]: hookline + mock Kafka in the loadgen process.
run_inprocess() {
    local name=$1 rep=$2
    shift 2
    local json="$OUT/$name-$rep.json"
    wait_quiet
    log "$name #$rep (machine $(cat "$TMP/busy")% busy before)"
    if ! "$BIN/examples/loadgen" --in-process --mock-kafka --label "$name" --json "$json" --quiet "$@" \
        >"$OUT/$name-$rep.txt" 2>&1; then
        log "$name #$rep failed: $(tail -3 "$OUT/$name-$rep.txt")"
    fi
    record_busy "$json"
}

if [[ $BUILD == 1 ]]; then
    log "building (release): hookline, examples"
    cargo build --release --examples --bin hookline >&2
fi
if ! command -v mosquitto >/dev/null; then
    if [[ $(id -u) == 0 ]] && command -v apt-get >/dev/null; then
        log "installing mosquitto (Debian package)"
        apt-get update -qq >&2 && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq mosquitto >&2
    fi
fi
HAVE_MOSQUITTO=0; command -v mosquitto >/dev/null && HAVE_MOSQUITTO=1
HAVE_TANSU=0; command -v tansu >/dev/null && HAVE_TANSU=1

LOAD=(--devices "$DEVICES" --messages "$MESSAGES" --qos "$QOS" --payload "$PAYLOAD" --drain-timeout 60)
LAT=(--devices "$DEVICES" --messages 0 --duration "$LAT_SECONDS" --total-rate "$LAT_RATE" --qos 1
     --payload "$PAYLOAD" --commanders 2 --command-rate 50 --drain-timeout 30)

for rep in $(seq "$REPEAT"); do
    run_case bare-rumqttd "$rep" start_bare "${LOAD[@]}"
    if (( HAVE_MOSQUITTO )); then run_case mosquitto "$rep" start_mosquitto "${LOAD[@]}"; fi
    run_case hookline-file "$rep" start_hookline "${LOAD[@]}"
    if (( HAVE_TANSU )); then run_case hookline-tansu "$rep" start_hookline_tansu "${LOAD[@]}"; fi
    # The mock cluster keeps 5 MiB per partition, so reading back paces the locks to the
    # reader (bench/README.md): this max-rate run counts delivery reports and watermarks
    # instead of reading.
    run_inprocess hookline-mock-inprocess "$rep" "${LOAD[@]}" --no-consume
done
run_case lat-bare-rumqttd 1 start_bare "${LAT[@]}"
if (( HAVE_MOSQUITTO )); then run_case lat-mosquitto 1 start_mosquitto "${LAT[@]}"; fi
run_case lat-hookline-file 1 start_hookline "${LAT[@]}"
if (( HAVE_TANSU )); then run_case lat-hookline-tansu 1 start_hookline_tansu "${LAT[@]}"; fi
run_inprocess lat-hookline-mock-inprocess 1 "${LAT[@]}"

# Fleet size: every lock subscribed to its own command topic (as in the scenario) or not.
SCALE=(--devices "$SCALE_DEVICES" --messages "$SCALE_MESSAGES" --inflight 10 --connect-rate 0 --qos 1
       --payload "$PAYLOAD" --drain-timeout 60)
run_case scale-bare-rumqttd 1 start_bare "${SCALE[@]}"
run_case scale-bare-rumqttd-nosub 1 start_bare "${SCALE[@]}" --no-subscribe
run_case scale-hookline-file 1 start_hookline "${SCALE[@]}"
run_case scale-hookline-file-nosub 1 start_hookline "${SCALE[@]}" --no-subscribe

log "writing $RESULTS"
python3 bench/summarize.py "$OUT" "$RESULTS" \
    --load "$DEVICES locks x $MESSAGES QoS $QOS reports of $PAYLOAD B, max rate (in-flight window 100 per lock), $REPEAT runs per target, median shown" \
    --latency "$DEVICES locks at $LAT_RATE msg/s in total for $LAT_SECONDS s, QoS 1, $PAYLOAD B, plus 2 command senders at 50 unlocks/s" \
    --scale "$SCALE_DEVICES locks x $SCALE_MESSAGES QoS 1 reports of $PAYLOAD B, in-flight window 10 per lock, all connected at once" \
    --mosquitto-version "$( (mosquitto -h 2>/dev/null || true) | head -1)"
log "done: $RESULTS, raw runs in $OUT"
