#!/usr/bin/env bash
# Many idle door locks on one server: how many connect, and what they cost in RSS, for
# each of TARGETS side by side in one run (bare rumqttd, Mosquitto, hookline, and
# hookline-cluster: a cluster node on tansu, $TANSU_BIN).
#
# Starts each server in turn (hookline: release binary, file sink, max_connections raised
# to fit; hookline-cluster: the same with --kafka, sessions kept in Kafka; bare rumqttd:
# examples/bare_rumqttd; Mosquitto: Debian's, no persistence) and
# examples/loadgen in idle-fleet mode: CONNECTIONS locks connect at CONNECT_RATE per
# second from SOURCE_ADDRS source addresses (127.0.0.2 upwards: one address has only the
# ephemeral port range, about 28,000 ports, towards the gateway's port), each subscribes
# QoS 1 to its own devices/<id>/command, and all hold their connections HOLD seconds.
# Reports connected / failed (by reason) and the gateway's RSS before, with everyone
# connected, and after the hold, and RSS per connection. Raw JSON and the servers' logs
# in bench/results/idle-<time>/<target>.*.
#
#   bash bench/idle_connections.sh                        # 100,000 locks, about 2 minutes
#   CONNECTIONS=10000 bash bench/idle_connections.sh      # quick check
#   PARK=1 HOLD=2 CONNECTIONS=20000 TARGETS="rumqttd mosquitto hookline hookline-cluster" \
#       bash bench/idle_connections.sh                    # parked persistent sessions
#   CONNECTIONS=18000 CONNECT_RATE=0 WINDOW=500 RECONNECTS=1 COMMANDS=1000 HOLD=10 \
#       bash bench/idle_connections.sh                    # issue 23's fleet: 500 at a time,
#                                                         # a reconnect of all, and a lock
#                                                         # commanded 1,000 times a second
#
# Needs: root or a hard open-files limit above 2 x CONNECTIONS (the gateway and the load
# generator each hold one socket per lock), cargo, python3.
set -euo pipefail
cd "$(dirname "$0")/.."

CONNECTIONS=${CONNECTIONS:-100000}
CONNECT_RATE=${CONNECT_RATE:-2000}
SOURCE_ADDRS=${SOURCE_ADDRS:-8}
HOLD=${HOLD:-30}
TARGETS=${TARGETS:-"rumqttd mosquitto hookline"}
SUBSCRIBE=${SUBSCRIBE:-1}        # 0: the locks do not subscribe (the cost of a bare connection)
# broker.max_connections; rumqttd sizes its connection tables by it at start.
MAX_CONNECTIONS=${MAX_CONNECTIONS:-$(( CONNECTIONS + 100 ))}
BUILD=${BUILD:-1}
OUT=${OUT:-bench/results/idle-$(date -u +%Y%m%dT%H%M%SZ)}
BIN=${CARGO_TARGET_DIR:-target}/release

mkdir -p "$OUT"
LOG_NAME=idle
source bench/lib.sh

# One socket per lock in each process, plus the gateway's files and some headroom.
FILES=$(( CONNECTIONS + 1000 ))
if (( $(ulimit -n) < FILES )); then
    ulimit -n "$FILES" || { log "cannot raise the open-files limit to $FILES (hard limit $(ulimit -Hn)): run as root with CAP_SYS_RESOURCE, or lower CONNECTIONS"; exit 1; }
fi

if (( BUILD )); then
    log "building (release): hookline, examples"
    cargo build --release --examples --bin hookline >&2
fi

# Each server with room for every lock; the defaults would refuse the rest.
start_target() { # start_target NAME PORT: sets server
    case "$1" in
        hookline)
            printf '[broker]\nmax_connections = %s\n' "$MAX_CONNECTIONS" >"$TMP/hookline.toml"
            RUST_LOG=warn "$BIN/hookline" run --config "$TMP/hookline.toml" --listen "127.0.0.1:$2" \
                --rules rules --data "$TMP/data" --node gateway@127.0.0.1 --allow-anonymous \
                --admin "127.0.0.1:$(free_port)" 2>"$OUT/hookline.log" &
            ;;
        hookline-cluster)
            # A cluster node: sessions kept in Kafka (tansu here), read by every node.
            kafka_port=$(free_port)
            "${TANSU_BIN:-tansu}" broker --silent --listener-url "tcp://127.0.0.1:$kafka_port" \
                --advertised-listener-url "tcp://127.0.0.1:$kafka_port" --storage-engine memory://tansu/ >/dev/null 2>&1 &
            PIDS+=("$!")
            wait_listening "$kafka_port"
            printf '[broker]\nmax_connections = %s\n' "$MAX_CONNECTIONS" >"$TMP/hookline.toml"
            RUST_LOG=warn "$BIN/hookline" run --config "$TMP/hookline.toml" --listen "127.0.0.1:$2" \
                --rules rules --data "$TMP/data-cluster" --node gateway@127.0.0.1 --allow-anonymous \
                --kafka "127.0.0.1:$kafka_port" --admin "127.0.0.1:$(free_port)" 2>"$OUT/hookline-cluster.log" &
            ;;
        rumqttd)
            "$BIN/examples/bare_rumqttd" --listen "127.0.0.1:$2" --max-connections "$MAX_CONNECTIONS" 2>"$OUT/rumqttd.log" &
            ;;
        mosquitto)
            printf 'listener %s 127.0.0.1\nallow_anonymous true\npersistence false\nlog_dest none\nmax_connections -1\n' "$2" >"$TMP/mosquitto.conf"
            mosquitto -c "$TMP/mosquitto.conf" 2>"$OUT/mosquitto.log" &
            ;;
        *) log "unknown target $1 (hookline, hookline-cluster, rumqttd, mosquitto)"; exit 2 ;;
    esac
    server=$!
    PIDS+=("$server")
}

EXTRA=()
(( SUBSCRIBE )) || EXTRA=(--no-subscribe)
# PARK=1: each lock subscribes and leaves at once (clean session 0): the cost of a parked
# persistent session instead of a connection.
(( ${PARK:-0} )) && EXTRA+=(--park)
# WINDOW=N: at most N locks in their handshake at once. RECONNECTS=N: after the hold,
# every lock drops its connection and comes back, N times (timed). COMMANDS=R: during the hold,
# one more lock receives R commands a second (publish-to-receipt latency).
(( ${WINDOW:-0} )) && EXTRA+=(--window "$WINDOW")
(( ${RECONNECTS:-0} )) && EXTRA+=(--reconnects "$RECONNECTS")
[ "${COMMANDS:-0}" != 0 ] && EXTRA+=(--idle-commands "$COMMANDS")
status=0
for target in $TARGETS; do
    port=$(free_port)
    start_target "$target" "$port"
    wait_listening "$port"
    uptime >"$OUT/$target.uptime-before"
    log "$target: $CONNECTIONS locks at $CONNECT_RATE/s from $SOURCE_ADDRS addresses, held $HOLD s; $(cat "$OUT/$target.uptime-before")"
    "$BIN/examples/loadgen" "${EXTRA[@]}" --mqtt "127.0.0.1:$port" --idle "$HOLD" --devices "$CONNECTIONS" \
        --connect-rate "$CONNECT_RATE" --source-addrs "$SOURCE_ADDRS" --gateway-pid "$server" \
        --label "$target-idle-$CONNECTIONS" --json "$OUT/$target.json" | tee "$OUT/$target.txt" || status=$?
    kill "$server" 2>/dev/null || true
    wait "$server" 2>/dev/null || true
    uptime >"$OUT/$target.uptime-after"
done
exit "$status"
