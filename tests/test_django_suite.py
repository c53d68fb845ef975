"""Django's own cache test suite passes against ``tiered_cache.TieredCache``.

Runs ``python -m tests.django_suite.run`` (Django's ``runtests.py`` on the
``tiered_suite`` subclasses, with a redis-server L2 and a disk L3) in a
subprocess. A failed download of the Django sdist fails this test: it is never
skipped.
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parents[1]
TIMEOUT = 900  # seconds; the suite takes well under a minute
TAIL_LINES = 120

pytestmark = [pytest.mark.redis_server, pytest.mark.slow]


def _tail(output: str) -> str:
    return "\n".join(output.splitlines()[-TAIL_LINES:])


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
    returncode, output = _run_suite()
    if returncode is None:
        pytest.fail(
            f"the Django cache suite did not finish within {TIMEOUT}s; "
            f"output tail:\n{_tail(output)}"
        )
    if "could not download the Django" in output:
        pytest.fail(
            "could not fetch Django's test suite (the sdist of the installed "
            f"Django from PyPI); output tail:\n{_tail(output)}"
        )
    assert returncode == 0, (
        f"the Django cache suite failed against TieredCache (exit {returncode}); "
        f"output tail:\n{_tail(output)}"
    )
    ran = re.search(r"^Ran (\d+) tests? in", output, re.MULTILINE)
    assert ran and int(ran.group(1)) > 100, (
        f"the Django cache suite ran too few tests; output tail:\n{_tail(output)}"
    )
