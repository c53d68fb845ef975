"""Django's own cache test suite passes against ``tiered_cache.TieredCache``.

Runs ``python -m tests.django_suite.run`` (Django's ``runtests.py`` on the
``tiered_suite`` subclasses, with a redis-server L2 and a disk L3) in a
subprocess. Django's tests are not installed with Django: they come from the sdist
of the installed Django version, downloaded from PyPI into ``.cache/django-src/``
on first use. When that download fails, the test is skipped with the reason and
the command that fetches it, except under ``CI=true``, where it fails: CI never
skips it.
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
from pathlib import Path

import django
import pytest

from tests.django_suite.fetch import FetchError, fetch

REPO_ROOT = Path(__file__).resolve().parents[1]
TIMEOUT = 900  # seconds; the suite takes well under a minute
TAIL_LINES = 120

pytestmark = [pytest.mark.redis_server, pytest.mark.slow]


def _tail(output: str) -> str:
    return "\n".join(output.splitlines()[-TAIL_LINES:])


def _in_ci() -> bool:
    return os.environ.get("CI", "").strip().lower() not in ("", "0", "false", "no")


def _fetch_django_tests() -> None:
    """Fetch Django's test suite; skip (outside CI) or fail (in CI) if impossible."""
    try:
        fetch()
    except FetchError as exc:
        message = (
            f"Django's own cache tests need the sdist of Django {django.__version__} "
            "from PyPI (cached in .cache/django-src/) and fetching it failed. "
            "Once PyPI is reachable, fetch it from the repository root with "
            f"`{sys.executable} -m tests.django_suite.fetch` and run the tests "
            f"again. The error was: {exc}"
        )
        if _in_ci():
            pytest.fail(message)
        pytest.skip(message)


def _run_suite() -> tuple[int | None, str]:
    env = dict(os.environ, TIERED_SUITE_BACKEND="tiered", PYTHONUNBUFFERED="1")
    # A session of its own, so a hung run can be ended with everything it
    # started (runtests.py, redis-server) and nothing else.
    process = subprocess.Popen(
        [sys.executable, "-m", "tests.django_suite.run"],
        cwd=REPO_ROOT,
        env=env,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        errors="replace",
        start_new_session=True,
    )
    try:
        output, _ = process.communicate(timeout=TIMEOUT)
        return process.returncode, output
    except subprocess.TimeoutExpired:
        # SIGTERM lets run.py stop runtests.py and its redis-server itself.
        process.send_signal(signal.SIGTERM)
        try:
            output, _ = process.communicate(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            output, _ = process.communicate()
        return None, output


def test_django_cache_suite_passes_against_tiered_cache():
    _fetch_django_tests()
    returncode, output = _run_suite()
    if returncode is None:
        pytest.fail(
            f"the Django cache suite did not finish within {TIMEOUT}s; "
            f"output tail:\n{_tail(output)}"
        )
    assert returncode == 0, (
        f"the Django cache suite failed against TieredCache (exit {returncode}); "
        f"output tail:\n{_tail(output)}"
    )
    ran = re.search(r"^Ran (\d+) tests? in", output, re.MULTILINE)
    assert ran and int(ran.group(1)) > 100, (
        f"the Django cache suite ran too few tests; output tail:\n{_tail(output)}"
    )
