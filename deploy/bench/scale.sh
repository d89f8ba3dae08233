#!/usr/bin/env bash
# Benchmark of the daemon under load: N images (N repositories in one loopback registry), N
# rollbacks requested and approved at once through the console API (all succeed, none overlaps
# another on the same image, p95 approval → done, peak RSS); then the store filled to FINISHED
# finished rollbacks: start to ready, /rollback status and history, rollbot audit --since 1h.
# Storage on /dev/shm when it exists.
# Usage: deploy/bench/scale.sh [N] [FINISHED]   (defaults 100 and 10000)
#   SCALE_SEQUENTIAL=1: approve one after another instead (each once the previous is done)
#   SCALE_METRICS=1: print rollbot's registry request counters after the rollbacks
#   ROLLBOT_BIN=path: run that rollbot binary instead of this build's (to compare two builds in
#   alternation on the same machine)
set -euo pipefail
cd "$(dirname "$0")/../.."
. deploy/dev/lib.sh
ensure_packages docker-registry
[ -d /dev/shm ] && [ -w /dev/shm ] && export TMPDIR=/dev/shm
cargo bench --locked --bench scale -- "${1:-100}" "${2:-10000}"
