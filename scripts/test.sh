#!/usr/bin/env bash
# The one test command, used as is by developers and by CI (.ci/run). It runs three
# cells one after the other, each in a virtualenv of its own:
#   Python 3.11 + Django 5.2 LTS (.venv): ruff, import contracts, the pytest suite
#       (with coverage when COVERAGE=1), the docs build, and the wheel and sdist (build, twine check);
#   Python 3.10 + Django 4.2 LTS (.venv-py310-dj42) and
#   Python 3.13 + Django 6.1 (.venv-py313-dj61): the tests of what depends on the
#       Python and Django versions (VERSION_TESTS below): Django's own cache
#       tests for that version, the conformance matrix, cache_page, the
#       checks and settings, the admin dashboard, the commands, serializers.
#       The whole suite (11 minutes on 2 cores) runs once, in the first cell,
#       so that the three cells stay within 15 minutes.
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

# The dashboard's browser test (tests/admin/test_browser.py) drives Debian's
# chromium through Playwright (never Playwright's own browser download). It skips
# with the reason when chromium cannot be had; as root, install it here.
if [ ! -x /usr/bin/chromium ] && [ "$(id -u)" -eq 0 ] && command -v apt-get >/dev/null 2>&1; then
    echo "chromium not found; installing it with apt-get (for the dashboard's browser test)" >&2
    DEBIAN_FRONTEND=noninteractive apt-get install -y chromium \
        || { apt-get update && DEBIAN_FRONTEND=noninteractive apt-get install -y chromium; } \
        || echo "chromium could not be installed: the browser test will be skipped" >&2
fi

# Print "X.Y" of the Python at $1, or nothing when it does not run.
python_version() {
    "$1" -c 'import sys; print("%d.%d" % sys.version_info[:2])' 2>/dev/null || true
}

# Print the path of a working Python $1 ("3.10"): python3.10 on PATH, else one
# installed by pyenv. The version is checked because a pyenv shim on PATH exists
# even for versions that are installed but not selected, and then it fails.
find_python() {
    local want=$1 root candidate
    root=$(pyenv root 2>/dev/null || echo "${PYENV_ROOT:-$HOME/.pyenv}")
    for candidate in "python$want" "$root/versions/$want".*/bin/python; do
        if [ "$(python_version "$candidate")" = "$want" ]; then
            command -v "$candidate"
            return
        fi
    done
    echo "error: Python $want is required and was not found (tried python$want" \
        "on PATH and $root/versions/$want.*/bin/python); install it, for example" \
        "with 'pyenv install $want'" >&2
    return 1
}

# setup_venv DIR PYTHON DJANGO_RANGE: make the virtualenv with PYTHON (again, when
# it holds another Python version) and install the package with the test extra.
setup_venv() {
    local venv=$1 python=$2 django=$3
    if [ "$(python_version "$venv/bin/python")" != "$(python_version "$python")" ]; then
        "$python" -m venv --clear "$venv"
    fi
    "$venv/bin/python" -m pip install --quiet --disable-pip-version-check \
        -e ".[test]" "$django"
}

# Every interpreter first, so that a missing one stops the script at once rather
# than after the first cell.
python311=$(find_python 3.11)
python310=$(find_python 3.10)
python313=$(find_python 3.13)

timings=()
begin_cell() {
    cell_name=$1
    cell_started=$SECONDS
    printf '\n======== %s ========\n\n' "$cell_name"
}
end_cell() {
    timings+=("$((SECONDS - cell_started))s  $cell_name")
}

begin_cell "Python 3.11, Django 5.2 LTS (.venv): lint, tests, docs, build"
setup_venv .venv "$python311" "Django>=5.2,<6.0"
.venv/bin/ruff check .
.venv/bin/ruff format --check .
.venv/bin/lint-imports
# Coverage traces every line of every thread and doubles the run (5 -> 12
# minutes): COVERAGE=1 adds it.
if [ "${COVERAGE:-0}" = 1 ]; then
    .venv/bin/python -m pytest --cov=tiered_cache --cov-report=term
else
    .venv/bin/python -m pytest
fi
.venv/bin/python -m sphinx -W -b html docs docs/_build/html -q
# A fresh dist/, so twine and the wheel check see this build only.
rm -rf dist
.venv/bin/python -m build --quiet --outdir dist .
.venv/bin/twine check --strict dist/*
.venv/bin/python scripts/check_wheel.py dist/*.whl
end_cell

VERSION_TESTS=(
    tests/test_django_suite.py tests/test_backend_matrix.py tests/test_backend_paths.py
    tests/test_cache_page.py tests/test_checks.py tests/test_checks_values.py
    tests/test_conf.py tests/test_decorators.py tests/test_serializers.py
    tests/test_imports.py tests/admin tests/management tests/metrics
)

begin_cell "Python 3.10, Django 4.2 LTS (.venv-py310-dj42): version-dependent tests"
setup_venv .venv-py310-dj42 "$python310" "Django>=4.2,<5.0"
.venv-py310-dj42/bin/python -m pytest "${VERSION_TESTS[@]}"
end_cell

begin_cell "Python 3.13, Django 6.1 (.venv-py313-dj61): version-dependent tests"
setup_venv .venv-py313-dj61 "$python313" "Django>=6.1,<6.2"
.venv-py313-dj61/bin/python -m pytest "${VERSION_TESTS[@]}"
end_cell

printf '\n======== all cells passed ========\n'
printf '%s\n' "${timings[@]}" "${SECONDS}s  total"
