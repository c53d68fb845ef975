"""The demo site works with the three tiers, and without Redis on L1 + L3."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from tests.support.redis_servers import find_free_port

PROBE = Path(__file__).with_name("probe.py")


def run_probe(redis_url: str, **extra: str) -> dict:
    env = {**os.environ, "REDIS_URL": redis_url, **extra}
    env.pop("DJANGO_SETTINGS_MODULE", None)
    env.pop("TESTPROJECT_CHAOS", None)
    done = subprocess.run(
        [sys.executable, str(PROBE)],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    return json.loads(done.stdout.strip().splitlines()[-1])


def elapsed(page: str) -> float:
    return float(re.search(r"([0-9.]+)\s*ms", page).group(1))


@pytest.mark.redis_server
def test_demo_on_three_tiers(redis_server):
    facts = run_probe(redis_server.url(3))
    assert facts["tiers"] == ["l1", "l2", "l3"]
    for url, results in facts["pages"].items():
        assert [status for status, _ in results] == [200] * len(results), url
    first, second = facts["pages"]["/slow/7/"]
    assert elapsed(first[1]) >= 50  # the simulated upstream ran
    assert elapsed(second[1]) < 50  # served from the cache
    page_first, page_second = facts["pages"]["/page/"]
    assert page_first[1] == page_second[1]  # cache_page served the same page
    assert facts["stats"]["l2"]["sets"] >= 1
    assert facts["chaos"] == 404  # the chaos views are off by default
    assert facts["metrics"]["anonymous"] == 403  # /metrics: staff only
    assert facts["metrics"]["staff"] == 200
    scrape = facts["metrics"]["staff_body"]
    assert 'tiered_cache_requests_total{cache="default"' in scrape


def test_demo_falls_back_to_l1_l3_without_redis():
    facts = run_probe(f"redis://127.0.0.1:{find_free_port()}/0")
    assert facts["tiers"] == ["l1", "l3"]
    assert facts["pages"]["/slow/7/"][1][0] == 200


@pytest.mark.redis_server
def test_demo_metrics_answer_when_redis_goes_away(tmp_path):
    from tests.support.redis_servers import RedisServer

    with RedisServer.start(tmp_path / "redis") as server:
        facts = run_probe(server.url(0), PROBE_STOP_REDIS="1")
    assert facts["tiers"] == ["l1", "l2", "l3"]
    status, scrape = facts["metrics_redis_down"]
    assert status == 200  # a scrape, not a server error (issue 8)
    assert 'tiered_cache_store_up{cache="default"} 0.0' in scrape
