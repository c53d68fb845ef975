"""``manage.py warm_cache`` against a real redis-server the test stops midway."""

from __future__ import annotations

import json
from io import StringIO

import pytest
from django.core.cache import caches
from django.core.management import call_command
from django.core.management.base import CommandError

from tests.support.redis_servers import wait_until
from tests.warming.conftest import (  # noqa: F401  (shared fixtures)
    no_background_flush,
    product_warmer,
    record_reads,
    server,
    warm_alias,
    warmers,
)

pytestmark = pytest.mark.redis_server

READS = {"p:1": 5, "p:2": 4, "p:3": 3, "p:4": 2}


def run(*args: str) -> str:
    out = StringIO()
    call_command("warm_cache", "--cache", "w", *args, stdout=out)
    return out.getvalue()


@pytest.fixture
def counted(product_warmer):  # noqa: F811
    alias, calls = product_warmer()
    record_reads(alias, READS)
    return calls


def test_dry_run_plans_and_writes_nothing(counted):
    data = json.loads(run("--dry-run", "--json"))
    assert (data["planned"], data["would_warm"], data["warmed"]) == (4, 4, 0)
    assert data["ok"] and data["published"] is None
    assert counted == []
    cache = caches["w"]
    assert not cache.tier("l2").has_key(cache.stored_key("p:1"))


def test_a_second_run_does_nothing_new(counted):
    first = json.loads(run("--json"))
    assert first["warmed"] == 4 and first["ok"]
    second = json.loads(run("--json"))
    assert (second["warmed"], second["held"], second["failed"]) == (0, 4, 0)
    assert len(counted) == 4  # no warmer ran again


def test_limit_and_the_table_summary(counted):
    text = run("--limit", "2")
    assert counted == ["p:1", "p:2"]
    assert "w: 2 key(s) planned" in text
    assert "warmed: 2" in text and "warm set published: 2 key(s)" in text
    assert "\r" not in text  # no progress bar off a TTY


def test_redis_going_down_midway_exits_non_zero_with_a_summary(
    product_warmer,  # noqa: F811
    server,  # noqa: F811
):
    def stop_redis(calls: int) -> None:
        if calls == 2:
            server.stop()  # Redis goes down while the second value is computed

    alias, calls = product_warmer(stop_redis)
    record_reads(alias, READS)
    out = StringIO()
    with pytest.raises(CommandError, match=r"warming incomplete \(3 key\(s\) failed"):
        call_command("warm_cache", "--cache", alias, stdout=out)
    text = out.getvalue()
    assert "warmed: 1" in text and "failed: 3" in text
    assert "error: p:2: not stored by its authority tier" in text
    assert "warm set not published" in text


def test_unknown_alias_is_a_command_error():
    with pytest.raises(CommandError, match="not a TieredCache alias"):
        call_command("warm_cache", "--cache", "nope", stdout=StringIO())


class TTY(StringIO):
    def isatty(self) -> bool:
        return True


def test_progress_bar_on_a_tty_only_and_never_with_json(counted):
    tty = TTY()
    call_command("warm_cache", "--cache", "w", "--dry-run", stdout=tty)
    assert "\r[" + "#" * 30 + "] 4/4" in tty.getvalue()
    tty = TTY()
    call_command("warm_cache", "--cache", "w", "--dry-run", "--json", stdout=tty)
    assert "\r" not in tty.getvalue()
    json.loads(tty.getvalue())


def test_sigint_stops_the_command_which_resumes_where_it_stopped(
    product_warmer,  # noqa: F811
    server,  # noqa: F811
    settings,
    tmp_path,
):
    import signal
    import subprocess
    import sys
    from pathlib import Path

    from tiered_cache.warming.run import warm

    alias, calls = product_warmer()
    record_reads(alias, READS)
    params = settings.CACHES[alias]
    worker = Path(__file__).resolve().parents[1] / "warming" / "warm_worker.py"
    root = str(Path(__file__).resolve().parents[2])
    process = subprocess.Popen(
        [
            sys.executable,
            str(worker),
            server.url(0),
            params["KEY_PREFIX"],
            params["OPTIONS"]["TIERS"][2]["LOCATION"],
            "--rate",
            "0.1",  # ten seconds between two keys: SIGINT comes in between
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        cwd=root,
        env={"PYTHONPATH": root, "PATH": "/usr/bin:/bin"},
    )
    cache = caches[alias]
    try:
        assert process.stdout.readline() == "warming p:1\n"
        # Once p:1 is in Redis the command waits ten seconds (--rate 0.1).
        wait_until(
            lambda: cache.tier("l2").has_key(cache.stored_key("p:1")),
            timeout=10,
            what="p:1 in Redis",
        )
        process.send_signal(signal.SIGINT)
        out, err = process.communicate(timeout=30)
    finally:
        if process.poll() is None:
            process.kill()
    assert process.returncode == 1
    assert "interrupted: the checkpoint is saved" in out
    assert "interrupted, run again to resume" in err
    assert "Traceback" not in err
    resumed = warm(alias)
    # 1 when SIGINT came during the wait after p:1; 0 when it came while p:1
    # was still being written below L2 (then p:1 is found held, not redone).
    assert resumed.resumed_from in (0, 1) and resumed.ok
    assert calls == ["p:2", "p:3", "p:4"]  # p:1 was warmed by the process
