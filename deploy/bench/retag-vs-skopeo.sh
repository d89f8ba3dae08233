#!/usr/bin/env bash
# Benchmark: rollbot's rollback against `skopeo copy --all --preserve-digests` (retag only) on the
# same loopback registry, for a two-platform OCI index and for a single-platform OCI image
# manifest. Every round runs, in alternation, for each image kind: `rollbot rollback --yes
# --no-hold` (plan + retag + verify), skopeo, and the default `rollbot rollback --yes` (the same
# plus the hold), so all of them see the same machine state. Before every timed run `latest` is
# reset to v3 (untimed), and after it `latest` must be at v2 or the run counts as a failure.
# Last, one `--json` run of each rollbot command shows where its time goes (steps, requests).
#
# Usage: deploy/bench/retag-vs-skopeo.sh [RUNS]   (default 30)
# Installs docker-registry, skopeo and curl when missing. Storage goes to /dev/shm when it
# exists (ext4 /tmp doubles the variance, see shared/reference/registry-notes.md).
set -euo pipefail
cd "$(dirname "$0")/../.."
. deploy/dev/lib.sh

RUNS=${1:-30}
ensure_packages docker-registry skopeo curl
cargo build --release --locked --quiet
ROLLBOT=$PWD/target/release/rollbot

BASE=/tmp
[ -d /dev/shm ] && [ -w /dev/shm ] && BASE=/dev/shm
WORK=$(mktemp -d "$BASE/rollbot-bench.XXXXXX")
trap 'stop_registry; rm -rf "$WORK"' EXIT
start_registry "$WORK/registry"

# index: acme/app, a two-platform OCI index; single: acme/single, one OCI image manifest.
KINDS=(index single)
declare -A REPO=([index]=acme/app [single]=acme/single)
declare -A V2 V3
push_multiarch acme/app v1 "$WORK/index" >/dev/null
V2[index]=$(push_multiarch acme/app v2 "$WORK/index")
V3[index]=$(push_multiarch acme/app v3 "$WORK/index")
push_single acme/single v1 "$WORK/single" >/dev/null
V2[single]=$(push_single acme/single v2 "$WORK/single")
V3[single]=$(push_single acme/single v3 "$WORK/single")
reset_latest() {
    case "$1" in
        index) tag_index acme/app latest "$WORK/index" v3 ;;
        single) tag_single acme/single latest "$WORK/single" v3 ;;
    esac
}

declare -A MS
failures=0

# What the second goal is about: plan + retag + verify (no hold, which skopeo has no
# equivalent of).
run_rollbot() {
    "$ROLLBOT" rollback "$REGISTRY/${REPO[$1]}" --to "${V2[$1]}" --yes --insecure --no-hold "${@:2}"
}
# The full production path: the same plus writing the hold artifact.
run_hold() {
    "$ROLLBOT" rollback "$REGISTRY/${REPO[$1]}" --to "${V2[$1]}" --yes --insecure "${@:2}"
}
run_skopeo() {
    skopeo copy --quiet --all --preserve-digests --src-tls-verify=false --dest-tls-verify=false \
        "docker://$REGISTRY/${REPO[$1]}@${V2[$1]}" "docker://$REGISTRY/${REPO[$1]}:latest"
}
TOOLS=(rollbot skopeo hold)

# One untimed warm-up each (page cache, registry's first requests).
for kind in "${KINDS[@]}"; do
    for tool in "${TOOLS[@]}"; do
        reset_latest "$kind"
        "run_$tool" "$kind" >/dev/null
    done
done

for i in $(seq 1 "$RUNS"); do
    for kind in "${KINDS[@]}"; do
        for tool in "${TOOLS[@]}"; do
            reset_latest "$kind"
            [ "$(digest_of "${REPO[$kind]}" latest)" = "${V3[$kind]}" ] || { echo "reset failed" >&2; exit 1; }
            # Microseconds from bash itself: `$(date …)` would add a process start (a
            # millisecond or two) to every timed run.
            start=${EPOCHREALTIME/[.,]/}
            "run_$tool" "$kind" >/dev/null
            end=${EPOCHREALTIME/[.,]/}
            if [ "$(digest_of "${REPO[$kind]}" latest)" != "${V2[$kind]}" ]; then
                failures=$((failures + 1))
                echo "run $i: $tool did not leave $kind latest at v2" >&2
            fi
            MS[$kind/$tool]+="$(awk -v d=$((end - start)) 'BEGIN { printf "%.2f", d / 1e3 }') "
        done
    done
done

# percentile P VALUES...: nearest-rank percentile.
percentile() {
    local p=$1
    shift
    printf '%s\n' "$@" | sort -n | awk -v p="$p" '{ v[NR] = $1 } END { i = int((p / 100) * NR + 0.999999); if (i < 1) i = 1; print v[i] }'
}
median() { printf '%s\n' "$@" | sort -n | awk '{ v[NR] = $1 } END { if (NR % 2) print v[(NR + 1) / 2]; else printf "%.2f\n", (v[NR / 2] + v[NR / 2 + 1]) / 2 }'; }
ratio() { awk -v r="$1" -v s="$2" 'BEGIN { printf "%.2f", r / s }'; }

echo
echo "rollback of an OCI index (2 platforms) and of a single-platform OCI manifest, $RUNS runs each, alternating, storage in $BASE"
echo "skopeo $(skopeo --version | awk '{ print $3 }'), rollbot $("$ROLLBOT" --version | awk '{ print $2 }') (release), $(nproc) CPUs"
echo
printf '| %-7s | %-58s | %9s | %9s | %6s |\n' "image" "command" "median ms" "p90 ms" "ratio"
printf '|%s|%s|%s|%s|%s|\n' "---------" "------------------------------------------------------------" "-----------" "-----------" "--------"
declare -A LABEL=(
    [skopeo]="skopeo copy --all --preserve-digests (retag only)"
    [rollbot]="rollbot rollback --yes --no-hold (plan + retag + verify)"
    [hold]="rollbot rollback --yes (the same + the hold)"
)
declare -A GOAL=([rollbot]=0.20 [hold]=0.30)
met=yes
for kind in "${KINDS[@]}"; do
    # shellcheck disable=SC2086 # the values are a space-separated list of numbers
    skopeo_median=$(median ${MS[$kind/skopeo]})
    for tool in skopeo rollbot hold; do
        # shellcheck disable=SC2086
        med=$(median ${MS[$kind/$tool]})
        # shellcheck disable=SC2086
        p90=$(percentile 90 ${MS[$kind/$tool]})
        r=$(ratio "$med" "$skopeo_median")
        printf '| %-7s | %-58s | %9s | %9s | %6s |\n' "$kind" "${LABEL[$tool]}" "$med" "$p90" "$r"
        if [ -n "${GOAL[$tool]:-}" ] && awk -v r="$r" -v g="${GOAL[$tool]}" 'BEGIN { exit !(r > g) }'; then
            met=no
        fi
    done
done
echo
echo "goals: --no-hold <= 0.20x and the default (with the hold) <= 0.30x skopeo, for both kinds: met: $met"
echo "failures (latest not at v2 after a run): $failures"

# Where the time goes: one more run of each rollbot command, its --json report's steps, requests
# by kind and the requests in the order they were answered (sent at / took, ms).
echo
for kind in "${KINDS[@]}"; do
    for tool in rollbot hold; do
        reset_latest "$kind"
        "run_$tool" "$kind" --json | python3 -c '
import json, sys
r = json.load(sys.stdin)
steps = ", ".join("%s %d ms" % (s["name"], s["duration_ms"]) for s in r["steps"])
requests = ", ".join("%s %d" % (k, v) for k, v in r["registry"]["requests"].items() if v)
print("%s %s: total %d ms (%s); requests: %s; counted pulls: %d" % (sys.argv[1], sys.argv[2], r["total_ms"], steps, requests, r["registry"]["counted_pulls"]))
for t in r["registry"].get("timeline", []):
    print("  %7.2f %6.2f %3d %s" % (t["sent_us"] / 1e3, t["took_us"] / 1e3, t["status"], t["request"][:100]))
' "$kind" "${LABEL[$tool]}"
    done
done
[ "$failures" -eq 0 ]
