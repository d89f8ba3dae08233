#!/usr/bin/env bash
# Benchmark of the daemon: start-to-ready, idle RSS, approval → rolled back and status edited
# (p50/p95) over N rollbacks. Storage on /dev/shm when it exists.
# Usage: deploy/bench/daemon.sh [N]   (default 100)
#   ROLLBOT_BIN=path: run that rollbot binary instead of this build's (to compare two builds in
#   alternation on the same machine)
set -euo pipefail
cd "$(dirname "$0")/../.."
. deploy/dev/lib.sh
ensure_packages docker-registry
[ -d /dev/shm ] && [ -w /dev/shm ] && export TMPDIR=/dev/shm
cargo bench --locked --bench daemon -- "${1:-100}"
