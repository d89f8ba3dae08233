#!/usr/bin/env bash
# rollbot's main job, locally: a throwaway registry on 127.0.0.1 with three CI-published
# versions of a multi-arch image (v3, the live one, is bad), and `rollbot serve` with the
# built-in console. Open the printed URL, request the rollback as Alice, approve it as Bob.
#
#   deploy/dev/demo.sh           run until Ctrl-C
#   deploy/dev/demo.sh --check   do the flow through the console's API, check the registry, exit
#
# Needs: Debian, Rust; installs docker-registry and curl when missing.
set -euo pipefail
cd "$(dirname "$0")/../.."
. deploy/dev/lib.sh

CHECK=false
[ "${1:-}" = "--check" ] && CHECK=true

ensure_packages docker-registry curl

step "build rollbot (the first build compiles every dependency: several minutes on 2 cores)"
cargo build --release --locked
ROLLBOT=$PWD/target/release/rollbot

WORK=$(mktemp -d)
SERVE_PID=
cleanup() {
    if [ -n "$SERVE_PID" ] && kill -TERM "$SERVE_PID" 2>/dev/null; then
        wait "$SERVE_PID" 2>/dev/null || true
    fi
    stop_registry
    rm -rf "$WORK"
}
trap cleanup EXIT

step "start a registry on 127.0.0.1 (docker-registry, storage in $WORK)"
start_registry "$WORK/registry"
echo "registry: $REGISTRY"

mkdir -p "$WORK/state"
sed -e "s|@REGISTRY@|$REGISTRY|g" -e "s|@STATE@|$WORK/state|g" config/demo.toml >"$WORK/rollbot.toml"
rollbot() { "$ROLLBOT" --config "$WORK/rollbot.toml" "$@"; }

step "CI publishes acme/app v1, v2, v3 (OCI index: linux/amd64 + linux/arm64), each with its rollback manifest"
for version in v1 v2 v3; do
    rollbot gate app >/dev/null
    digest=$(push_multiarch acme/app "$version" "$WORK/images")
    rollbot manifest generate app --digest "$digest" --tags "latest,stable,$version" \
        --git-sha "$(printf '%s' "$version" | sha256sum | cut -c1-7)" --output "$WORK/$version.json" 2>/dev/null
    rollbot manifest push app --file "$WORK/$version.json" >/dev/null
    tag_index acme/app latest "$WORK/images" "$version"
    tag_index acme/app stable "$WORK/images" "$version"
    echo "$version  $digest"
done
V2=$(digest_of acme/app v2)
rollbot history app

step "start rollbot serve with the console"
PORT=$(free_port)
"$ROLLBOT" --config "$WORK/rollbot.toml" serve --listen "127.0.0.1:$PORT" &
SERVE_PID=$!
for _ in $(seq 1 200); do
    curl -fsS -o /dev/null "http://127.0.0.1:$PORT/readyz" 2>/dev/null && break
    sleep 0.05
done
URL="http://127.0.0.1:$PORT/console"

if ! $CHECK; then
    cat <<TEXT

  Open $URL
  1. As Alice, type:   /rollback app v3 crashes on start
  2. Click Approve as Alice: refused (nobody approves their own request).
  3. Switch "You are" to Bob and click Approve: latest and stable go back to v2, verified,
     and a hold stops CI until "/rollback release app".
  Also: /rollback status, /rollback history app, /rollback help.
  Metrics: http://127.0.0.1:$PORT/metrics   Audit log: $ROLLBOT --config $WORK/rollbot.toml audit

  Ctrl-C stops rollbot and the registry.
TEXT
    wait "$SERVE_PID"
    exit 0
fi

step "the flow, through the console's API"
say() { curl -fsS -H 'content-type: application/json' -d "$2" "http://127.0.0.1:$PORT/console/api/$1"; echo; }
say command '{"user":"alice","text":"/rollback app v3 crashes on start"}'
say action '{"user":"alice","action":"approve:rb-1"}'
say action '{"user":"bob","action":"approve:rb-1"}'
for _ in $(seq 1 100); do
    curl -fsS "http://127.0.0.1:$PORT/console/api/state?user=bob" | grep -q 'rb-1 done' && break
    sleep 0.05
done
LATEST=$(digest_of acme/app latest)
echo "latest  $LATEST"
[ "$LATEST" = "$V2" ] || { echo "FAIL: latest is not v2 ($V2)" >&2; exit 1; }
if rollbot gate app 2>/dev/null; then echo "FAIL: no hold" >&2; exit 1; fi
echo "OK: approved by a second person, latest back at v2, CI held. Console: $URL"
