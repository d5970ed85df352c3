# Shared by the bench scripts (sourced): a scratch directory, the processes to stop on
# exit, and waiting for a listener. The sourcing script sets LOG_NAME (log prefix) first
# and adds every background process it starts to PIDS.

TMP=$(mktemp -d)
PIDS=()

# Stops every process still in PIDS and removes TMP.
cleanup() {
    local pid
    for pid in "${PIDS[@]}"; do kill "$pid" 2>/dev/null || true; done
    for pid in "${PIDS[@]}"; do wait "$pid" 2>/dev/null || true; done
    rm -rf "$TMP"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

log() { printf '[%s %s] %s\n' "${LOG_NAME:-bench}" "$(date +%H:%M:%S)" "$*" >&2; }

free_port() { python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'; }

# Waits up to 15 s for a TCP listener on 127.0.0.1:$1.
wait_listening() {
    local i
    for i in $(seq 150); do ss -Hltn "sport = :$1" | grep -q . && return 0; sleep 0.1; done
    log "nothing listens on port $1 after 15 s"
    return 1
}
