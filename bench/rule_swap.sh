#!/usr/bin/env bash
# Rule swap under load: how long a replaced rule file takes to route, and whether any
# message is lost or routed twice across the swap.
#
# Each run starts the hookline release binary (file sink) with a fresh rules directory
# holding version 1 of the example seed rule (rules/examples/wat/seed.wat), drives it with
# examples/loadgen at RATE QoS 1 state reports per second (DEVICES locks) for RUN_SECONDS,
# and SWAP_AFTER seconds in replaces the rule atomically (write a hidden temp file, then
# rename over seed.wat) with version 2 (bench/rule_swap_v2.wat: the same routing plus a
# `rule_version: 2` record header). bench/rule_swap.py then reads every record the
# gateway wrote and reports:
#   - swap -> first record decided by version 2 (its event's `ts`), and swap -> the new
#     rule set in force / the module compiled (from the gateway's log);
#   - every published (lock, seq) routed exactly once, by version 1 or version 2, and
#     per lock no version-1 record after a version-2 one.
# REPEAT runs; min / median / max in bench/results/rule-swap.md (raw JSON beside it).
#
#   bash bench/rule_swap.sh                      # about 1.5 minutes
#   REPEAT=1 DEBOUNCE_MS=20 bash bench/rule_swap.sh
#
# Needs: cargo, python3.
set -euo pipefail
cd "$(dirname "$0")/.."

RATE=${RATE:-20000}
DEVICES=${DEVICES:-20}
PAYLOAD=${PAYLOAD:-1024}
RUN_SECONDS=${RUN_SECONDS:-8}
SWAP_AFTER=${SWAP_AFTER:-4}
REPEAT=${REPEAT:-5}
DEBOUNCE_MS=${DEBOUNCE_MS:-}    # rules.reload_debounce_ms; empty = the gateway's default
BUILD=${BUILD:-1}
OUT=${OUT:-bench/results/rule-swap-$(date -u +%Y%m%dT%H%M%SZ)}
REPORT=${REPORT:-bench/results/rule-swap.md}
BIN=${CARGO_TARGET_DIR:-target}/release

mkdir -p "$OUT"
LOG_NAME=rule_swap
source bench/lib.sh

if (( BUILD )); then
    log "building (release): hookline, examples"
    cargo build --release --examples --bin hookline >&2
fi

CONFIG=()
if [[ -n $DEBOUNCE_MS ]]; then
    printf '[rules]\nreload_debounce_ms = %s\n' "$DEBOUNCE_MS" >"$TMP/hookline.toml"
    CONFIG=(--config "$TMP/hookline.toml")
fi

for run in $(seq "$REPEAT"); do
    dir=$TMP/run$run
    mkdir -p "$dir/rules"
    cp rules/examples/wat/seed.wat "$dir/rules/seed.wat"
    port=$(free_port)
    # info: the "rule loaded" (load_ms) and "rule set updated" lines time the reload.
    RUST_LOG=info,rumqttd=warn "$BIN/hookline" run "${CONFIG[@]}" --listen "127.0.0.1:$port" \
        --rules "$dir/rules" --data "$dir/data" --node gateway@127.0.0.1 --allow-anonymous \
        --admin "127.0.0.1:$(free_port)" 2>"$dir/hookline.log" &
    gateway=$!
    PIDS+=("$gateway")
    wait_listening "$port"
    # Staged now, long before the swap: its own (ignored) notification is over by then.
    cp bench/rule_swap_v2.wat "$dir/rules/.seed.wat.tmp"

    "$BIN/examples/loadgen" --mqtt "127.0.0.1:$port" --devices "$DEVICES" --total-rate "$RATE" \
        --payload "$PAYLOAD" --messages 0 --duration "$RUN_SECONDS" --warmup 0 --quiet \
        --gateway-pid "$gateway" --label "rule-swap-$run" --json "$dir/load.json" >"$dir/load.txt" &
    loadgen=$!
    PIDS+=("$loadgen")
    # Publishing starts once all locks are connected (well under a second for 20).
    sleep "$SWAP_AFTER"
    uptime >"$dir/uptime"
    # The clock is read right before the rename; the rename is the swap.
    python3 -c 'import os, sys, time; t = time.time(); os.rename(sys.argv[1], sys.argv[2]); print(f"{t:.6f}")' \
        "$dir/rules/.seed.wat.tmp" "$dir/rules/seed.wat" >"$dir/swap_time"
    wait "$loadgen" || { log "run $run: the load generator failed"; cat "$dir/load.txt" >&2; exit 1; }
    # SIGTERM: the gateway finishes queued events and flushes the file sink.
    kill -TERM "$gateway"
    wait "$gateway" || { log "run $run: the gateway exited with an error"; tail -20 "$dir/hookline.log" >&2; exit 1; }
    PIDS=()
    # One line per run on stderr, the details as JSON.
    python3 bench/rule_swap.py run "$dir" >"$OUT/run$run.json"
    cp "$dir/load.json" "$OUT/load$run.json"
    rm -rf "$dir"
done

python3 bench/rule_swap.py summary "$OUT" "$REPORT" $DEBOUNCE_MS
log "report: $REPORT (raw runs in $OUT)"
