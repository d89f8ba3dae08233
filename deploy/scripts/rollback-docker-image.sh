#!/usr/bin/env bash
# Roll an image's floating tags back to a previous digest, with rollbot when it is installed and
# with skopeo when it is not, then read every tag back and say where it points. The manual path
# of deploy/RUNBOOK.md as one command: it never flattens a multi-arch image (the exact manifest
# bytes are copied, so the digest stays the same) and never creates a tag that does not exist.
#
# Needs bash, cat and sha256sum, and rollbot or skopeo (skopeo also reads the tags back when it
# is there; without it, `rollbot verify` does).
set -euo pipefail

usage() {
    cat <<'USAGE'
Usage: IMAGE=host/repository [TAGS=latest,stable] [INSECURE=1] \
         rollback-docker-image.sh [--help] <previous-digest>

Moves every tag in TAGS to <previous-digest> (sha256: followed by 64 lowercase hex characters),
a digest already in IMAGE's repository, then reads every tag back and prints one line per tag.

Environment:
  IMAGE     required: host[:port]/repository, no tag or digest
            (registry.example.com/acme/app; docker.io/acme/app for Docker Hub)
  TAGS      the tags to move, comma-separated (default: latest); each must exist already
  INSECURE  1: the registry speaks plain HTTP (rollbot --insecure; skopeo --tls-verify=false)
  ROLLBOT   the rollbot binary to use (default: rollbot on PATH). When there is none, the tags
            are copied with `skopeo copy --all --preserve-digests`, and no hold is set.
  REASON    why (recorded in rollbot's hold)

Exit codes (rollbot's, and 1 when there is no tool to do it with):
  0  every tag points at the digest (verified), or already did
  1  neither rollbot nor skopeo is available; nothing changed
  2  bad input: IMAGE missing or malformed, a malformed digest or tag, a digest or tag that is
     not in the repository; nothing changed
  3  a pre-check failed (registry unreachable, credentials refused, a platform of the target
     missing); nothing changed
  4  the copy failed part-way: the lines above say where every tag points now
  5  the copies were made but a tag does not read back at the digest
USAGE
}

die_usage() {
    echo "error: $*" >&2
    echo "Run with --help for usage." >&2
    exit 2
}

DIGEST=
for arg in "$@"; do
    case "$arg" in
        -h | --help)
            usage
            exit 0
            ;;
        -*) die_usage "unknown option '$arg'" ;;
        *)
            [ -z "$DIGEST" ] || die_usage "one digest only (got '$DIGEST' and '$arg')"
            DIGEST=$arg
            ;;
    esac
done

if [ -z "${IMAGE:-}" ]; then
    usage >&2
    echo >&2
    echo "error: IMAGE is not set (e.g. IMAGE=registry.example.com/acme/app)" >&2
    exit 2
fi
[ -n "$DIGEST" ] || die_usage "the previous digest is missing (sha256:…)"

# The same rules as rollbot's: a registry host first (nothing is guessed), no tag or digest.
host_re='^([A-Za-z0-9-]+\.[A-Za-z0-9.-]+|[A-Za-z0-9.-]+:[0-9]+|localhost)'
repo_re='/[a-z0-9]+([._-]+[a-z0-9]+)*(/[a-z0-9]+([._-]+[a-z0-9]+)*)*$'
[[ $IMAGE =~ ${host_re}${repo_re} ]] ||
    die_usage "IMAGE='$IMAGE' is not host[:port]/repository without a tag or digest (e.g. registry.example.com/acme/app)"
[[ $DIGEST =~ ^sha256:[0-9a-f]{64}$ ]] ||
    die_usage "'$DIGEST' is not a digest: expected sha256: followed by exactly 64 lowercase hex characters"

TAG_LIST=()
# The whole value, not its first line: a newline is no separator (that tag is then malformed).
IFS=',' read -r -d '' -a raw_tags <<<"${TAGS:-latest}" || true
for tag in "${raw_tags[@]}"; do
    tag=${tag#"${tag%%[![:space:]]*}"}
    tag=${tag%"${tag##*[![:space:]]}"}
    [ -n "$tag" ] || continue
    [[ $tag =~ ^[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}$ ]] || die_usage "'$tag' in TAGS is not a tag"
    TAG_LIST+=("$tag")
done
[ ${#TAG_LIST[@]} -gt 0 ] || die_usage "TAGS='${TAGS:-}' names no tag"

case "${INSECURE:-0}" in
    1 | true | yes) INSECURE=1 ;;
    0 | false | no | "") INSECURE=0 ;;
    *) die_usage "INSECURE='$INSECURE': use 1 or 0" ;;
esac

ROLLBOT_BIN=
if [ -n "${ROLLBOT:-}" ]; then
    command -v "$ROLLBOT" >/dev/null 2>&1 || die_usage "ROLLBOT='$ROLLBOT' is not an executable"
    ROLLBOT_BIN=$ROLLBOT
elif command -v rollbot >/dev/null 2>&1; then
    ROLLBOT_BIN=rollbot
fi
HAVE_SKOPEO=0
command -v skopeo >/dev/null 2>&1 && HAVE_SKOPEO=1
if [ -z "$ROLLBOT_BIN" ] && [ "$HAVE_SKOPEO" = 0 ]; then
    echo "error: neither rollbot nor skopeo is on PATH; install one (see deploy/RUNBOOK.md)" >&2
    exit 1
fi

TLS=()
COPY_TLS=()
if [ "$INSECURE" = 1 ]; then
    TLS=(--tls-verify=false)
    COPY_TLS=(--src-tls-verify=false --dest-tls-verify=false)
fi

# raw_digest REF: the sha256 of the exact manifest bytes REF (docker://…) serves, so an index
# reads as the index's digest. On failure prints skopeo's error instead and returns 1.
raw_digest() {
    local sum error
    if sum=$(skopeo inspect "${TLS[@]}" --raw "$1" 2>/dev/null | sha256sum); then
        echo "sha256:${sum%% *}"
        return 0
    fi
    error=$(skopeo inspect "${TLS[@]}" --raw "$1" 2>&1 >/dev/null) || true
    echo "${error##*msg=}"
    return 1
}

# A registry error saying "no such image, tag or repository": bad input (exit 2).
is_unknown() { [[ $1 == *"manifest unknown"* || $1 == *"name unknown"* || $1 == *"not found"* ]]; }

declare -A BEFORE=()

# read_before: where every tag points now (skopeo), for the report; a tag that cannot be read
# is left out.
read_before() {
    local tag now
    for tag in "${TAG_LIST[@]}"; do
        now=$(raw_digest "docker://$IMAGE:$tag") && BEFORE[$tag]=$now
    done
    return 0
}

# report_tags: reads every tag back (skopeo), one line each; returns 0 when all are at DIGEST,
# 1 when one is not, 2 when one cannot be read.
report_tags() {
    local tag now status=0 note
    echo "result for $IMAGE (target $DIGEST):"
    for tag in "${TAG_LIST[@]}"; do
        if now=$(raw_digest "docker://$IMAGE:$tag"); then
            if [ "$now" = "$DIGEST" ]; then
                printf '  %-16s OK         at %s\n' "$tag" "$now"
            else
                note=
                [ "${BEFORE[$tag]:-}" = "$now" ] && note=' (unchanged)'
                printf '  %-16s NOT MOVED  at %s%s\n' "$tag" "$now" "$note"
                [ "$status" = 2 ] || status=1
            fi
        else
            printf '  %-16s UNKNOWN    cannot read it back: %s\n' "$tag" "$now"
            status=2
        fi
    done
    return "$status"
}

# rollbot_verify: `rollbot verify` of every tag and every platform (its own per-tag report).
rollbot_verify() {
    local verify=()
    [ "$INSECURE" = 1 ] && verify+=(--insecure)
    verify+=(verify "$IMAGE" --expect "$DIGEST")
    for tag in "${TAG_LIST[@]}"; do verify+=(--tag "$tag"); done
    echo "+ $ROLLBOT_BIN ${verify[*]}"
    "$ROLLBOT_BIN" "${verify[@]}"
}

# ---- with rollbot: plan, compare-and-swap retag, verify, health checks, hold ------------------
if [ -n "$ROLLBOT_BIN" ]; then
    [ "$HAVE_SKOPEO" = 1 ] && read_before
    args=()
    [ "$INSECURE" = 1 ] && args+=(--insecure)
    args+=(rollback "$IMAGE" --to "$DIGEST" --yes)
    for tag in "${TAG_LIST[@]}"; do args+=(--tag "$tag"); done
    # One argument: a reason starting with '-' is still the reason, not an option.
    [ -n "${REASON:-}" ] && args+=("--reason=$REASON")
    echo "+ $ROLLBOT_BIN ${args[*]}"
    code=0
    "$ROLLBOT_BIN" "${args[@]}" || code=$?
    echo
    verified=0
    if [ "$HAVE_SKOPEO" = 1 ]; then
        report_tags || verified=$?
        if [ "$verified" = 2 ] && [ "$code" = 0 ]; then
            # skopeo may lack credentials that rollbot has (password_env in rollbot's config).
            echo "skopeo cannot read every tag back; asking rollbot instead"
            verified=0
            rollbot_verify || verified=$?
        fi
    elif [ "$code" = 0 ]; then
        rollbot_verify || verified=$?
    fi
    if [ "$code" = 0 ] && [ "$verified" != 0 ]; then
        echo "error: rollbot reported success but a tag does not read back at $DIGEST" >&2
        exit 5
    fi
    if [ "$code" = 0 ]; then
        echo "done: every tag is at $DIGEST, verified; CI is held while the hold is active (rollbot hold status $IMAGE)"
    else
        echo "error: rollbot exited $code (see its message above and the exit codes in --help)" >&2
    fi
    exit "$code"
fi

# ---- without rollbot: skopeo copy of the exact manifest, every platform -----------------------
echo "rollbot is not on PATH: copying with skopeo (no compare-and-swap, no hold)"
if ! target=$(skopeo inspect "${TLS[@]}" --raw "docker://$IMAGE@$DIGEST" 2>&1); then
    if is_unknown "$target"; then
        echo "error: $IMAGE has no image $DIGEST; nothing changed" >&2
        exit 2
    fi
    echo "error: cannot read $IMAGE@$DIGEST: ${target##*msg=}; nothing changed" >&2
    exit 3
fi
# Every platform of an index or manifest list must still be there (clean-up jobs delete them).
if [[ $target == *'"manifests"'* ]]; then
    rest=$target
    while [[ $rest =~ \"digest\"[[:space:]]*:[[:space:]]*\"(sha256:[0-9a-f]{64})\" ]]; do
        child=${BASH_REMATCH[1]}
        rest=${rest#*"$child"}
        if ! out=$(skopeo inspect "${TLS[@]}" --raw "docker://$IMAGE@$child" 2>&1 >/dev/null); then
            echo "error: the target is incomplete: platform manifest $child is missing (${out##*msg=}); nothing changed" >&2
            exit 3
        fi
    done
fi
for tag in "${TAG_LIST[@]}"; do
    if ! now=$(raw_digest "docker://$IMAGE:$tag"); then
        if is_unknown "$now"; then
            echo "error: $IMAGE has no tag '$tag' (a rollback never creates a tag); nothing changed" >&2
            exit 2
        fi
        echo "error: cannot read $IMAGE:$tag: $now; nothing changed" >&2
        exit 3
    fi
    BEFORE[$tag]=$now
    echo "  $tag is at $now"
done

copy_failed=0
for tag in "${TAG_LIST[@]}"; do
    if [ "${BEFORE[$tag]}" = "$DIGEST" ]; then
        echo "  $tag is already at the target; skipped"
        continue
    fi
    echo "+ skopeo copy --all --preserve-digests docker://$IMAGE@$DIGEST docker://$IMAGE:$tag"
    if ! skopeo copy --quiet --all --preserve-digests "${COPY_TLS[@]}" \
        "docker://$IMAGE@$DIGEST" "docker://$IMAGE:$tag"; then
        echo "error: copying to $tag failed; reading every tag back" >&2
        copy_failed=1
        break
    fi
done
echo

verified=0
report_tags || verified=$?
if [ "$verified" = 0 ]; then
    echo "done: every tag is at $DIGEST, verified. No hold is set: keep CI from pushing the tags again."
    exit 0
fi
if [ "$copy_failed" = 1 ]; then
    moved=0
    for tag in "${TAG_LIST[@]}"; do
        now=$(raw_digest "docker://$IMAGE:$tag") || { moved=1; continue; }
        [ "$now" = "${BEFORE[$tag]}" ] || moved=1
    done
    if [ "$moved" = 0 ]; then
        echo "error: the copy failed and no tag moved; nothing changed" >&2
        exit 3
    fi
    echo "error: the copy failed part-way (lines above); run the same command again to finish it" >&2
    exit 4
fi
echo "error: a tag does not read back at $DIGEST" >&2
exit 5
