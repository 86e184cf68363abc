#!/usr/bin/env bash
# Install the benchmark's peers, never into the project's dependencies:
#   - bubblewrap and firejail from the distribution (Debian/Ubuntu: apt-get; needs root);
#   - llm-sandbox and autogen-ext (and py-spy, for profiling) into bench/.venv.
# A peer that cannot be installed is reported and skipped; bench/run.py then says so too.
# Usage: bash bench/setup.sh        (PYTHON=/path/to/python3 to choose the venv's interpreter)
set -uo pipefail
cd "$(dirname "$0")"
PYTHON=${PYTHON:-python3}
missing=()

if command -v apt-get >/dev/null 2>&1 && [ "$(id -u)" = 0 ]; then
    if ! command -v bwrap >/dev/null || ! command -v firejail >/dev/null; then
        apt-get update -qq >/dev/null 2>&1
        for package in bubblewrap firejail; do
            DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "$package" >/dev/null 2>&1 \
                || missing+=("$package (apt-get install failed)")
        done
    fi
else
    command -v bwrap >/dev/null || missing+=("bubblewrap (install it with your package manager)")
    command -v firejail >/dev/null || missing+=("firejail (install it with your package manager)")
fi

if [ ! -x .venv/bin/python ]; then
    "$PYTHON" -m venv .venv || missing+=("bench/.venv (python -m venv failed)")
fi
if [ -x .venv/bin/python ]; then
    for package in llm-sandbox autogen-ext py-spy; do
        .venv/bin/python -m pip install -q --disable-pip-version-check "$package" >/dev/null 2>&1 \
            || missing+=("$package (pip install failed)")
    done
fi

echo "bench setup: bwrap $(command -v bwrap || echo -), firejail $(command -v firejail || echo -)," \
    "peers venv $(pwd)/.venv"
for item in "${missing[@]}"; do
    echo "bench setup: skipped $item" >&2
done
exit 0
