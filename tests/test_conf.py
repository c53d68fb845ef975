from __future__ import annotations

from pathlib import Path

import pytest
from django.core.exceptions import ImproperlyConfigured

from tiered_cache.conf import default_l3_directory, parse_options

L1 = {"BACKEND": "tiered_cache.tiers.MemoryTier"}


def test_embedded_default_is_l1_plus_l3():
    options = parse_options(None)
    assert options.embedded_default
    assert [t.name for t in options.tiers] == ["l1", "l3"]
    assert Path(options.tiers[1].spec["LOCATION"]).is_absolute()
    assert options.fail_open is True
    assert options.l1_max_staleness == 60.0


def test_default_l3_directory_is_per_project(settings, tmp_path, monkeypatch):
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    settings.BASE_DIR = tmp_path / "shop"
    first = default_l3_directory()
    settings.BASE_DIR = tmp_path / "blog"
    second = default_l3_directory()
    assert first != second
    assert first.parent == tmp_path / "tiered_cache"
    assert first.name.startswith("shop-")


def test_names_default_by_adapter_and_must_be_unique():
    options = parse_options({"TIERS": [L1, {"BACKEND": "tests.doubles.FlakyTier"}]})
    assert [t.name for t in options.tiers] == ["l1", "t2"]
    with pytest.raises(ImproperlyConfigured, match="unique"):
        parse_options({"TIERS": [L1, L1]})


def test_same_configuration_same_share_key():
    a = parse_options({"TIERS": [L1], "BREAKER": {"OPEN_SECONDS": 2}})
    b = parse_options({"BREAKER": {"OPEN_SECONDS": 2}, "TIERS": [dict(L1)]})
    c = parse_options({"TIERS": [L1], "BREAKER": {"OPEN_SECONDS": 3}})
    assert a.share_key == b.share_key != c.share_key
    assert a.breaker.open_seconds == 2


def test_unknown_keys_are_collected_not_raised():
    options = parse_options({"TIERS": [L1], "FAIL_OPNE": False, "MAX_ENTRIES": 5})
    assert options.unknown == ("FAIL_OPNE",)


def test_clock_by_dotted_path():
    options = parse_options({"TIERS": [L1], "CLOCK": "time.monotonic"})
    import time

    assert options.clock is time.monotonic


@pytest.mark.parametrize(
    "options",
    [
        {"TIERS": []},
        {"TIERS": "l1"},
        {"TIERS": [{"LOCATION": "x"}]},
        {"TIERS": [{**L1, "OPTIONS": "x"}]},
        {"TIERS": [{**L1, "NAME": "L1"}]},
        {"TIERS": [{"BACKEND": "django.core.cache.backends.locmem.LocMemCache"}]},
        {"TIERS": [{"BACKEND": "no.such.Backend"}]},
        {"TIERS": [L1], "FAIL_OPEN": "yes"},
        {"TIERS": [L1], "L1_MAX_STALENESS": 0},
        {"TIERS": [L1], "L1_MAX_STALENESS": True},
        {"TIERS": [L1], "CLOCK": 5},
        {"TIERS": [L1], "CLOCK": "no.such.clock"},
        {"TIERS": [L1], "BREAKER": []},
        {"TIERS": [L1], "BREAKER": {"THRESHOLD": 1}},
        {"TIERS": [L1], "BREAKER": {"OPEN_SECONDS": -1}},
        {"TIERS": [L1], "BREAKER": {"WINDOW": float("inf")}},
    ],
)
def test_bad_options_raise(options):
    with pytest.raises(ImproperlyConfigured):
        parse_options(options)


def test_staleness_none_disables_the_cap():
    assert (
        parse_options({"TIERS": [L1], "L1_MAX_STALENESS": None}).l1_max_staleness
        is None
    )


def test_embedded_default_backend_works_with_nothing_running(
    settings, tmp_path, monkeypatch
):
    from tiered_cache.backend import TieredCache

    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    settings.BASE_DIR = tmp_path / "project"
    cache = TieredCache("", {"KEY_PREFIX": "embedded"})
    assert [t.name for t in cache.tiers] == ["l1", "l3"]
    _wait_until_open(cache.tier("l3"))  # a loaded machine may take over 0.5 s
    cache.set("k", {"v": 1})
    cache.tier("l1").delete(cache.stored_key("k"))
    assert cache.get("k") == {"v": 1}  # from L3 on local disk
    assert list((tmp_path / "tiered_cache").iterdir())[0].name.startswith("project-")


def _wait_until_open(disk) -> None:
    from tests.support.redis_servers import wait_until
    from tiered_cache.exceptions import TierUnavailable

    def opened() -> bool:
        try:
            disk.has_key("probe")
        except TierUnavailable:
            return False
        return True

    wait_until(opened, timeout=10, what="the L3 folder open")
