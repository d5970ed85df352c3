#!/usr/bin/env bash
# Where the gateway's CPU goes at full load: `perf record` on the hookline release binary
# (MQTT on loopback, Kafka = a tansu process, or the file sink with SINK=file) while
# examples/loadgen drives it as fast as it acknowledges. Writes bench/results/profile-$SINK.md
# (per-thread split, top symbols); perf.data and the full reports stay in
# target/bench-profile-$SINK/ (they only make sense with the binary that made them).
#
#   bash bench/profile.sh              # about 30 s
#   SINK=file bash bench/profile.sh
#
# Needs perf with user-space sampling allowed (kernel.perf_event_paranoid <= 2). Without
# perf, try: valgrind --tool=callgrind on a short `loadgen --in-process` run.
set -euo pipefail
cd "$(dirname "$0")/.."

SINK=${SINK:-kafka}
DEVICES=${DEVICES:-20}
MESSAGES=${MESSAGES:-30000}
SECONDS_TO_SAMPLE=${SECONDS_TO_SAMPLE:-6}
BIN=${CARGO_TARGET_DIR:-target}/release
OUT=${CARGO_TARGET_DIR:-target}/bench-profile-$SINK
mkdir -p "$OUT" bench/results
LOG_NAME=profile
source bench/lib.sh

command -v perf >/dev/null || { echo "perf is not installed" >&2; exit 1; }
perf stat -e instructions true >/dev/null 2>&1 || { echo "perf cannot sample here (perf_event_paranoid?)" >&2; exit 1; }


cargo build --release --examples --bin hookline >&2
MQTT_PORT=$(free_port)
ARGS=(run --listen "127.0.0.1:$MQTT_PORT" --rules rules --data "$TMP/data" --node gateway@127.0.0.1
      --allow-anonymous --admin "127.0.0.1:$(free_port)")
LOAD_KAFKA=()
if [[ $SINK == kafka ]]; then
    KAFKA_PORT=$(free_port)
    tansu broker --silent --listener-url "tcp://127.0.0.1:$KAFKA_PORT" \
        --advertised-listener-url "tcp://127.0.0.1:$KAFKA_PORT" --storage-engine memory://tansu/ \
        >"$TMP/tansu.log" 2>&1 &
    PIDS+=($!)
    wait_listening "$KAFKA_PORT"
    ARGS+=(--kafka "127.0.0.1:$KAFKA_PORT")
    LOAD_KAFKA=(--kafka "127.0.0.1:$KAFKA_PORT" --kafka-partitions 4 --no-consume)
fi
RUST_LOG=warn "$BIN/hookline" "${ARGS[@]}" 2>"$TMP/hookline.log" &
HOOKLINE=$!
PIDS+=("$HOOKLINE")
wait_listening "$MQTT_PORT"

"$BIN/examples/loadgen" --mqtt "127.0.0.1:$MQTT_PORT" --devices "$DEVICES" --messages "$MESSAGES" \
    --gateway-pid "$HOOKLINE" --quiet --drain-timeout 30 "${LOAD_KAFKA[@]}" >"$OUT/loadgen.txt" 2>&1 &
LOADGEN=$!
PIDS+=("$LOADGEN")
sleep 1.5   # connect and warm up
perf record -q -F 999 -p "$HOOKLINE" -o "$OUT/perf.data" -- sleep "$SECONDS_TO_SAMPLE" 2>/dev/null || true
wait "$LOADGEN" || true

report() {
    # Only the sample lines; (head closing the pipe early is fine).
    perf report -i "$OUT/perf.data" --stdio --no-children "$@" 2>/dev/null | grep -E '^ +[0-9]' || true
}
report --sort comm >"$OUT/threads.txt"
report --sort dso,symbol >"$OUT/symbols.all.txt"
head -60 "$OUT/symbols.all.txt" >"$OUT/symbols.txt"

{
    echo "## Profile: hookline binary at full load (\`bash bench/profile.sh\`, sink: $SINK)"
    echo
    echo "perf record -F 999 on the gateway process for ${SECONDS_TO_SAMPLE} s while $DEVICES locks publish QoS 1, 1 KiB as fast as acknowledged. Self time; inlined functions count in their caller."
    echo
    echo "Load generator summary:"
    echo
    echo '```'
    grep -E 'publish throughput|PUBACK|gateway CPU|records in Kafka|peak RSS' "$OUT/loadgen.txt" || true
    echo '```'
    echo
    echo "CPU by thread:"
    echo
    echo '```'
    cat "$OUT/threads.txt"
    echo '```'
    echo
    echo "Top symbols:"
    echo
    echo '```'
    head -40 "$OUT/symbols.txt" | sed -E 's/ +$//' | cut -c1-160
    echo '```'
} >"bench/results/profile-$SINK.md"
cat "bench/results/profile-$SINK.md"
