"""``manage.py cache_stats``: table, ``--json``, ``--since``, bad values."""

from __future__ import annotations

import json
from io import StringIO

import pytest
from django.core.cache import caches
from django.core.management import call_command, get_commands
from django.core.management.base import CommandError

from tests.matrix import L1, l3
from tiered_cache.metrics.durations import parse_duration


@pytest.fixture
def flushed(alias, process, tmp_path):
    name = alias([L1, l3(str(tmp_path / "l3"))])
    cache = caches[name]
    cache.set("a", 1)
    cache.get("a")
    cache.get("a")
    cache.get("b")
    process("w").flush(name)
    return name


def run(*args: str) -> str:
    out = StringIO()
    call_command("cache_stats", *args, stdout=out)
    return out.getvalue()


def test_the_command_is_listed_with_only_tiered_cache_installed():
    # tests/settings.py installs tiered_cache and no tiered_cache_admin.
    assert get_commands()["cache_stats"] == "tiered_cache"


def test_json_prints_total_and_tiers_per_alias(flushed):
    data = json.loads(run("--json"))
    assert list(data) == [flushed]
    total = data[flushed]["total"]
    assert (total["hits"], total["misses"]) == (2, 1)
    assert total["hit_ratio"] == pytest.approx(2 / 3)
    assert set(data[flushed]["tiers"]) == {"l1", "l3"}
    assert data[flushed]["tiers"]["l1"]["sets"] == 1


def test_the_table_shows_every_tier_and_the_total(flushed):
    text = run()
    lines = text.splitlines()
    assert lines[0].startswith(f"{flushed}: last 1d, 1 live process(es), store l3")
    header, l1, l3_row, total = lines[1:5]
    assert header.split()[:4] == ["tier", "hits", "misses", "hit_ratio"]
    assert l1.split()[:4] == ["l1", "2", "1", "66.7%"]
    assert l3_row.split()[0] == "l3"
    assert total.split()[:4] == ["total", "2", "1", "66.7%"]


def test_the_table_shows_the_latency_of_calls_apart_from_the_caches_own(flushed):
    from tiered_cache.management.commands.cache_stats import Command
    from tiered_cache.metrics import read_summary

    summary = read_summary(flushed)
    lat = {"p50_ms": 1.0, "p99_ms": 2.5, "count": 3, "mean_ms": 1.2}
    summary["latency"] = {"get": lat, "read_journal": lat, "set_many_announced": lat}
    lines = Command()._table("m", summary).splitlines()
    start = lines.index("latency of calls below L1:")
    assert [line.split(":")[0].strip() for line in lines[start:]] == [
        "latency of calls below L1",
        "get",
        "set_many_announced",  # the L2 write of a set and its announcement
        "latency of the cache's own calls below L1",
        "read_journal",
    ]


def test_since_limits_the_window(flushed):
    assert json.loads(run("--json", "--since", "15m"))[flushed]["since"] == 900
    assert json.loads(run("--json", "--since", "24h"))[flushed]["since"] == 86400


def test_a_since_beyond_the_retention_is_refused_not_cut(flushed):
    with pytest.raises(CommandError, match=r"--since: 2d is more than the store keeps"):
        run("--since", "2d")


@pytest.mark.parametrize("bad", ["1x", "15", "-1h", "0m", "h"])
def test_a_bad_since_is_a_clear_command_error(flushed, bad):
    with pytest.raises(CommandError, match=r"--since: .*not a duration.*15m, 1h"):
        run(f"--since={bad}")


def test_an_alias_that_is_not_a_tiered_cache_is_refused(flushed):
    with pytest.raises(CommandError, match="not a TieredCache alias: default"):
        run("--cache", "default")


def test_durations():
    assert parse_duration("90s") == 90
    assert parse_duration("1.5h") == 5400
    with pytest.raises(ValueError):
        parse_duration("1w")


def test_a_store_that_does_not_answer_is_a_command_error(alias):
    from tests.support.redis_servers import find_free_port

    nowhere = {
        "NAME": "l2",
        "BACKEND": "django_redis.cache.RedisCache",
        "LOCATION": f"redis://127.0.0.1:{find_free_port()}/0",
    }
    alias([L1, nowhere])
    with pytest.raises(CommandError, match="m: cannot read the metrics store"):
        run()


@pytest.fixture
def global_flusher(monkeypatch):
    """The process's flusher, made a sender again (and restarted) afterwards."""
    from tiered_cache.metrics.flusher import flusher

    running = flusher.running()
    monkeypatch.setattr(flusher, "reader", False, raising=False)
    yield flusher
    monkeypatch.undo()
    if running:
        flusher.start()


def test_the_command_sends_nothing_of_its_own(flushed, global_flusher, capsys):
    """A run of ``manage.py cache_stats`` is no process of the deployment (issue 8).

    Building the cache starts its bus listener, whose calls are counted: each
    run was sent at exit as a live process, with latency rows of its own and
    the L3 errors of an interpreter shutting down.
    """
    from tiered_cache.management.commands.cache_stats import Command
    from tiered_cache.metrics.flusher import store_of

    caches[flushed].get("counted-here")  # this process's, not yet sent
    Command().run_from_argv(["manage.py", "cache_stats", "--json"])
    before = store_of(flushed).totals()
    global_flusher.flush(flushed)  # what the exit would send
    assert store_of(flushed).totals() == before
    assert not global_flusher.running()
    assert flushed in capsys.readouterr().out


def test_call_command_leaves_the_process_a_sender(flushed, global_flusher):
    run("--json")  # in a worker's process: its counters are still sent
    assert not global_flusher.reader
