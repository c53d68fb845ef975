"""System checks: each misconfiguration gets its id and a hint."""

from __future__ import annotations

import pytest

from tiered_cache.checks import check_tiered_caches

L1 = {"NAME": "l1", "BACKEND": "tiered_cache.tiers.MemoryTier"}


def ids(settings, conf):
    settings.CACHES = {"default": {"BACKEND": "tiered_cache.TieredCache", **conf}}
    messages = check_tiered_caches()
    assert all(m.hint for m in messages)
    return sorted(m.id for m in messages)


def disk(location):
    return {"NAME": "l3", "BACKEND": "diskcache.DjangoCache", "LOCATION": location}


def test_good_configuration_is_clean(settings, tmp_path):
    settings.CACHES = {
        "default": {"BACKEND": "tiered_cache.TieredCache"},
        "other": {"BACKEND": "django.core.cache.backends.locmem.LocMemCache"},
    }
    assert check_tiered_caches() == []


@pytest.mark.parametrize(
    ("conf", "expected"),
    [
        ({"OPTIONS": {"TIERS": [L1], "FAIL_OPNE": True}}, ["tiered_cache.E002"]),
        ({"OPTIONS": {"TIERS": [L1], "FAIL_OPEN": "yes"}}, ["tiered_cache.E001"]),
        (
            {
                "OPTIONS": {
                    "TIERS": [
                        {"BACKEND": "django.core.cache.backends.dummy.DummyCache"}
                    ]
                }
            },
            ["tiered_cache.E003"],
        ),
        ({"OPTIONS": {"TIERS": [{**L1, "PREFIX": "x"}]}}, ["tiered_cache.E004"]),
        ({"OPTIONS": {"TIERS": [{**L1, "KEY_PREFIX": "x"}]}}, ["tiered_cache.W001"]),
        ({"OPTIONS": {"TIERS": [L1, disk("relative/dir")]}}, ["tiered_cache.W002"]),
        ({"OPTIONS": {"TIERS": [L1, disk("/tmp/l3")]}}, ["tiered_cache.W003"]),
        ({"OPTIONS": {"TIERS": [L1], "MAX_ENTRIES": 30}}, ["tiered_cache.W004"]),
        (
            {"OPTIONS": {"TIERS": [L1], "INVALIDATION": {"VIA": "l2"}}},
            ["tiered_cache.W005"],
        ),
        (
            {"OPTIONS": {"TIERS": [L1]}, "KEY_FUNCTION": "tests.test_checks.key_first"},
            ["tiered_cache.W006"],
        ),
        (
            {"OPTIONS": {"TIERS": [L1]}, "LOCATION": "redis://h/1"},
            ["tiered_cache.W007"],
        ),
        ({"OPTIONS": {"TIERS": [L1]}, "LOCATION": "/var/cache"}, ["tiered_cache.W007"]),
        ({"OPTIONS": {"TIERS": [L1]}, "LOCATION": "sessions"}, []),
        (
            {"OPTIONS": {"TIERS": [{"BACKEND": "tests.doubles.FlakyTier"}, L1]}},
            ["tiered_cache.W008"],
        ),
    ],
)
def test_each_misconfiguration_has_its_id(settings, conf, expected):
    assert ids(settings, conf) == expected


def key_first(key, prefix, version):
    return f"{key}:{prefix}:{version}"


def test_checks_run_through_django(settings):
    from django.core import checks

    settings.CACHES = {
        "default": {"BACKEND": "tiered_cache.TieredCache", "OPTIONS": {"BOGUS": 1}}
    }
    messages = checks.run_checks(tags=[checks.Tags.caches])
    assert "tiered_cache.E002" in {m.id for m in messages}
