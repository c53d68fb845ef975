"""bench/policies.py: runs end to end on a small trace directory, section by markers."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SCRIPT = ROOT / "bench" / "policies.py"


def run(*args: str, env: dict | None = None) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, str(SCRIPT), *args],
        capture_output=True,
        text=True,
        env={**os.environ, **(env or {})},
    )


def test_without_a_trace_directory_it_says_how_to_give_one(tmp_path):
    env = {k: v for k, v in os.environ.items() if k != "TIERED_CACHE_TRACES"}
    done = subprocess.run(
        [sys.executable, str(SCRIPT), "--results", str(tmp_path / "R.md")],
        capture_output=True,
        text=True,
        env=env,
    )
    assert done.returncode == 2
    assert "TIERED_CACHE_TRACES" in done.stderr
    assert not (tmp_path / "R.md").exists()


def test_writes_its_section_once_and_leaves_the_rest(tmp_path):
    pytest.importorskip("matplotlib")
    traces = tmp_path / "traces"
    traces.mkdir()
    keys = [f"{(i * i) % 97}" for i in range(3000)] + [str(i) for i in range(500)]
    (traces / "cache2k_web12.txt").write_text("\n".join(keys) + "\n")
    results = tmp_path / "RESULTS.md"
    results.write_text("# Benchmark results\n\n## Other section\n\nkept\n")
    outputs = [
        "--results",
        str(results),
        "--png",
        str(tmp_path / "p.png"),
        "--docs",
        str(tmp_path / "t.inc"),
        "--policy",
        "lru,sieve",
        "--json",
        str(tmp_path / "rows.jsonl"),
    ]
    done = run(*outputs, env={"TIERED_CACHE_TRACES": str(traces)})
    assert done.returncode == 0, done.stderr
    assert "| web12 @ 0.1% (1) |" in done.stdout
    first = results.read_text()
    assert "## Other section\n\nkept" in first
    assert first.count("## Eviction policies on real traces") == 1
    assert "34.65" in first  # the reference OPT of web12 @ 0.1% sits beside ours
    assert (tmp_path / "p.png").read_bytes()[:4] == b"\x89PNG"
    assert '"web12 @ 1% (' in (tmp_path / "t.inc").read_text()
    again = run("--from-json", str(tmp_path / "rows.jsonl"), *outputs[:6])
    assert again.returncode == 0, again.stderr
    assert results.read_text().count("## Eviction policies on real traces") == 1
