#!/usr/bin/env bash
# Runs rollbot's tests. The integration tests start Debian's docker-registry on 127.0.0.1;
# it is installed first when missing.
set -euo pipefail
cd "$(dirname "$0")/../.."
. deploy/dev/lib.sh
ensure_packages docker-registry
cargo test --locked "$@"
