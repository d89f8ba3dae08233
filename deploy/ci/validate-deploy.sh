#!/usr/bin/env bash
# Validates deploy/kubernetes, deploy/compose and deploy/systemd offline, and fails loudly:
#   - Kubernetes: every manifest against the Kubernetes schemas shipped in PyPI's
#     kubernetes-validate (strict: unknown fields are errors), for the oldest and newest
#     versions below; `kubectl kustomize` and its output too when kubectl is installed
#     (otherwise the kustomization's resources are checked to exist); the example Secret holds
#     only placeholders and is not in the kustomization.
#   - Compose: compose.yaml against the Compose specification's schema vendored in PyPI's
#     check-jsonschema.
#   - systemd: `systemd-analyze verify` (on a copy whose ExecStart names an executable that
#     exists here) and `systemd-analyze security --offline=yes` with an exposure threshold.
#   - The command lines of all three parse with the built rollbot.
#   - rollbot's own config loader accepts every shipped config: `cargo test --test it deploy`
#     (tests/it/deploy.rs).
# ROLLBOT_DEPLOY_SKIP_CARGO=1 skips cargo: no test, and the command lines are checked only with
# a rollbot already in target/.
# Needs Debian with Python 3; installs python3-venv and systemd (for systemd-analyze) with apt
# when missing, and the Python tools into ~/.cache/rollbot-ci/venv (PyPI only).
set -euo pipefail
cd "$(dirname "$0")/../.."
. deploy/dev/lib.sh

# The Kubernetes versions the manifests must be valid for (kubernetes-validate 1.37.0 ships
# schemas for 1.25.0 to 1.37.0).
K8S_VERSIONS=(1.30.0 1.37.0)
# Fail above this exposure (systemd-analyze counts in tenths: 15 is 1.5).
SYSTEMD_EXPOSURE_MAX=15
VENV=${ROLLBOT_CI_VENV:-$HOME/.cache/rollbot-ci/venv}
PY_TOOLS=(kubernetes-validate==1.37.0 check-jsonschema==0.39.0)

fail() {
    printf '\n\033[1;31mvalidate-deploy: FAILED: %s\033[0m\n' "$*" >&2
    exit 1
}

step "tools: ${PY_TOOLS[*]} in $VENV; systemd-analyze"
ensure_packages python3-venv systemd
if [ "$(cat "$VENV/.rollbot-tools" 2>/dev/null)" != "${PY_TOOLS[*]}" ]; then
    rm -rf "$VENV"
    python3 -m venv "$VENV" || fail "python3 -m venv $VENV"
    "$VENV/bin/pip" install --quiet --disable-pip-version-check "${PY_TOOLS[@]}" ||
        fail "pip install ${PY_TOOLS[*]}"
    echo "${PY_TOOLS[*]}" >"$VENV/.rollbot-tools"
fi
"$VENV/bin/kubernetes-validate" --version
"$VENV/bin/check-jsonschema" --version
systemd-analyze --version | head -1

WORK=$(mktemp -d)
trap 'rm -rf "$WORK"' EXIT

# One directory of Kubernetes manifests: every file validated (strict) for every version, the
# kustomization naming only files that exist, the example Secret only placeholders and never
# applied; kubectl kustomize's output validated too when kubectl is installed.
check_kubernetes() {
    local dir=$1
    shift
    local MANIFESTS=("$@")
    step "Kubernetes: $dir against the Kubernetes schemas (strict)"
    cd "$dir"
    for version in "${K8S_VERSIONS[@]}"; do
        "$VENV/bin/kubernetes-validate" --strict -k "$version" "${MANIFESTS[@]}" ||
            fail "$dir does not validate against Kubernetes $version"
    done
    # Every .yaml here is either validated above or the kustomization.
    local file
    for file in *.yaml; do
        case " ${MANIFESTS[*]} kustomization.yaml " in
            *" $file "*) ;;
            *) fail "$dir/$file is not validated: add it to check_kubernetes in $0" ;;
        esac
    done
    "$VENV/bin/python" - <<'PY' || fail "$dir/kustomization.yaml or secret.example.yaml"
import os, sys, yaml
kustomization = yaml.safe_load(open("kustomization.yaml"))
assert kustomization["kind"] == "Kustomization", "kustomization.yaml: kind"
for resource in kustomization["resources"]:
    assert os.path.isfile(resource), f"kustomization.yaml: no file {resource}"
assert "secret.example.yaml" not in kustomization["resources"], \
    "the example Secret must not be applied over the real one"
secret = yaml.safe_load(open("secret.example.yaml"))
for key, value in secret["stringData"].items():
    assert "FAKE-PLACEHOLDER" in value, f"secret.example.yaml: {key} is not a placeholder"
print(f"kustomization: {len(kustomization['resources'])} resources present; "
      f"secret.example.yaml: {len(secret['stringData'])} placeholders, not applied")
PY
    if command -v kubectl >/dev/null 2>&1; then
        kubectl kustomize . >"$WORK/kustomized.yaml" || fail "kubectl kustomize $dir"
        for version in "${K8S_VERSIONS[@]}"; do
            "$VENV/bin/kubernetes-validate" --strict --quiet -k "$version" "$WORK/kustomized.yaml" ||
                fail "the output of kubectl kustomize $dir does not validate against Kubernetes $version"
        done
        echo "kubectl kustomize: $(grep -c '^kind:' "$WORK/kustomized.yaml") resources, valid"
    else
        echo "kubectl not installed: kustomize build skipped (resources checked above)"
    fi
    cd - >/dev/null
}

# One replica on SQLite, and replicas on Postgres.
check_kubernetes deploy/kubernetes configmap.yaml pvc.yaml deployment.yaml service.yaml secret.example.yaml
check_kubernetes deploy/kubernetes/ha configmap.yaml deployment.yaml pdb.yaml service.yaml secret.example.yaml

step "Compose: deploy/compose/compose.yaml against the Compose specification schema"
"$VENV/bin/check-jsonschema" --builtin-schema vendor.compose-spec deploy/compose/compose.yaml ||
    fail "deploy/compose/compose.yaml does not validate against the Compose specification"

step "systemd: systemd-analyze verify and security (deploy/systemd/rollbot.service)"
UNIT=deploy/systemd/rollbot.service
# verify wants ExecStart's program to exist: check a copy that runs the built rollbot (or a
# stand-in) instead of /usr/local/bin/rollbot, and nothing else changed.
ROLLBOT_BIN=
if [ "${ROLLBOT_DEPLOY_SKIP_CARGO:-0}" != 1 ]; then
    # In CI deploy/dev/test.sh has built it already: nothing to do.
    cargo build --locked --quiet --bin rollbot || fail "cargo build"
    ROLLBOT_BIN=$PWD/target/debug/rollbot
else
    for candidate in target/debug/rollbot target/release/rollbot; do
        if [ -x "$candidate" ]; then ROLLBOT_BIN=$PWD/$candidate; break; fi
    done
fi
mkdir -p "$WORK/systemd"
grep -q '^ExecStart=/usr/local/bin/rollbot ' "$UNIT" || fail "$UNIT: ExecStart=/usr/local/bin/rollbot … expected"
sed "s|^ExecStart=/usr/local/bin/rollbot |ExecStart=${ROLLBOT_BIN:-$(command -v true)} |" \
    "$UNIT" >"$WORK/systemd/rollbot.service"
[ "$(diff "$UNIT" "$WORK/systemd/rollbot.service" | grep -c '^[<>]')" -eq 2 ] ||
    fail "the copy of $UNIT differs in more than ExecStart"
# verify exits 0 on an unknown key or a bad value ("…, ignoring."): any output is a failure.
systemd-analyze verify --man=no "$WORK/systemd/rollbot.service" >"$WORK/verify.txt" 2>&1 ||
    { cat "$WORK/verify.txt" >&2; fail "systemd-analyze verify $UNIT"; }
if [ -s "$WORK/verify.txt" ]; then
    cat "$WORK/verify.txt" >&2
    fail "systemd-analyze verify $UNIT complained"
fi
echo "verify: ok (ExecStart checked with ${ROLLBOT_BIN:-a stand-in: no rollbot built in target/})"
systemd-analyze security --offline=yes "$UNIT" >"$WORK/security.txt" 2>&1 ||
    { cat "$WORK/security.txt" >&2; fail "systemd-analyze security $UNIT"; }
grep '^→ Overall exposure level' "$WORK/security.txt"
systemd-analyze security --offline=yes --threshold="$SYSTEMD_EXPOSURE_MAX" "$UNIT" >/dev/null 2>&1 ||
    { grep '✗' "$WORK/security.txt" >&2; fail "$UNIT is more exposed than $SYSTEMD_EXPOSURE_MAX/10"; }

if [ -n "$ROLLBOT_BIN" ]; then
    step "the deployments' rollbot command lines parse ($ROLLBOT_BIN)"
    # --help after the arguments: clap checks them and exits 0 without reading the config.
    "$ROLLBOT_BIN" serve --config /etc/rollbot/rollbot.toml --help >/dev/null ||
        fail "systemd's ExecStart arguments"
    "$ROLLBOT_BIN" --config /etc/rollbot/rollbot.toml serve --help >/dev/null ||
        fail "the Deployment's and compose's arguments"
    echo "ok"
fi

if [ "${ROLLBOT_DEPLOY_SKIP_CARGO:-0}" != 1 ]; then
    step "rollbot's config loader accepts every shipped config (tests/it/deploy.rs)"
    cargo test --locked --quiet --test it deploy:: || fail "tests/it/deploy.rs"
fi

printf '\n\033[1;32mvalidate-deploy: all deployment files are valid\033[0m\n'
