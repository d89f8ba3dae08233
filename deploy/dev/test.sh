#!/usr/bin/env bash
# Runs rollbot's tests. The integration tests start Debian's docker-registry on 127.0.0.1, drive
# the console page in Debian's headless Chromium, and run the runbook's blocks and the rollback
# script with Debian's skopeo, and run every store test and the replica tests on a real
# PostgreSQL (Debian's postgresql, started by the tests in a temporary directory; openssl makes
# the certificates of its TLS test); those are installed first when missing.
set -euo pipefail
cd "$(dirname "$0")/../.."
. deploy/dev/lib.sh
ensure_packages docker-registry chromium chromium-driver skopeo postgresql openssl
cargo test --locked "$@"
