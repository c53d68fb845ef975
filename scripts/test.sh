#!/usr/bin/env bash
# The one test command: lint, import contracts, the test suite with coverage, and
# the docs build. Used as is by developers and by CI (.ci/run).
set -euo pipefail

cd "$(dirname "$0")/.."

# The suite starts its own redis-server processes on free loopback ports, so the
# binary must be on PATH. Never skip those tests silently.
if ! command -v redis-server >/dev/null 2>&1; then
    if [ "$(id -u)" -eq 0 ] && command -v apt-get >/dev/null 2>&1; then
        echo "redis-server not found; installing it with apt-get" >&2
        apt-get update
        DEBIAN_FRONTEND=noninteractive apt-get install -y redis-server
    else
        echo "redis-server is required; install it with" \
            "'sudo apt-get install redis-server' (Debian/Ubuntu)" \
            "or 'brew install redis' (macOS)" >&2
        exit 1
    fi
fi

if [ ! -x .venv/bin/python ]; then
    python3 -m venv .venv
fi
export PATH="$PWD/.venv/bin:$PATH"

python -m pip install --quiet --disable-pip-version-check -e ".[test]"

ruff check .
ruff format --check .
lint-imports
python -m pytest --cov=tiered_cache --cov-report=term
python -m sphinx -W -b html docs docs/_build/html -q
