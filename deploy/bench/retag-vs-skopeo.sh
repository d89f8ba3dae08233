#!/usr/bin/env bash
# Benchmark: rollbot's rollback (plan + retag + verify) of a multi-arch image against
# `skopeo copy --all --preserve-digests` (retag only) on the same loopback registry, run in
# alternation so both see the same machine state. Before every timed run `latest` is reset to
# v3 (untimed), and after it `latest` must be at v2 or the run counts as a failure.
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

push_multiarch acme/app v1 "$WORK/images" >/dev/null
V2=$(push_multiarch acme/app v2 "$WORK/images")
V3=$(push_multiarch acme/app v3 "$WORK/images")
reset_latest() { tag_index acme/app latest "$WORK/images" v3; }

now_ns() { date +%s%N; }
declare -a ROLLBOT_MS SKOPEO_MS HOLD_MS
failures=0

# What the goal is about: plan + retag + verify (no hold, which skopeo has no equivalent of).
run_rollbot() {
    "$ROLLBOT" rollback "$REGISTRY/acme/app" --to "$V2" --yes --insecure --no-hold >/dev/null
}
# The full production path: the same plus writing the hold artifact.
run_hold() {
    "$ROLLBOT" rollback "$REGISTRY/acme/app" --to "$V2" --yes --insecure >/dev/null
}
run_skopeo() {
    skopeo copy --quiet --all --preserve-digests --src-tls-verify=false --dest-tls-verify=false \
        "docker://$REGISTRY/acme/app@$V2" "docker://$REGISTRY/acme/app:latest" >/dev/null
}

# One untimed warm-up each (page cache, registry's first requests).
reset_latest; run_rollbot; reset_latest; run_skopeo; reset_latest; run_hold

for i in $(seq 1 "$RUNS"); do
    for tool in rollbot skopeo hold; do
        reset_latest
        [ "$(digest_of acme/app latest)" = "$V3" ] || { echo "reset failed" >&2; exit 1; }
        start=$(now_ns)
        "run_$tool"
        end=$(now_ns)
        ms=$(awk -v d=$((end - start)) 'BEGIN { printf "%.2f", d / 1e6 }')
        if [ "$(digest_of acme/app latest)" != "$V2" ]; then
            failures=$((failures + 1))
            echo "run $i: $tool did not leave latest at v2" >&2
        fi
        case "$tool" in
            rollbot) ROLLBOT_MS+=("$ms") ;;
            skopeo) SKOPEO_MS+=("$ms") ;;
            hold) HOLD_MS+=("$ms") ;;
        esac
    done
done

# percentile P VALUES...: nearest-rank percentile.
percentile() {
    local p=$1
    shift
    printf '%s\n' "$@" | sort -n | awk -v p="$p" '{ v[NR] = $1 } END { i = int((p / 100) * NR + 0.999999); if (i < 1) i = 1; print v[i] }'
}
median() { printf '%s\n' "$@" | sort -n | awk '{ v[NR] = $1 } END { if (NR % 2) print v[(NR + 1) / 2]; else printf "%.2f\n", (v[NR / 2] + v[NR / 2 + 1]) / 2 }'; }

R_MED=$(median "${ROLLBOT_MS[@]}")
S_MED=$(median "${SKOPEO_MS[@]}")
R_P90=$(percentile 90 "${ROLLBOT_MS[@]}")
S_P90=$(percentile 90 "${SKOPEO_MS[@]}")
RATIO=$(awk -v r="$R_MED" -v s="$S_MED" 'BEGIN { printf "%.2f", r / s }')
H_MED=$(median "${HOLD_MS[@]}")
H_P90=$(percentile 90 "${HOLD_MS[@]}")
H_RATIO=$(awk -v r="$H_MED" -v s="$S_MED" 'BEGIN { printf "%.2f", r / s }')

echo
echo "multi-arch rollback (OCI index, 2 platforms), $RUNS runs each, alternating, storage in $BASE"
echo "skopeo $(skopeo --version | awk '{ print $3 }'), rollbot $("$ROLLBOT" --version | awk '{ print $2 }') (release), $(nproc) CPUs"
echo
printf '| %-58s | %10s | %10s | %8s |\n' "command" "median ms" "p90 ms" "ratio"
printf '|%s|%s|%s|%s|\n' "------------------------------------------------------------" "------------" "------------" "----------"
printf '| %-58s | %10s | %10s | %8s |\n' "skopeo copy --all --preserve-digests (retag only)" "$S_MED" "$S_P90" "1.00"
printf '| %-58s | %10s | %10s | %8s |\n' "rollbot rollback --yes --no-hold (plan + retag + verify)" "$R_MED" "$R_P90" "$RATIO"
printf '| %-58s | %10s | %10s | %8s |\n' "rollbot rollback --yes (the same + writing the hold)" "$H_MED" "$H_P90" "$H_RATIO"
echo
echo "goal: rollbot (plan + retag + verify) <= 0.50x skopeo; failures (latest not at v2 after a run): $failures"
[ "$failures" -eq 0 ]
