#!/usr/bin/env bash
# The way in when it matters most, hookline beside Mosquitto (Debian's) in one run:
#   kafka   a cluster node on tansu while Kafka is frozen (SIGSTOP), then killed (its
#           address refuses connections; bench/tcp_proxy.py stands for it), 20 new locks
#           each connecting and reporting once at QoS 1; then Kafka back, and every
#           acknowledged report read back from it;
#   logins  LOGINS locks, each with its own login, IN_FLIGHT connecting at once, twice
#           (cold, then the same fleet again; a lock told "server busy" tries again a
#           second later): PBKDF2 ($7$) and argon2id hashes in hookline, Mosquitto's
#           password file ($7$) beside them; RSS growth;
#   jwt     JWT_LOGINS locks logging in with RS256 tokens PyJWT signed, JWT_IN_FLIGHT at
#           once, beside Mosquitto taking as many anonymous clients;
#   import  IMPORT_USERS users into a credentials file (`hookline user import`, a CSV
#           list hashed with PBKDF2, and a Mosquitto password file of ready hashes),
#           beside `mosquitto_passwd -U` of as many;
#   outage  OUTAGE_S seconds with Kafka unreachable: the gateway's log lines per kind
#           and second;
#   files   FD_LOCKS locks against a server started under a soft open-file limit of
#           1,024 (hard 20,000, then hard 1,024 too).
# Results in bench/results/way-in-<time>/ (summary.md, the JSON of each run, the logs).
#
#   bash bench/way_in.sh                      # every case, about 6 minutes
#   CASES="logins jwt" bash bench/way_in.sh   # some of them
#
# Needs: cargo, python3 with PyJWT, cryptography and confluent-kafka (.ci/run and
# .ci/install-kafka-tools.sh install them), tansu ($TANSU_BIN), Debian's mosquitto
# (installed with apt-get when missing and running as root), prlimit.
set -euo pipefail
cd "$(dirname "$0")/.."

CASES=${CASES:-"kafka logins jwt import outage files"}
LOGINS=${LOGINS:-1000}
IN_FLIGHT=${IN_FLIGHT:-200}
JWT_LOGINS=${JWT_LOGINS:-10000}
JWT_IN_FLIGHT=${JWT_IN_FLIGHT:-500}
IMPORT_USERS=${IMPORT_USERS:-100000}
OUTAGE_S=${OUTAGE_S:-60}
FD_LOCKS=${FD_LOCKS:-3000}
BUILD=${BUILD:-1}
OUT=${OUT:-bench/results/way-in-$(date -u +%Y%m%dT%H%M%SZ)}
BIN=${CARGO_TARGET_DIR:-target}/release
TANSU=${TANSU_BIN:-tansu}

mkdir -p "$OUT"
LOG_NAME=way-in
source bench/lib.sh
TOOLS="python3 bench/way_in_tools.py"
# Held connections: one socket each in the load generator and in the server.
ulimit -n "$(ulimit -Hn)"

if ! command -v mosquitto >/dev/null && [ "$(id -u)" = 0 ]; then
    log "installing mosquitto (Debian package)"
    apt-get update -qq >&2 && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq mosquitto >&2
fi
if (( BUILD )); then
    log "building (release): hookline, examples/login_storm"
    cargo build --release --bin hookline --example login_storm >&2
fi

# storm NAME ARGS...: examples/login_storm against ARGS, its waves into $OUT/NAME.json.
storm() {
    local name=$1; shift
    "$BIN/examples/login_storm" --json "$OUT/$name.json" "$@" >"$OUT/$name.out"
    log "$name: $(tr '\n' ' ' <"$OUT/$name.out" | cut -c1-300)"
}

# start_hookline NAME CONFIG [ARGS...]: the gateway in the background, its log in
# $OUT/NAME.log, listening on $PORT; sets SERVER.
start_hookline() {
    local name=$1 config=$2; shift 2
    PORT=$(free_port)
    RUST_LOG=${RUST_LOG:-info,rumqttd=warn} "$BIN/hookline" run --config "$config" --listen "127.0.0.1:$PORT" --rules rules \
        --data "$TMP/data-$name" --node gateway@127.0.0.1 --admin "127.0.0.1:$(free_port)" "$@" 2>"$OUT/$name.log" &
    SERVER=$!
    PIDS+=("$SERVER")
    wait_listening "$PORT"
}

# start_mosquitto NAME CONFIG_LINES: Mosquitto on $PORT with those lines; sets SERVER.
start_mosquitto() {
    PORT=$(free_port)
    printf 'listener %s 127.0.0.1\npersistence false\nlog_dest none\nmax_connections -1\n# Root reads the password file in the scratch directory.\nuser root\n%s\n' "$PORT" "$2" >"$TMP/$1.conf"
    mosquitto -c "$TMP/$1.conf" 2>"$OUT/$1.log" &
    SERVER=$!
    PIDS+=("$SERVER")
    wait_listening "$PORT"
}

stop() { kill "$1" 2>/dev/null || true; wait "$1" 2>/dev/null || true; }

# Kafka: tansu behind the forwarder, which it advertises; sets KAFKA_PORT, TANSU, PROXY.
start_kafka() {
    local tansu_port
    tansu_port=$(free_port)
    KAFKA_PORT=$(free_port)
    "$TANSU" broker --silent --listener-url "tcp://127.0.0.1:$tansu_port" \
        --advertised-listener-url "tcp://127.0.0.1:$KAFKA_PORT" --storage-engine memory://tansu/ >/dev/null 2>&1 &
    TANSU_PID=$!
    PIDS+=("$TANSU_PID")
    wait_listening "$tansu_port"
    python3 bench/tcp_proxy.py "$KAFKA_PORT" "$tansu_port" &
    PROXY=$!
    PIDS+=("$PROXY")
    wait_listening "$KAFKA_PORT"
    TANSU_PORT=$tansu_port
    $TOOLS topics "127.0.0.1:$KAFKA_PORT" message_state message_command
}

kill_kafka() { kill -9 "$PROXY"; wait "$PROXY" 2>/dev/null || true; }
restart_kafka() {
    python3 bench/tcp_proxy.py "$KAFKA_PORT" "$TANSU_PORT" &
    PROXY=$!
    PIDS+=("$PROXY")
    wait_listening "$KAFKA_PORT"
}

printf '[auth]\nanonymous = true\n' >"$TMP/anonymous.toml"

for case in $CASES; do
    case $case in
    kafka)
        log "kafka: a cluster node while Kafka is frozen, then killed"
        start_kafka
        start_hookline hookline-kafka "$TMP/anonymous.toml" --kafka "127.0.0.1:$KAFKA_PORT"
        storm hookline-kafka-warm --mqtt "127.0.0.1:$PORT" --clients 1 --prefix warm- --report
        kill -STOP "$TANSU_PID"
        storm hookline-kafka-frozen --mqtt "127.0.0.1:$PORT" --clients 20 --prefix frozen- --report
        kill_kafka
        storm hookline-kafka-killed --mqtt "127.0.0.1:$PORT" --clients 20 --prefix killed- --report
        restart_kafka
        kill -CONT "$TANSU_PID"
        for i in $(seq 0 19); do printf 'frozen-%s\nkilled-%s\n' "$i" "$i"; done >"$TMP/reported"
        $TOOLS read-back "127.0.0.1:$KAFKA_PORT" message_state "$TMP/reported" 90 >"$OUT/kafka-read-back.json"
        log "read back: $(cat "$OUT/kafka-read-back.json")"
        stop "$SERVER"; stop "$PROXY"; stop "$TANSU_PID"
        start_mosquitto mosquitto-kafka "allow_anonymous true"
        storm mosquitto-kafka-frozen --mqtt "127.0.0.1:$PORT" --clients 20 --prefix frozen- --report
        storm mosquitto-kafka-killed --mqtt "127.0.0.1:$PORT" --clients 20 --prefix killed- --report
        stop "$SERVER"
        ;;
    logins)
        log "logins: $LOGINS locks with logins of their own, $IN_FLIGHT at once, twice"
        $TOOLS fleet "$LOGINS" "$TMP"
        for hash in pbkdf2 argon2id; do
            "$BIN/hookline" user import --file "$TMP/users-$hash.toml" --from "$TMP/fleet.csv" --hash "$hash" --client-id %u >&2
            printf '[auth]\ncredentials = "%s"\n' "$TMP/users-$hash.toml" >"$TMP/logins-$hash.toml"
            start_hookline "hookline-$hash" "$TMP/logins-$hash.toml"
            # A lock told "server busy" tries again a second later, as device stacks do.
            storm "hookline-$hash" --mqtt "127.0.0.1:$PORT" --logins "$TMP/logins.csv" --in-flight "$IN_FLIGHT" --waves 2 --pid "$SERVER" \
                --retry-busy-ms 1000
            stop "$SERVER"
        done
        cp "$TMP/mosquitto.txt" "$TMP/mosquitto.passwd"
        mosquitto_passwd -U "$TMP/mosquitto.passwd"
        start_mosquitto mosquitto-logins "allow_anonymous false
password_file $TMP/mosquitto.passwd"
        storm mosquitto-logins --mqtt "127.0.0.1:$PORT" --logins "$TMP/logins.csv" --in-flight "$IN_FLIGHT" --waves 2 --pid "$SERVER" \
            --retry-busy-ms 1000
        stop "$SERVER"
        ;;
    jwt)
        log "jwt: $JWT_LOGINS locks with RS256 tokens, $JWT_IN_FLIGHT at once"
        $TOOLS tokens "$JWT_LOGINS" "$TMP"
        printf '[broker]\nmax_connections = %s\n\n[auth.jwt]\npublic_key = "%s"\n' "$(( JWT_LOGINS + 100 ))" "$TMP/jwt.pem" >"$TMP/jwt.toml"
        start_hookline hookline-jwt "$TMP/jwt.toml"
        storm hookline-jwt --mqtt "127.0.0.1:$PORT" --logins "$TMP/tokens.csv" --in-flight "$JWT_IN_FLIGHT" --pid "$SERVER"
        stop "$SERVER"
        start_mosquitto mosquitto-anonymous "allow_anonymous true"
        storm mosquitto-anonymous --mqtt "127.0.0.1:$PORT" --clients "$JWT_LOGINS" --in-flight "$JWT_IN_FLIGHT" --pid "$SERVER"
        stop "$SERVER"
        ;;
    import)
        log "import: $IMPORT_USERS users"
        $TOOLS fleet "$IMPORT_USERS" "$TMP"
        $TOOLS mosquitto-hashed "$IMPORT_USERS" "$TMP"
        timed() { local start; start=$(date +%s.%N); "$@" >/dev/null; printf '%.3f' "$(echo "$(date +%s.%N) - $start" | bc)"; }
        csv=$(timed "$BIN/hookline" user import --file "$TMP/import-csv.toml" --from "$TMP/fleet.csv" --hash pbkdf2 --client-id %u)
        mosq=$(timed "$BIN/hookline" user import --file "$TMP/import-mosq.toml" --from "$TMP/passwd.hashed" --format mosquitto --client-id %u)
        cp "$TMP/mosquitto.txt" "$TMP/import.passwd"
        passwd=$(timed mosquitto_passwd -U "$TMP/import.passwd")
        printf '[auth]\ncredentials = "%s"\n' "$TMP/import-csv.toml" >"$TMP/import.toml"
        started=$(date +%s.%N)
        start_hookline hookline-import "$TMP/import.toml"
        listening=$(printf '%.3f' "$(echo "$(date +%s.%N) - $started" | bc)")
        stop "$SERVER"
        printf '{"hookline user import, %s secrets hashed (PBKDF2)": %s, "hookline user import, a Mosquitto file of %s ready hashes": %s, "mosquitto_passwd -U, %s secrets": %s, "hookline started and listening with the %s users": %s}\n' \
            "$IMPORT_USERS" "$csv" "$IMPORT_USERS" "$mosq" "$IMPORT_USERS" "$passwd" "$IMPORT_USERS" "$listening" >"$OUT/import.json"
        log "import: $(cat "$OUT/import.json")"
        ;;
    outage)
        log "outage: $OUTAGE_S s with Kafka unreachable"
        start_kafka
        start_hookline hookline-outage "$TMP/anonymous.toml" --kafka "127.0.0.1:$KAFKA_PORT"
        storm hookline-outage-locks --mqtt "127.0.0.1:$PORT" --clients 20 --report
        kill_kafka
        # From the next whole second: the lines of the gateway's start stay out.
        from=$(( $(date +%s) + 1 ))
        storm hookline-outage-during --mqtt "127.0.0.1:$PORT" --clients 20 --prefix during- --report
        sleep "$OUTAGE_S"
        to=$(date +%s)
        restart_kafka
        sleep 5
        stop "$SERVER"; stop "$PROXY"; stop "$TANSU_PID"
        $TOOLS log-kinds "$OUT/hookline-outage.log" "$from" "$to" >"$OUT/outage-log.json"
        ;;
    files)
        log "files: $FD_LOCKS locks against servers started under a soft limit of 1,024 open files"
        printf '[auth]\nanonymous = true\n\n[broker]\nmax_connections = %s\n' "$(( FD_LOCKS + 100 ))" >"$TMP/files.toml"
        for limits in 1024:20000 1024:1024; do
            suffix=$([ "$limits" = 1024:1024 ] && echo "-hard" || true)
            PORT=$(free_port)
            prlimit --nofile="$limits" -- "$BIN/hookline" run --config "$TMP/files.toml" --listen "127.0.0.1:$PORT" --rules rules \
                --data "$TMP/data-files$suffix" --admin "127.0.0.1:$(free_port)" 2>"$OUT/hookline-files$suffix.log" &
            SERVER=$!; PIDS+=("$SERVER"); wait_listening "$PORT"
            storm "hookline-files$suffix" --mqtt "127.0.0.1:$PORT" --clients "$FD_LOCKS" --in-flight 500 --report --pid "$SERVER"
            if grep -Ei "too many open files|cannot write down|cannot read the rules" "$OUT/hookline-files$suffix.log" >&2; then
                log "hookline$suffix: its own files failed (above)"
            fi
            stop "$SERVER"
            PORT=$(free_port)
            printf 'listener %s 127.0.0.1\nallow_anonymous true\npersistence false\nlog_dest none\nmax_connections -1\nuser root\n' "$PORT" >"$TMP/files.conf"
            prlimit --nofile="$limits" -- mosquitto -c "$TMP/files.conf" 2>"$OUT/mosquitto-files$suffix.log" &
            SERVER=$!; PIDS+=("$SERVER"); wait_listening "$PORT"
            storm "mosquitto-files$suffix" --mqtt "127.0.0.1:$PORT" --clients "$FD_LOCKS" --in-flight 500 --report --pid "$SERVER"
            stop "$SERVER"
        done
        ;;
    *) log "unknown case $case"; exit 2 ;;
    esac
done

{
    echo "Machine: $(nproc) CPUs, $(free -g | awk '/Mem/ {print $2}') GiB; $(mosquitto -h 2>/dev/null | head -1 || true); $("$TANSU" --version 2>/dev/null || true)"
    echo
} >"$OUT/machine.txt"
$TOOLS summary "$OUT"
log "results in $OUT"
