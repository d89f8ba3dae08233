#!/usr/bin/env bash
# Benchmark: failover between two `rollbot serve` replicas on one PostgreSQL. Each run requests
# and approves a rollback on the leader through the console API, kills the leader (kill -9)
# right after the approval, and times, from the kill: the standby's /readyz turning 200 (it
# leads), and the rollback reaching `succeeded` in the database (finished by the new leader,
# or by the old one if it got that far). The killed replica is restarted as the next standby.
#
# Usage: deploy/bench/failover.sh [RUNS] [LEASE_TTL]   (default 5 runs, lease_ttl 15s)
# Installs docker-registry, postgresql and curl when missing. Goal: both under 2 × the TTL.
set -euo pipefail
cd "$(dirname "$0")/../.."
. deploy/dev/lib.sh

RUNS=${1:-5}
TTL=${2:-15s}
ensure_packages docker-registry postgresql curl
cargo build --release --locked --quiet
ROLLBOT=$PWD/target/release/rollbot

WORK=$(mktemp -d /tmp/rollbot-failover.XXXXXX)
chmod 755 "$WORK"
PIDS=()
cleanup() {
    local pid
    for pid in "${PIDS[@]}"; do kill -9 "$pid" 2>/dev/null || true; done
    stop_registry
    stop_postgres
    rm -rf "$WORK"
}
trap cleanup EXIT
start_registry "$WORK/registry"
start_postgres "$WORK/pg"
sql() { "$PG_BIN/psql" "$PG_URL" -XAtqc "$1"; }

step "Images app1..app$RUNS (v1, v2, v3; latest at v3)"
IMAGES=""
declare -a TARGET
for i in $(seq 1 "$RUNS"); do
    push_multiarch "acme/app$i" v1 "$WORK/images$i" >/dev/null
    TARGET[i]=$(push_multiarch "acme/app$i" v2 "$WORK/images$i")
    push_multiarch "acme/app$i" v3 "$WORK/images$i" >/dev/null
    tag_index "acme/app$i" latest "$WORK/images$i" v3
    IMAGES+="[images.app$i]
image = \"$REGISTRY/acme/app$i\"
"
done
cat >"$WORK/rollbot.toml" <<TOML
[registries."$REGISTRY"]
insecure = true

$IMAGES
[store]
url = "$PG_URL"
lease_ttl = "$TTL"

[server]
shutdown_grace = "5s"

[approvals]
approvers = ["bob"]

[console]
enabled = "on"

[[console.users]]
id = "alice"
name = "Alice"

[[console.users]]
id = "bob"
name = "Bob"
TOML

declare -a PORT PID
start_replica() { # SLOT
    local slot=$1
    PORT[slot]=$(free_port)
    HOSTNAME="replica-$slot" "$ROLLBOT" --config "$WORK/rollbot.toml" serve \
        --listen "127.0.0.1:${PORT[slot]}" >/dev/null 2>>"$WORK/replica-$slot.log" &
    PID[slot]=$!
    PIDS+=("${PID[slot]}")
    local _
    for _ in $(seq 1 400); do
        curl -fsS -o /dev/null "http://127.0.0.1:${PORT[slot]}/healthz" 2>/dev/null && return 0
        sleep 0.05
    done
    echo "replica $slot did not start:" >&2
    cat "$WORK/replica-$slot.log" >&2
    return 1
}
ready() { [ "$(curl -s -o /dev/null -w '%{http_code}' "http://127.0.0.1:${PORT[$1]}/readyz")" = 200 ]; }
console() { # SLOT PATH JSON
    curl -fsS -H 'content-type: application/json' -d "$3" "http://127.0.0.1:${PORT[$1]}$2"
}
now_ns() { date +%s%N; }
ms_since() { awk -v d=$(($(now_ns) - $1)) 'BEGIN { printf "%.0f", d / 1e6 }'; }

step "Two replicas (lease_ttl $TTL)"
start_replica 0
until ready 0; do sleep 0.05; done
start_replica 1

declare -a READY_MS DONE_MS
for i in $(seq 1 "$RUNS"); do
    leader=""
    for _ in $(seq 1 600); do
        for slot in 0 1; do ready "$slot" && leader=$slot; done
        [ -n "$leader" ] && break
        sleep 0.05
    done
    [ -n "$leader" ] || { echo "no replica leads" >&2; exit 1; }
    standby=$((1 - leader))
    reply=$(console "$leader" /console/api/command \
        "{\"user\":\"alice\",\"text\":\"/rollback app$i@${TARGET[i]} failover bench\"}")
    id=$(grep -o 'rb-[0-9]*' <<<"$reply" | head -1)
    [ -n "$id" ] || { echo "run $i: not requested: $reply" >&2; exit 1; }
    console "$leader" /console/api/action "{\"user\":\"bob\",\"action\":\"approve:$id\"}" >/dev/null
    kill -9 "${PID[leader]}"
    killed=$(now_ns)
    wait "${PID[leader]}" 2>/dev/null || true
    until ready "$standby"; do sleep 0.01; done
    READY_MS+=("$(ms_since "$killed")")
    until [ "$(sql "SELECT state FROM rollbacks WHERE id = ${id#rb-}")" = succeeded ]; do
        sleep 0.01
    done
    DONE_MS+=("$(ms_since "$killed")")
    [ "$(digest_of "acme/app$i" latest)" = "${TARGET[i]}" ] ||
        { echo "run $i: latest is not at v2" >&2; exit 1; }
    echo "run $i: $id leader replica-$leader killed; replica-$standby ready after ${READY_MS[-1]} ms, rollback done after ${DONE_MS[-1]} ms"
    start_replica "$leader"
done

ttl_ms=$(awk -v t="$TTL" 'BEGIN { n = t + 0; if (t ~ /ms$/) print n; else if (t ~ /m$/) print n * 60000; else print n * 1000 }')
median() { printf '%s\n' "$@" | sort -n | awk '{ v[NR] = $1 } END { if (NR % 2) print v[(NR + 1) / 2]; else printf "%.0f\n", (v[NR / 2] + v[NR / 2 + 1]) / 2 }'; }
maximum() { printf '%s\n' "$@" | sort -n | tail -1; }
step "Failover ($RUNS runs, lease_ttl $TTL = $ttl_ms ms; goal: under 2 × TTL = $((2 * ttl_ms)) ms)"
printf '| %-38s | %10s | %10s | %12s |\n' "from the leader's kill -9 to" "median ms" "max ms" "max / TTL"
printf '|%s|%s|%s|%s|\n' "$(printf -- '-%.0s' {1..40})" "$(printf -- '-%.0s' {1..12})" "$(printf -- '-%.0s' {1..12})" "$(printf -- '-%.0s' {1..14})"
for what in READY DONE; do
    declare -n values="${what}_MS"
    label="the standby ready (it leads)"
    [ "$what" = DONE ] && label="the rollback done (succeeded)"
    max=$(maximum "${values[@]}")
    printf '| %-38s | %10s | %10s | %12s |\n' "$label" "$(median "${values[@]}")" "$max" \
        "$(awk -v m="$max" -v t="$ttl_ms" 'BEGIN { printf "%.2f", m / t }')"
done
max=$(maximum "${DONE_MS[@]}")
if [ "$max" -lt $((2 * ttl_ms)) ]; then
    echo "goal met: every failover finished the rollback within 2 × TTL"
else
    echo "goal missed: a failover took $max ms (2 × TTL = $((2 * ttl_ms)) ms)"
    exit 1
fi
