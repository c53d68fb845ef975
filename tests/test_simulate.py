"""The trace simulator: its numbers against naive reference policies, its CLI."""

from __future__ import annotations

import json
import random
import subprocess
import sys
from collections import OrderedDict

import pytest

from tiered_cache.simulate import capacities, main, read_trace, replay


def synthetic(n: int = 20000, keys: int = 2000, seed: int = 9) -> list[str]:
    """A skewed trace (Zipf-like popularity) with a few scans mixed in."""
    rng = random.Random(seed)
    weights = [1 / (rank + 1) ** 0.9 for rank in range(keys)]
    trace = [f"k{i}" for i in rng.choices(range(keys), weights, k=n)]
    for start in range(0, n, 5000):  # scans of one-hit wonders
        trace[start : start + 300] = [f"scan{start}-{i}" for i in range(300)]
    return trace


def naive_lru(trace: list[str], capacity: int) -> int:
    order: OrderedDict[str, None] = OrderedDict()
    hits = 0
    for key in trace:
        if key in order:
            hits += 1
            order.move_to_end(key)
            continue
        if len(order) >= capacity:
            order.popitem(last=False)
        order[key] = None
    return hits


def naive_sieve(trace: list[str], capacity: int) -> int:
    """SIEVE as the NSDI'24 paper's pseudocode: a list, tail at index 0."""
    queue: list[str] = []
    visited: dict[str, bool] = {}
    hand: int | None = None
    hits = 0
    for key in trace:
        if key in visited:
            hits += 1
            visited[key] = True
            continue
        if len(queue) >= capacity:
            i = 0 if hand is None else hand
            while visited[queue[i]]:
                visited[queue[i]] = False
                i = i + 1 if i + 1 < len(queue) else 0
            del visited[queue[i]]
            del queue[i]
            hand = i if i < len(queue) else None
        queue.append(key)
        visited[key] = False
    return hits


@pytest.mark.parametrize("capacity", [1, 7, 50, 400])
def test_lru_matches_a_naive_lru_exactly(capacity):
    trace = synthetic()
    assert replay(trace, "lru", capacity).hits == naive_lru(trace, capacity)


@pytest.mark.parametrize("capacity", [1, 7, 50, 400])
def test_sieve_matches_the_papers_pseudocode_exactly(capacity):
    trace = synthetic()
    assert replay(trace, "sieve", capacity).hits == naive_sieve(trace, capacity)


def test_scan_resistant_policies_beat_lru_on_a_trace_with_scans():
    trace = synthetic()
    lru = replay(trace, "lru", 200).hit_ratio
    for name in ("s3fifo", "tinylfu"):
        assert replay(trace, name, 200).hit_ratio > lru + 0.01, name


def test_result_fields_add_up():
    trace = synthetic(3000, 300)
    result = replay(trace, "s3fifo", 30, trace="t", capacity_ratio=0.1)
    assert result.requests == 3000 and result.trace == "t"
    assert 0 < result.hits < 3000
    assert result.hit_ratio == result.hits / 3000
    # every miss but the first 30 (cold) made exactly one eviction
    assert result.evictions == 3000 - result.hits - 30
    assert result.us_per_hit >= 0 and result.us_per_eviction >= 0
    assert result.dropped >= 0 and result.seconds > 0


def test_capacity_is_a_rounded_share_of_distinct_keys():
    keys = [str(i) for i in range(13756)]
    assert capacities(keys, [0.001, 0.01, 0.1]) == [14, 138, 1376]
    assert capacities(["a"], [0.001]) == [1]
    with pytest.raises(ValueError):
        replay(keys, "lru", 0)


def test_trace_lines_may_carry_a_size_and_comments(tmp_path):
    path = tmp_path / "t.txt"
    path.write_text("# comment\n1\n2,512\n\n1\n")
    assert read_trace(path) == ["1", "2", "1"]


def test_cli_json_one_line_per_policy_and_capacity(tmp_path, capsys):
    path = tmp_path / "trace.txt"
    path.write_text("\n".join(synthetic(2000, 500)) + "\n")
    code = main(
        [str(path), "--capacity-ratio", "0.01,0.1", "--policy", "lru,sieve", "--json"]
    )
    assert code == 0
    rows = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert [(r["policy"], r["capacity_ratio"]) for r in rows] == [
        ("lru", 0.01),
        ("lru", 0.1),
        ("sieve", 0.01),
        ("sieve", 0.1),
    ]
    assert {r["trace"] for r in rows} == {"trace.txt"}
    assert all(r["requests"] == 2000 for r in rows)


def test_cli_replays_the_learned_policy_with_its_options(tmp_path, capsys):
    path = tmp_path / "trace.txt"
    path.write_text("\n".join(synthetic(20000, 2000)) + "\n")
    options = '{"learned": {"wait_for_fit": true, "refit": 1000, "min_samples": 500}}'
    argv = [str(path), "--capacity", "100", "--policy", "s3fifo,learned", "--json"]
    assert main([*argv, "--policy-options", options]) == 0
    rows = {
        r["policy"]: r for r in map(json.loads, capsys.readouterr().out.splitlines())
    }
    assert rows["learned"]["requests"] == 20000
    assert rows["learned"]["evictions"] > 0
    assert rows["learned"]["hit_ratio"] > 0.9 * rows["s3fifo"]["hit_ratio"]
    with pytest.raises(SystemExit):
        main([*argv, "--policy-options", "[1]"])


def test_cli_table_with_absolute_capacity_runs_as_a_module(tmp_path):
    path = tmp_path / "trace.txt"
    path.write_text("a\nb\na\nc\na\nb\n")
    out = subprocess.run(
        [sys.executable, "-m", "tiered_cache.simulate", str(path), "--capacity", "2"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.splitlines()
    assert out[0].split()[:3] == ["trace", "policy", "capacity"]
    rows = [line.split() for line in out[1:]]
    assert [(r[1], r[2], r[4]) for r in rows] == [
        ("lru", "2", "2"),
        ("s3fifo", "2", "2"),
        ("sieve", "2", "2"),
        ("tinylfu", "2", "2"),
    ]


@pytest.mark.parametrize(
    "argv",
    [
        ["--policy", "mystery"],
        ["--capacity", "0"],
        ["--capacity-ratio", "2"],
        ["--capacity", "3", "--capacity-ratio", "0.1"],
    ],
)
def test_cli_rejects_bad_arguments(tmp_path, argv, capsys):
    path = tmp_path / "t.txt"
    path.write_text("a\n")
    with pytest.raises(SystemExit) as info:
        main([str(path), *argv])
    assert info.value.code == 2


def test_cli_missing_trace_is_exit_2(tmp_path, capsys):
    assert main([str(tmp_path / "absent.txt")]) == 2
    assert "cannot read trace" in capsys.readouterr().err
