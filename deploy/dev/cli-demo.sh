#!/usr/bin/env bash
# rollbot's main job, locally: start a throwaway registry on 127.0.0.1; publish three versions
# of a multi-arch image the way CI does (each with its rollback manifest); v3 is bad. Roll
# `latest` and `stable` back with the CLI (the target is chosen from the rollback manifests),
# check the result independently with curl, and show the hold that stops CI from undoing it.
# Needs: Debian, Rust; installs docker-registry and curl when missing.
set -euo pipefail
cd "$(dirname "$0")/../.."
. deploy/dev/lib.sh

ensure_packages docker-registry curl

step "build rollbot (the first build compiles every dependency: several minutes on 2 cores)"
cargo build --release --locked
ROLLBOT=$PWD/target/release/rollbot

WORK=$(mktemp -d)
trap 'stop_registry; rm -rf "$WORK"' EXIT

step "start a registry on 127.0.0.1 (docker-registry, storage in $WORK)"
start_registry "$WORK/registry"
echo "registry: $REGISTRY"

cat >"$WORK/rollbot.toml" <<CONFIG
[registries."$REGISTRY"]
insecure = true

[images.app]
image = "$REGISTRY/acme/app"
tags = ["latest", "stable"]

[[images.app.checks]]
name = "index-pullable"
command = ["curl", "-fsS", "-o", "/dev/null", "-H", "Accept: application/vnd.oci.image.index.v1+json", "http://$REGISTRY/v2/acme/app/manifests/{digest}"]
timeout = "10s"

[[images.app.checks]]
name = "registry-api"
http = "http://$REGISTRY/v2/"
CONFIG
step "config ($WORK/rollbot.toml)"
cat "$WORK/rollbot.toml"
rollbot() { "$ROLLBOT" --config "$WORK/rollbot.toml" "$@"; }

step "CI publishes acme/app v1, v2, v3 (OCI index: linux/amd64 + linux/arm64), each with a rollback manifest"
for version in v1 v2 v3; do
    rollbot gate app
    digest=$(push_multiarch acme/app "$version" "$WORK/images")
    rollbot manifest generate app --digest "$digest" --tags "latest,stable,$version" \
        --git-sha "$(printf '%s' "$version" | sha256sum | cut -c1-7)" --output "$WORK/$version.json"
    rollbot manifest push app --file "$WORK/$version.json"
    tag_index acme/app latest "$WORK/images" "$version"
    tag_index acme/app stable "$WORK/images" "$version"
done
V2=$(digest_of acme/app v2)
V3=$(digest_of acme/app v3)
echo "v3 ($V3) is live as latest and stable, and it is bad"

step "rollbot history app"
rollbot history app

step "dry run: rollbot rollback app --dry-run (target: the build before the live one)"
rollbot rollback app --dry-run

step "roll back: rollbot rollback app --yes --reason 'v3 crashes on start'"
rollbot rollback app --yes --reason "v3 crashes on start" --by demo

step "check independently with curl"
LATEST=$(digest_of acme/app latest)
STABLE=$(digest_of acme/app stable)
echo "latest  $LATEST"
echo "stable  $STABLE"
[ "$LATEST" = "$V2" ] && [ "$STABLE" = "$V2" ] || { echo "FAIL: tags are not at v2 ($V2)" >&2; exit 1; }
CONTENT_TYPE=$(curl -fsSI -H "Accept: $ACCEPT_MANIFESTS" "http://$REGISTRY/v2/acme/app/manifests/latest" |
    tr -d '\r' | sed -n 's/^[Cc]ontent-[Tt]ype: //p')
PLATFORMS=$(curl -fsS -H "Accept: $ACCEPT_MANIFESTS" "http://$REGISTRY/v2/acme/app/manifests/latest" |
    grep -o '"architecture": "[a-z0-9]*"' | cut -d'"' -f4 | tr '\n' ' ')
echo "latest is still a multi-arch index: $CONTENT_TYPE, platforms: $PLATFORMS"
[ "$CONTENT_TYPE" = application/vnd.oci.image.index.v1+json ] || { echo "FAIL: index flattened" >&2; exit 1; }

step "verify again later: rollbot verify app --expect $V2"
rollbot verify app --expect "$V2"

step "run it again: nothing to do"
rollbot rollback app --to "$V2" --yes

step "CI's next push stops at the gate: rollbot gate app"
if rollbot gate app; then
    echo "FAIL: the gate let CI through" >&2
    exit 1
fi

step "the fix is ready: rollbot hold release app; the gate opens"
rollbot hold release app --reason "fixed in v4" --by demo
rollbot gate app

printf '\nOK: latest and stable moved from v3 (%s) back to v2, digest and index preserved; CI held until released.\n' "${V3:7:12}"
