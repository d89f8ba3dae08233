#!/usr/bin/env bash
# rollbot's main job, locally: start a throwaway registry on 127.0.0.1, push three versions of a
# multi-arch image (v3 is "bad" and is `latest`), roll `latest` and `stable` back to v2 with the
# CLI, and check the result independently with curl. Needs: Debian, Rust; installs
# docker-registry and curl when missing.
set -euo pipefail
cd "$(dirname "$0")/../.."
. deploy/dev/lib.sh

step() { printf '\n\033[1m== %s\033[0m\n' "$*"; }

ensure_packages docker-registry curl

step "build rollbot"
cargo build --release --locked --quiet
ROLLBOT=$PWD/target/release/rollbot

WORK=$(mktemp -d)
trap 'stop_registry; rm -rf "$WORK"' EXIT

step "start a registry on 127.0.0.1 (docker-registry, storage in $WORK)"
start_registry "$WORK/registry"
echo "registry: $REGISTRY"

step "CI pushes acme/app v1, v2, v3 (each an OCI index for linux/amd64 + linux/arm64)"
V1=$(push_multiarch acme/app v1 "$WORK/images")
V2=$(push_multiarch acme/app v2 "$WORK/images")
V3=$(push_multiarch acme/app v3 "$WORK/images")
tag_index acme/app latest "$WORK/images" v3
tag_index acme/app stable "$WORK/images" v3
printf 'v1      %s\nv2      %s\nv3      %s   <- latest, stable (bad release)\n' "$V1" "$V2" "$V3"

cat >"$WORK/rollbot.toml" <<EOF
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
EOF
step "config ($WORK/rollbot.toml)"
cat "$WORK/rollbot.toml"

step "dry run: rollbot rollback app --to v2 --dry-run"
"$ROLLBOT" --config "$WORK/rollbot.toml" rollback app --to v2 --dry-run

step "roll back: rollbot rollback app --to v2 --yes"
"$ROLLBOT" --config "$WORK/rollbot.toml" rollback app --to v2 --yes

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
"$ROLLBOT" --config "$WORK/rollbot.toml" verify app --expect "$V2"

step "run it again: nothing to do"
"$ROLLBOT" --config "$WORK/rollbot.toml" rollback app --to v2 --yes

printf '\nOK: latest and stable moved from v3 back to v2, digest and index preserved.\n'
