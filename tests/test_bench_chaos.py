"""bench/chaos.py: its oracle flags what it must, and the script runs end to end."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

BENCH = Path(__file__).resolve().parents[1] / "bench"
sys.path.insert(0, str(BENCH))

from chaos_oracle import BOUND, Read, Write, judge  # noqa: E402


def writes(key: str, *acks: float) -> list[Write]:
    """Versions 1, 2, ... of ``key``, each answered (acknowledged) at its time."""
    return [Write(key, v, at - 0.001, at, True) for v, at in enumerate(acks, 1)]


def read(key: str, sent: float, version: int | None, error: str = "") -> Read:
    return Read(key, sent, sent + 0.002, version, error)


def test_a_read_of_a_replaced_version_after_the_bound_is_stale():
    history = writes("k", 10.0, 20.0)  # version 2 acknowledged at t=20
    verdict = judge(
        history,
        [read("k", 20.0 + BOUND + 0.5, 1), read("k", 21.0, 1), read("k", 25.0, 2)],
        fault_end=19.0,
    )
    assert verdict.stale_beyond_bound == 1  # the one sent 3.5 s after the ack
    assert verdict.stale_reads == 2  # 1 s stale is not fresh, but within bound
    assert verdict.max_staleness == pytest.approx(BOUND + 0.5)
    assert verdict.client_errors == 0
    assert verdict.recovery == pytest.approx(20.0 + BOUND + 0.5 + 0.002 - 19.0)
    assert verdict.recovered  # the fresh read 1.5 s later
    assert "stale by" in verdict.examples[0]
    # Still stale in the run's last second: the recovery is only a lower bound.
    assert not judge(history, [read("k", 30.0, 1)], fault_end=19.0).recovered


def test_a_write_made_during_an_outage_is_judged_from_its_end():
    history = writes("k", 10.0, 12.0)  # version 2 acknowledged in the outage
    late = [read("k", 12.0 + BOUND + 0.5, 1)]  # 0.5 s after L2 answers again
    verdict = judge(history, late, fault_end=15.0, outage=(11.0, 15.0))
    assert verdict.stale_beyond_bound == 0  # within the bound of reconciliation
    assert verdict.stale_beyond_from_ack == 1  # shown, not hidden
    assert verdict.max_staleness == pytest.approx(0.5)
    later = [read("k", 15.0 + BOUND + 0.5, 1)]  # reconciled long ago: stale
    assert (
        judge(history, later, fault_end=15.0, outage=(11.0, 15.0)).stale_beyond_bound
        == 1
    )


def test_reads_racing_a_write_misses_and_failed_writes_are_not_stale():
    history = writes("k", 10.0, 20.0)
    history.append(Write("k", 3, 29.0, 30.0, False, "HTTP 500"))  # outcome unknown
    verdict = judge(
        history,
        [
            read("k", 19.99, 1),  # sent before version 2 was acknowledged
            read("k", 40.0, None),  # a miss is fine, the old value is not
            read("k", 40.0, 2),  # version 3 may or may not have been stored
            read("k", 40.0, 3),
        ],
        fault_end=None,
    )
    assert verdict.stale_beyond_bound == verdict.stale_reads == 0
    assert verdict.max_staleness == 0.0 and verdict.misses == 1
    assert verdict.client_errors == 1  # the failed write, nothing else
    assert verdict.recovery is None  # no fault in this scenario


def test_failed_calls_and_values_never_written_are_client_errors():
    verdict = judge(
        writes("k", 10.0),
        [
            read("k", 11.0, None, error="HTTP 500: Server Error"),
            read("k", 12.0, None, error="ConnectionResetError()"),
            read("k", 13.0, 7),  # no writer ever wrote version 7
            read("k", 15.0, 1),
        ],
        fault_end=12.5,
    )
    assert verdict.client_errors == 3
    assert verdict.stale_beyond_bound == 0
    assert verdict.requests == 5
    assert verdict.recovery == pytest.approx(13.002 - 12.5) and verdict.recovered
    assert any("never written" in note for note in verdict.examples)


@pytest.mark.redis_server
@pytest.mark.slow
def test_chaos_runs_end_to_end_on_gunicorn(tmp_path):
    """The quick baseline: gunicorn workers, load process, oracle, JSON."""
    out = tmp_path / "chaos.json"
    argv = [sys.executable, str(BENCH / "chaos.py"), "--quick", "--only", "baseline"]
    argv += ["--workers", "2", "--threads", "2", "--readers", "2"]
    argv += ["--before", "1", "--after", "2", "--json", str(out)]
    done = subprocess.run(argv, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    result = json.loads(out.read_text())["baseline"]
    assert result["reads"] > 100 and result["requests"] > result["reads"]
    assert result["client_errors"] == result["stale_beyond_bound"] == 0
    assert "baseline" in done.stdout and "stale > bound" in done.stdout
