# shellcheck shell=bash
# Shared shell helpers for the dev scripts and benchmarks: install what is missing, run a
# throwaway CNCF distribution registry on 127.0.0.1, and push multi-arch demo images with curl.
# Source it; do not run it.

# step TEXT...: a bold heading for the next part of a script's output.
step() { printf '\n\033[1m== %s\033[0m\n' "$*"; }

# ensure_packages PKG...: apt-get install the Debian packages whose commands are missing.
ensure_packages() {
    local missing=()
    local pkg
    for pkg in "$@"; do
        case "$pkg" in
            docker-registry) [ -x /usr/bin/docker-registry ] || missing+=("$pkg") ;;
            chromium) [ -x /usr/bin/chromium ] || missing+=("$pkg") ;;
            chromium-driver) [ -x /usr/bin/chromedriver ] || missing+=("$pkg") ;;
            systemd) command -v systemd-analyze >/dev/null 2>&1 || missing+=("$pkg") ;;
            python3-venv) python3 -c 'import ensurepip, venv' 2>/dev/null || missing+=("$pkg") ;;
            postgresql) compgen -G '/usr/lib/postgresql/*/bin/initdb' >/dev/null || missing+=("$pkg") ;;
            *) command -v "$pkg" >/dev/null 2>&1 || missing+=("$pkg") ;;
        esac
    done
    [ ${#missing[@]} -eq 0 ] && return 0
    echo "installing ${missing[*]} (Debian packages)" >&2
    local sudo=()
    [ "$(id -u)" -eq 0 ] || sudo=(sudo)
    # The package enables a systemd unit on :5000; policy-rc.d-less containers have no systemd,
    # and on a host the unit is stopped again below: tests start their own registry.
    "${sudo[@]}" env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null ||
        { "${sudo[@]}" apt-get update -qq && "${sudo[@]}" env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null; }
    if command -v systemctl >/dev/null 2>&1 && systemctl is-active --quiet docker-registry 2>/dev/null; then
        "${sudo[@]}" systemctl disable --now docker-registry >/dev/null 2>&1 || true
    fi
}

# free_port: a TCP port on 127.0.0.1 that was free a moment ago.
free_port() {
    local port
    while :; do
        port=$((20000 + RANDOM % 20000))
        (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null || { echo "$port"; return; }
    done
}

# start_registry DIR: starts docker-registry with storage under DIR on a free loopback port;
# sets REGISTRY (host:port) and REGISTRY_PID.
start_registry() {
    local dir=$1
    mkdir -p "$dir/data"
    local port
    port=$(free_port)
    cat >"$dir/config.yml" <<EOF
version: 0.1
log: {level: warn, accesslog: {disabled: true}}
storage:
  filesystem: {rootdirectory: $dir/data}
  delete: {enabled: true}
  maintenance: {uploadpurging: {enabled: false}}
http: {addr: '127.0.0.1:$port', secret: rollbot-dev}
EOF
    /usr/bin/docker-registry serve "$dir/config.yml" >"$dir/registry.log" 2>&1 &
    REGISTRY_PID=$!
    REGISTRY=127.0.0.1:$port
    local _
    for _ in $(seq 1 200); do
        curl -fsS -o /dev/null "http://$REGISTRY/v2/" 2>/dev/null && return 0
        sleep 0.05
    done
    echo "docker-registry did not start; its log:" >&2
    cat "$dir/registry.log" >&2
    return 1
}

stop_registry() {
    # The registry ends by SIGTERM (status 143): expected, and under `set -e` in an EXIT trap
    # it must not become the script's exit status.
    if [ -n "${REGISTRY_PID:-}" ] && kill "$REGISTRY_PID" 2>/dev/null; then
        wait "$REGISTRY_PID" 2>/dev/null || true
    fi
    REGISTRY_PID=
}

ACCEPT_MANIFESTS='application/vnd.oci.image.index.v1+json, application/vnd.docker.distribution.manifest.list.v2+json, application/vnd.oci.image.manifest.v1+json, application/vnd.docker.distribution.manifest.v2+json'

sha256_of() { echo "sha256:$(sha256sum "$1" | cut -d' ' -f1)"; }

# push_blob REPO FILE: uploads FILE as a blob (monolithic upload); prints its digest.
push_blob() {
    local repo=$1 file=$2 digest location sep
    digest=$(sha256_of "$file")
    location=$(curl -fsS -D - -o /dev/null -X POST "http://$REGISTRY/v2/$repo/blobs/uploads/" |
        tr -d '\r' | sed -n 's/^[Ll]ocation: //p')
    case "$location" in http*) ;; *) location="http://$REGISTRY$location" ;; esac
    sep='?'
    case "$location" in *\?*) sep='&' ;; esac
    curl -fsS -o /dev/null -X PUT -H 'Content-Type: application/octet-stream' \
        --data-binary @"$file" "$location${sep}digest=$digest"
    echo "$digest"
}

# put_manifest REPO REFERENCE MEDIA_TYPE FILE: PUTs the exact bytes of FILE.
put_manifest() {
    curl -fsS -o /dev/null -X PUT -H "Content-Type: $3" --data-binary @"$4" \
        "http://$REGISTRY/v2/$1/manifests/$2"
}

# digest_of REPO TAG: the digest TAG points at (HEAD, all manifest types accepted).
digest_of() {
    curl -fsSI -H "Accept: $ACCEPT_MANIFESTS" "http://$REGISTRY/v2/$1/manifests/$2" |
        tr -d '\r' | sed -n 's/^[Dd]ocker-[Cc]ontent-[Dd]igest: //p'
}

# push_multiarch REPO VERSION WORKDIR: pushes a two-platform (linux/amd64, linux/arm64) OCI
# index for VERSION, tags it VERSION, prints the index digest.
push_multiarch() {
    local repo=$1 version=$2 work=$3 arch entries="" config layer manifest digest size
    mkdir -p "$work"
    for arch in amd64 arm64; do
        config="$work/$version-$arch.config.json"
        layer="$work/$version-$arch.layer"
        manifest="$work/$version-$arch.manifest.json"
        printf '{"architecture":"%s","os":"linux","config":{"Env":["VERSION=%s"]},"rootfs":{"type":"layers","diff_ids":[]}}' \
            "$arch" "$version" >"$config"
        printf 'demo layer %s %s %s\n' "$repo" "$version" "$arch" >"$layer"
        local config_digest layer_digest
        config_digest=$(push_blob "$repo" "$config")
        layer_digest=$(push_blob "$repo" "$layer")
        printf '{\n  "schemaVersion": 2,\n  "mediaType": "application/vnd.oci.image.manifest.v1+json",\n  "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "digest": "%s", "size": %d},\n  "layers": [{"mediaType": "application/vnd.oci.image.layer.v1.tar+gzip", "digest": "%s", "size": %d}]\n}\n' \
            "$config_digest" "$(stat -c %s "$config")" "$layer_digest" "$(stat -c %s "$layer")" >"$manifest"
        digest=$(sha256_of "$manifest")
        size=$(stat -c %s "$manifest")
        put_manifest "$repo" "$digest" application/vnd.oci.image.manifest.v1+json "$manifest"
        [ -n "$entries" ] && entries="$entries,"$'\n'
        entries="$entries    {\"mediaType\": \"application/vnd.oci.image.manifest.v1+json\", \"digest\": \"$digest\", \"size\": $size, \"platform\": {\"architecture\": \"$arch\", \"os\": \"linux\"}}"
    done
    local index="$work/$version.index.json"
    printf '{\n  "schemaVersion": 2,\n  "mediaType": "application/vnd.oci.image.index.v1+json",\n  "manifests": [\n%s\n  ]\n}\n' "$entries" >"$index"
    digest=$(sha256_of "$index")
    put_manifest "$repo" "$digest" application/vnd.oci.image.index.v1+json "$index"
    put_manifest "$repo" "$version" application/vnd.oci.image.index.v1+json "$index"
    echo "$digest"
}

# tag_index REPO TAG WORKDIR VERSION: points TAG at VERSION's index (what a CI push does).
tag_index() {
    put_manifest "$1" "$2" application/vnd.oci.image.index.v1+json "$3/$4.index.json"
}

# start_postgres DIR: initdb and start Debian's PostgreSQL under DIR on a free loopback port
# (as the postgres user when run as root: initdb refuses root); sets PG_URL and PG_DATA.
start_postgres() {
    local dir=$1 bin port
    bin=$(compgen -G '/usr/lib/postgresql/*/bin' | sort | tail -1)
    [ -n "$bin" ] || { echo "PostgreSQL is missing: apt-get install postgresql" >&2; return 1; }
    PG_BIN=$bin
    mkdir -p "$dir"
    PG_AS=()
    if [ "$(id -u)" = 0 ]; then
        chown postgres "$dir"
        PG_AS=(runuser -u postgres --)
    fi
    PG_DATA=$dir/data
    "${PG_AS[@]}" "$bin/initdb" -D "$PG_DATA" -A trust -U rollbot --no-sync >"$dir/initdb.log" 2>&1 ||
        { cat "$dir/initdb.log" >&2; return 1; }
    port=$(free_port)
    "${PG_AS[@]}" "$bin/pg_ctl" -D "$PG_DATA" -l "$dir/log" -w \
        -o "-c listen_addresses=127.0.0.1 -p $port -k $dir -c fsync=off" start >/dev/null ||
        { cat "$dir/log" >&2; return 1; }
    "$bin/psql" -h 127.0.0.1 -p "$port" -U rollbot -d postgres -qc 'CREATE DATABASE rollbot' >/dev/null
    # shellcheck disable=SC2034 # for the scripts that source this file
    PG_URL=postgres://rollbot@127.0.0.1:$port/rollbot
}

stop_postgres() {
    if [ -n "${PG_DATA:-}" ]; then
        "${PG_AS[@]}" "$PG_BIN/pg_ctl" -D "$PG_DATA" -m immediate stop >/dev/null 2>&1 || true
    fi
}

# push_single REPO VERSION WORKDIR: pushes a single-platform (linux/amd64) OCI image manifest for
# VERSION (one config blob, one layer), tags it VERSION, prints its digest. Its bytes stay in
# WORKDIR/VERSION.manifest.json for tag_single.
push_single() {
    local repo=$1 version=$2 work=$3 config layer manifest config_digest layer_digest
    mkdir -p "$work"
    config="$work/$version.config.json"
    layer="$work/$version.layer"
    manifest="$work/$version.manifest.json"
    printf '{"architecture":"amd64","os":"linux","config":{"Env":["VERSION=%s"]},"rootfs":{"type":"layers","diff_ids":[]}}' \
        "$version" >"$config"
    printf 'demo layer %s %s single\n' "$repo" "$version" >"$layer"
    config_digest=$(push_blob "$repo" "$config")
    layer_digest=$(push_blob "$repo" "$layer")
    printf '{\n  "schemaVersion": 2,\n  "mediaType": "application/vnd.oci.image.manifest.v1+json",\n  "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "digest": "%s", "size": %d},\n  "layers": [{"mediaType": "application/vnd.oci.image.layer.v1.tar+gzip", "digest": "%s", "size": %d}]\n}\n' \
        "$config_digest" "$(stat -c %s "$config")" "$layer_digest" "$(stat -c %s "$layer")" >"$manifest"
    put_manifest "$repo" "$(sha256_of "$manifest")" application/vnd.oci.image.manifest.v1+json "$manifest"
    put_manifest "$repo" "$version" application/vnd.oci.image.manifest.v1+json "$manifest"
    sha256_of "$manifest"
}

# tag_single REPO TAG WORKDIR VERSION: points TAG at VERSION's single-platform manifest.
tag_single() {
    put_manifest "$1" "$2" application/vnd.oci.image.manifest.v1+json "$3/$4.manifest.json"
}
