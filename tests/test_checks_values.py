"""``manage.py check`` validates the VALUES inside a tier's OPTIONS and LOCATION.

Each bad value is one ``tiered_cache.E001`` whose hint names the setting, the
value and what is expected; the check and the tier's constructor run the same
``validate_spec``, so what the check accepts the tier takes, and what it
refuses the cache refuses with the same text on every call.
"""

from __future__ import annotations

import importlib.util
from io import StringIO

import pytest
from django.core.exceptions import ImproperlyConfigured
from django.core.management import call_command
from django.core.management.base import SystemCheckError

from tiered_cache.backend import TieredCache

L1 = {"NAME": "l1", "BACKEND": "tiered_cache.tiers.MemoryTier"}
L2 = {
    "NAME": "l2",
    "BACKEND": "django_redis.cache.RedisCache",
    "LOCATION": "redis://127.0.0.1:6399/0",
}


def l3(tmp_path, **options):
    return {
        "NAME": "l3",
        "BACKEND": "diskcache.DjangoCache",
        "LOCATION": str(tmp_path / "l3"),
        "OPTIONS": options,
    }


def with_options(spec, **options):
    return {**spec, "OPTIONS": options}


def run_check(settings, conf) -> str:
    settings.CACHES = {"default": {"BACKEND": "tiered_cache.TieredCache", **conf}}
    out = StringIO()
    with pytest.raises(SystemCheckError) as info:
        call_command("check", stdout=out, stderr=out)
    report = str(info.value)
    assert "Traceback" not in report
    return report


def no_zstandard(monkeypatch):
    real = importlib.util.find_spec
    monkeypatch.setattr(
        importlib.util,
        "find_spec",
        lambda name, *a: None if name == "zstandard" else real(name, *a),
    )


CASES = [
    # (id, tiers(tmp_path), setting named in the hint, value repr, expected words)
    ("l1-max-bytes-str", lambda p: [with_options(L1, MAX_BYTES="64MB")],
     "OPTIONS['MAX_BYTES']", "'64MB'", "positive integer or None"),
    ("l1-max-bytes-negative", lambda p: [with_options(L1, MAX_BYTES=-1)],
     "OPTIONS['MAX_BYTES']", "-1", "positive integer or None"),
    ("l1-max-entries", lambda p: [with_options(L1, MAX_ENTRIES=0)],
     "OPTIONS['MAX_ENTRIES']", "0", "positive integer or None"),
    ("l1-policy", lambda p: [with_options(L1, POLICY="lfu")],
     "OPTIONS['POLICY']", "'lfu'",
     "one of ['learned', 'lru', 's3fifo', 'sieve', 'tinylfu']"),
    ("l1-policy-options",
     lambda p: [with_options(L1, POLICY="tinylfu", POLICY_OPTIONS={"window_ratio": 2})],
     "OPTIONS['POLICY']", "'tinylfu'", "window_ratio must be in [0, 1), not 2"),
    ("l3-compressor", lambda p: [L1, l3(p, COMPRESSOR="lz4")],
     "OPTIONS['COMPRESSOR']", "'lz4'", "one of 'zlib', 'zstd'"),
    ("l2-location-scheme", lambda p: [L1, {**L2, "LOCATION": "127.0.0.1:16401"}],
     "LOCATION", "'127.0.0.1:16401'", "redis://, rediss:// or unix://"),
    ("l2-location-missing", lambda p: [L1, {**L2, "LOCATION": None}],
     "LOCATION", "None", "redis://, rediss:// or unix://"),
    ("l2-socket-timeout", lambda p: [L1, with_options(L2, SOCKET_TIMEOUT="fast")],
     "OPTIONS['SOCKET_TIMEOUT']", "'fast'", "number of seconds"),
    ("l2-connect-timeout",
     lambda p: [L1, with_options(L2, SOCKET_CONNECT_TIMEOUT="1s")],
     "OPTIONS['SOCKET_CONNECT_TIMEOUT']", "'1s'", "number of seconds"),
    ("l2-max-value-bytes", lambda p: [L1, with_options(L2, MAX_VALUE_BYTES="8MB")],
     "OPTIONS['MAX_VALUE_BYTES']", "'8MB'", "positive integer or None"),
    ("l2-compress-min-bytes",
     lambda p: [L1, with_options(L2, COMPRESS_MIN_BYTES="1k")],
     "OPTIONS['COMPRESS_MIN_BYTES']", "'1k'", "integer >= 0 or None"),
    ("l1-compress-level", lambda p: [with_options(L1, COMPRESS_LEVEL="max")],
     "OPTIONS['COMPRESS_LEVEL']", "'max'", "an integer or None"),
    ("l3-location-missing", lambda p: [L1, {**l3(p), "LOCATION": ""}],
     "LOCATION", "''", "the cache directory"),
    ("l3-size-limit", lambda p: [L1, l3(p, size_limit="10GB")],
     "OPTIONS['size_limit']", "'10GB'", "integer >= 0"),
    ("l3-cull-limit", lambda p: [L1, l3(p, cull_limit=-1)],
     "OPTIONS['cull_limit']", "-1", "integer >= 0"),
    ("l3-open-timeout", lambda p: [L1, l3(p, OPEN_TIMEOUT="1")],
     "OPTIONS['OPEN_TIMEOUT']", "'1'", "seconds >= 0"),
]  # fmt: skip


@pytest.mark.parametrize(
    ("tiers", "setting", "value", "expected"),
    [case[1:] for case in CASES],
    ids=[case[0] for case in CASES],
)
def test_a_bad_value_is_one_check_message_with_its_hint(
    settings, tmp_path, tiers, setting, value, expected
):
    report = run_check(settings, {"OPTIONS": {"TIERS": tiers(tmp_path)}})
    assert report.count("(tiered_cache.E001)") == 1, report
    assert report.count("HINT:") == 1, report
    hint = report.split("HINT:", 1)[1]
    assert f"{setting} must be" in hint and value in hint and expected in hint


def test_the_cache_refuses_the_same_value_with_the_same_text(settings, tmp_path):
    """The runtime error is the check's message and hint, on every call."""
    for _, tiers, setting, value, expected in CASES:
        cache = TieredCache("", {"OPTIONS": {"TIERS": tiers(tmp_path)}})
        for call in (cache.set, cache.get):
            with pytest.raises(ImproperlyConfigured) as info:
                call("k", 1)
            text = str(info.value)
            assert f"{setting} must be" in text and value in text
            assert expected in text and "misconfigured" in text


@pytest.mark.parametrize("tier", ["l1", "l3"])
def test_zstd_without_zstandard_is_a_check_message(
    settings, tmp_path, monkeypatch, tier
):
    no_zstandard(monkeypatch)
    tiers = (
        [with_options(L1, COMPRESSOR="zstd")]
        if tier == "l1"
        else [L1, l3(tmp_path, COMPRESSOR="zstd")]
    )
    report = run_check(settings, {"OPTIONS": {"TIERS": tiers}})
    assert report.count("(tiered_cache.E001)") == 1
    assert "OPTIONS['COMPRESSOR'] must be 'zlib' unless the zstandard" in report
    assert f"tier {tier!r}" in report


def test_every_bad_value_of_every_tier_is_reported(settings, tmp_path):
    tiers = [
        with_options(L1, MAX_BYTES="64MB", POLICY="lfu"),
        {**L2, "LOCATION": "127.0.0.1:16401"},
        l3(tmp_path, size_limit="10GB"),
    ]
    report = run_check(settings, {"OPTIONS": {"TIERS": tiers}})
    assert report.count("(tiered_cache.E001)") == 4
    for words in ("MAX_BYTES", "POLICY", "LOCATION", "size_limit"):
        assert f"{words}" in report


def test_options_as_a_list_is_one_message(settings):
    report = run_check(settings, {"OPTIONS": [L1]})
    assert report.count("(tiered_cache.E001)") == 1
    assert "OPTIONS must be a dict, not a list" in report
    cache = TieredCache("", {"OPTIONS": [L1]})
    with pytest.raises(ImproperlyConfigured, match="OPTIONS must be a dict"):
        cache.get("k")


@pytest.mark.parametrize(
    "tiers",
    [
        [with_options(L1, MAX_BYTES=None, MAX_ENTRIES=10, COMPRESS_LEVEL=None)],
        [L1, with_options(L2, SOCKET_TIMEOUT=0.5, SOCKET_CONNECT_TIMEOUT=None)],
        [L1, {**L2, "LOCATION": ["redis://127.0.0.1:6399/0", "unix:///tmp/r.s"]}],
    ],
)
def test_good_values_pass(settings, tiers):
    from tiered_cache.checks import check_tiered_caches

    settings.CACHES = {
        "default": {"BACKEND": "tiered_cache.TieredCache", "OPTIONS": {"TIERS": tiers}}
    }
    assert [m for m in check_tiered_caches() if m.id.endswith("E001")] == []


def test_good_disk_values_pass(settings, tmp_path):
    from tiered_cache.checks import check_tiered_caches

    tiers = [L1, l3(tmp_path, size_limit=10 * 2**30, timeout=0, OPEN_TIMEOUT=1)]
    settings.CACHES = {
        "default": {"BACKEND": "tiered_cache.TieredCache", "OPTIONS": {"TIERS": tiers}}
    }
    assert [m.id for m in check_tiered_caches() if m.level >= 40] == []
