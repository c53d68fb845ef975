"""``warm()`` over a real redis-server: plan, warm, resume, publish, preload."""

from __future__ import annotations

import pytest
from django.core.cache import caches

from tests.warming.conftest import record_reads
from tiered_cache.warming.preload import preload
from tiered_cache.warming.registry import group_of, warmer
from tiered_cache.warming.run import CHECKPOINT, read_warm_set, warm

pytestmark = pytest.mark.redis_server


def test_group_is_the_part_before_the_first_colon():
    assert group_of("product:4:2") == "product"
    assert group_of("plain") == "plain"
    with pytest.raises(ValueError):
        warmer("a:b")


def test_hot_missing_keys_are_warmed_best_first_and_published(product_warmer):
    alias, calls = product_warmer()
    record_reads(alias, {"p:1": 3, "p:2": 5, "p:3": 1, "other:1": 2})
    report = warm(alias, limit=3)
    assert calls == ["p:2", "p:1"]  # other:1 has no warmer; p:3 is past the limit
    assert (report.planned, report.warmed, report.no_warmer) == (3, 2, 1)
    assert report.ok and report.published == 2
    assert [key for key, _ in read_warm_set(alias)] == ["p:2", "p:1"]
    assert caches[alias].tier("l2").has_key(caches[alias].stored_key("p:2"))


def test_a_key_held_by_l2_is_not_warmed_again(product_warmer):
    alias, calls = product_warmer()
    record_reads(alias, {"p:1": 2})
    caches[alias].set("p:1", "already")
    report = warm(alias)
    assert (report.held, report.warmed, calls) == (1, 0, [])


def test_interrupted_run_saves_a_checkpoint_and_resumes_there(product_warmer):
    def interrupt(calls: int) -> None:
        if calls == 2:
            raise KeyboardInterrupt

    alias, calls = product_warmer(interrupt)
    record_reads(alias, {"p:1": 4, "p:2": 3, "p:3": 2})
    first = warm(alias)
    assert first.interrupted and not first.ok
    from tiered_cache.history.flush import store_of

    assert store_of(alias).get(CHECKPOINT) is not None
    second = warm(alias)
    assert second.resumed_from == 1
    assert calls == ["p:1", "p:2", "p:2", "p:3"]
    assert second.ok and second.warmed == 2
    assert store_of(alias).get(CHECKPOINT) is None


def test_preload_copies_the_warm_set_into_l1(product_warmer):
    alias, _ = product_warmer()
    record_reads(alias, {"p:1": 2, "p:2": 1})
    assert warm(alias).published == 2
    cache = caches[alias]
    l1 = cache.tier("l1")
    for key in ("p:1", "p:2"):
        l1.delete(cache.stored_key(key))
    assert preload(alias, rate=1e9) == 2
    assert l1.get_value(cache.stored_key("p:1"), None) == "value of p:1"


def test_hot_keys_without_warmer_get_their_pages_requested_once(warm_alias, settings):
    settings.ROOT_URLCONF = "tests.warming.urls"
    alias = warm_alias(WARMING={"URLS": ["/home/"], "SITEMAP": "/sitemap.xml"})
    record_reads(alias, {"page:home": 2, "page:about": 1})
    first = warm(alias)
    assert (first.no_warmer, first.pages, first.pages_failed) == (2, 2, 0)
    assert first.ok and first.published == 2  # the views filled both keys
    second = warm(alias)
    assert (second.held, second.pages) == (2, 0)


def test_a_page_that_fails_is_counted_and_the_run_is_not_ok(warm_alias, settings):
    settings.ROOT_URLCONF = "tests.warming.urls"
    alias = warm_alias(WARMING={"URLS": ["/nowhere/"]})
    record_reads(alias, {"page:home": 1})
    report = warm(alias)
    assert (report.pages, report.pages_failed, report.ok) == (1, 1, False)
    assert report.errors == ["/nowhere/: HTTP 404"]


def test_start_preloads_starts_a_thread_only_with_preload_on(product_warmer, settings):
    from tiered_cache.warming.preload import start_preloads

    alias, _ = product_warmer()
    record_reads(alias, {"p:1": 1})
    warm(alias)
    cache = caches[alias]
    cache.tier("l1").delete(cache.stored_key("p:1"))
    assert start_preloads([alias]) == []  # PRELOAD is off by default
    options = settings.CACHES[alias]["OPTIONS"]
    options["WARMING"] = {"PRELOAD": True, "PRELOAD_RATE": 1e9}
    (thread,) = start_preloads([alias])
    thread.join(timeout=10)
    l1 = caches[alias].tier("l1")
    assert l1.get_value(caches[alias].stored_key("p:1"), None) == "value of p:1"


def test_preload_stops_when_l1_is_nearly_full(warm_alias, warmers, settings):
    from tiered_cache.warming.registry import warmer as register

    alias = warm_alias()
    small = {
        **settings.CACHES[alias]["OPTIONS"]["TIERS"][0],
        "OPTIONS": {"MAX_ENTRIES": 10},
    }
    settings.CACHES[alias]["OPTIONS"]["TIERS"][0] = small
    register("p", cache=alias)(str.upper)
    record_reads(alias, {f"p:{i}": 1 for i in range(20)})
    assert warm(alias).published == 20
    cache = caches[alias]
    for i in range(20):
        cache.tier("l1").delete(cache.stored_key(f"p:{i}"))
    assert preload(alias, rate=1e9) == 9  # 90% of 10 entries


class InterruptedWait:
    """A ``stop`` event whose first wait is interrupted (SIGINT while pacing)."""

    def wait(self, seconds: float) -> bool:
        raise KeyboardInterrupt


def test_interrupted_while_pacing_resumes_after_the_key_it_warmed(product_warmer):
    alias, calls = product_warmer()
    record_reads(alias, {"p:1": 2, "p:2": 1})
    first = warm(alias, rate=1.0, stop=InterruptedWait())
    assert first.interrupted and first.warmed == 1
    second = warm(alias)
    assert second.resumed_from == 1 and second.held == 0
    assert calls == ["p:1", "p:2"]
