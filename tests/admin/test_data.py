"""The pages over the metrics interface (``read_summary``, ``read_series``,
``flush_now``), fed by a stand-in written to that interface's documented
shapes: the real pipeline lives in ``tiered_cache.metrics``, built apart.
"""

from __future__ import annotations

import re
import time

import pytest
from django.urls import reverse

from tiered_cache_admin import data


class Pipeline:
    """Answers as ``tiered_cache.metrics`` does, from fixed numbers."""

    def __init__(self) -> None:
        self.flushed: list[str | None] = []
        self.windows: list[tuple[float, float]] = []

    def read_summary(self, alias, since=None):
        tier = {"hits": 90, "misses": 10, "hit_ratio": 0.9, "sets": 5, "deletes": 1}
        return {
            "total": {**tier, "errors": 2},
            "tiers": {
                "l1": {**tier, "breaker": None, "bytes": 2048, "entries": 12,
                       "errors": 0, "errors_by_kind": {}},
                "l2": {"hits": 6, "misses": 4, "hit_ratio": 0.6, "sets": 5,
                       "deletes": 1, "errors": 2, "breaker": "open",
                       "bytes": 4096, "entries": 30,
                       "errors_by_kind": {"timeout": 2}},
            },
            "groups": {
                "user": {"hits": 70, "misses": 5, "hit_ratio": 70 / 75},
                "other": {"hits": 20, "misses": 5, "hit_ratio": 0.8},
                "-": {"hits": 1, "misses": 1, "hit_ratio": 0.5},
            },
            "bus": {"last_gap": time.time() - 120},
            "latency": {
                "get": {"p50_ms": 0.004, "p99_ms": 1.5, "count": 100},
                "read_journal": {"p50_ms": 100.0, "p99_ms": 250.0, "count": 7},
            },
            "since": 86400.0,  # the window asked for
            "covered": 50.0,  # the part of it holding counts
            "processes": 3,
        }  # fmt: skip

    def read_series(self, alias, window, step):
        self.windows.append((window, step))
        now = time.time()
        return {
            "tiers": {
                "l1": [{"t": now - 600 + 60 * i, "hits": 9, "misses": 1,
                        "hit_ratio": 0.9} for i in range(10)],
                "l2": [{"t": now - 600 + 60 * i, "hits": 1, "misses": 1,
                        "hit_ratio": 0.5} for i in range(10)],
            }
        }  # fmt: skip

    def flush_now(self, alias=None):
        self.flushed.append(alias)


@pytest.fixture
def pipeline(monkeypatch):
    stand_in = Pipeline()
    monkeypatch.setattr(data, "_metrics", stand_in)
    return stand_in


def url(name: str) -> str:
    return reverse(f"admin:tiered_cache_admin_{name}", args=["default"])


def test_overview_shows_the_deployments_numbers(dash_cache, client_as, pipeline):
    page = client_as("viewer").get(url("overview"), {"window": "day"}).content.decode()
    assert pipeline.flushed == ["default"]  # this process's counters first
    assert pipeline.windows == [(86400.0, 900.0)]
    total = re.search(r'id="tc-total-hit-ratio">([^<]*)<', page).group(1)
    assert total == "90.0 %"
    rows = dict(re.findall(r'data-tier="(\w+)">.*?tc-hit-ratio">([^<]*)<', page, re.S))
    assert rows == {"l1": "90.0 %", "l2": "60.0 %"}
    assert ">2.00<" in page  # (90 + 10) requests / the 50 s holding counts
    assert "4 µs" in page and "1.5 ms" in page  # latency p50 / p99
    user, internal = (
        re.findall(r"<tr><td>(\w+)</td>", section)
        for section in re.findall(
            r'<tbody id="tc-latency-\w+">(.*?)</tbody>', page, re.S
        )
    )
    assert (user, internal) == (["get"], ["read_journal"])  # apart (issue 8)
    assert "2 min ago" in page  # the last bus gap
    assert "open" in page and "timeout: 2" in page
    assert page.count("<polyline") == 2


def test_groups_page_lists_groups_most_used_first(dash_cache, client_as, pipeline):
    page = client_as("actor").get(url("groups")).content.decode()
    cells = re.findall(r"<tr><td>([\w-]+)</td><td class=\"tc-num\">([^<]*)<", page)
    assert cells == [("user", "93.3 %"), ("other", "80.0 %"), ("-", "50.0 %")]
    # "other" gathers the groups past the top N, "-" the keys with no ":":
    # neither is a prefix to invalidate.
    assert page.count('name="group" value=') == 1
