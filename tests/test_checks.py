"""System checks: each misconfiguration gets its id and a hint."""

from __future__ import annotations

import pytest

from tiered_cache.checks import check_tiered_caches

L1 = {"NAME": "l1", "BACKEND": "tiered_cache.tiers.MemoryTier"}
REDIS = {
    "NAME": "l2",
    "BACKEND": "django_redis.cache.RedisCache",
    "LOCATION": "redis://127.0.0.1:6399/0",
}


def ids(settings, conf):
    settings.CACHES = {"default": {"BACKEND": "tiered_cache.TieredCache", **conf}}
    messages = check_tiered_caches()
    assert all(m.hint for m in messages)
    return sorted(m.id for m in messages)


def disk(location):
    return {"NAME": "l3", "BACKEND": "diskcache.DjangoCache", "LOCATION": location}


def test_good_configuration_is_clean(settings, tmp_path):
    settings.CACHES = {
        "default": {"BACKEND": "tiered_cache.TieredCache", "OPTIONS": {"TIERS": [L1]}},
        "other": {"BACKEND": "django.core.cache.backends.locmem.LocMemCache"},
    }
    assert check_tiered_caches() == []


def test_embedded_default_says_where_it_keeps_data(settings):
    from tiered_cache.conf import default_l3_directory

    settings.CACHES = {"default": {"BACKEND": "tiered_cache.TieredCache"}}
    (info,) = check_tiered_caches()
    assert info.id == "tiered_cache.I001" and info.hint
    assert str(default_l3_directory()) in info.msg
    assert info.obj == "CACHES['default']"


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
            ["tiered_cache.E001"],  # VIA names no tier
        ),
        ({"OPTIONS": {"TIERS": [L1], "INVALIDATION": True}}, ["tiered_cache.E007"]),
        (
            {"OPTIONS": {"TIERS": [L1, REDIS], "INVALIDATION": False}},
            ["tiered_cache.W005"],
        ),
        ({"OPTIONS": {"TIERS": [L1, REDIS]}}, []),
        (
            {"OPTIONS": {"TIERS": [L1, REDIS], "INVALIDATION": {"HEARTBEAT": 0}}},
            ["tiered_cache.E001"],
        ),
        (
            {"OPTIONS": {"TIERS": [L1, REDIS], "INVALIDATION": {"VIA": "l2", "X": 1}}},
            ["tiered_cache.E001"],
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
        ({"TIMEOUT": -1, "OPTIONS": {"TIERS": [L1]}}, ["tiered_cache.E006"]),
        (
            {
                "OPTIONS": {
                    "TIERS": [L1, REDIS | {"OPTIONS": {"IGNORE_EXCEPTIONS": True}}]
                }
            },
            ["tiered_cache.W009"],
        ),
        (
            {"OPTIONS": {"TIERS": [L1, REDIS | {"LOCATION": "redis://h:notaport/0"}]}},
            ["tiered_cache.E001"],  # the check runs the tier's own validate_spec
        ),
        ({"TIMEOUT": 0, "OPTIONS": {"TIERS": [L1]}}, []),
        ({"TIMEOUT": None, "OPTIONS": {"TIERS": [L1]}}, []),
        ({"OPTIONS": {"TIERS": {"l1": L1}}}, ["tiered_cache.E001"]),
        (
            {"OPTIONS": {"TIERS": [{**L1, "OPTIONS": {"MAX_BYTE": 1}}]}},
            ["tiered_cache.E001"],
        ),
        (
            {"OPTIONS": {"TIERS": [L1, disk("/tmp/l3") | {"OPTIONS": {"SIZE": 1}}]}},
            ["tiered_cache.E001"],
        ),
        (
            {"OPTIONS": {"TIERS": [L1, disk("/tmp/l3") | {"OPTIONS": {"sise": 1}}]}},
            ["tiered_cache.E001"],
        ),
        (
            {
                "OPTIONS": {
                    "TIERS": [L1, disk("/tmp/l3") | {"OPTIONS": {"SIZE_LIMIT": 1}}]
                }
            },
            ["tiered_cache.E001"],
        ),
    ],
)
def test_each_misconfiguration_has_its_id(settings, conf, expected):
    assert ids(settings, conf) == expected


def key_first(key, prefix, version):
    return f"{key}:{prefix}:{version}"


@pytest.mark.parametrize(
    ("spec", "known"),
    [
        (L1, "MAX_BYTES"),
        (
            {"NAME": "l2", "BACKEND": "django_redis.cache.RedisCache", "LOCATION": "x"},
            "SOCKET_TIMEOUT",
        ),
        (
            {"NAME": "l2", "BACKEND": "tiered_cache.tiers.RedisClusterTier"},
            "SOCKET_TIMEOUT",
        ),
        (disk("/var/cache/x"), "OPEN_TIMEOUT"),
    ],
)
def test_unknown_tier_option_names_the_known_ones(settings, spec, known):
    settings.CACHES = {
        "default": {
            "BACKEND": "tiered_cache.TieredCache",
            "OPTIONS": {"TIERS": [{**spec, "OPTIONS": {"TYPO_KEY": 1}}]},
        }
    }
    (error,) = check_tiered_caches()
    assert error.id == "tiered_cache.E001"
    assert "TYPO_KEY" in error.msg and known in error.msg


def test_l3_folder_under_a_file_cannot_be_created(settings, tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("")
    conf = {"OPTIONS": {"TIERS": [L1, disk(str(blocker / "l3"))]}}
    assert ids(settings, conf) == ["tiered_cache.E005"]
    assert ids(settings, {"OPTIONS": {"TIERS": [L1, disk(str(tmp_path / "a/b"))]}})


def test_l3_folder_not_writable_as_a_non_root_user(tmp_path):
    """Root may write anywhere: the check runs as ``nobody`` in a forked child."""
    import os

    from tiered_cache.checks import _check_disk_location

    if not hasattr(os, "fork") or os.geteuid() != 0:
        pytest.skip("needs fork() and root, to switch to the nobody user")
    folder = tmp_path / "locked"
    folder.mkdir(mode=0o755)  # owned by root: nobody may not write in it
    tmp_path.chmod(0o755)
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:  # pragma: no cover - runs in the child, reported via the pipe
        try:
            os.setgid(65534)
            os.setuid(65534)
            found = [
                m.id
                for path in (folder, folder / "l3")
                for m in _check_disk_location("w", str(path))
            ]
            os.write(write, " ".join(found).encode())
        finally:
            os._exit(0)
    os.close(write)
    _, status = os.waitpid(pid, 0)
    with os.fdopen(read) as pipe:
        assert pipe.read().split() == ["tiered_cache.E005", "tiered_cache.E005"]


def test_checks_run_through_django(settings):
    from django.core import checks

    settings.CACHES = {
        "default": {"BACKEND": "tiered_cache.TieredCache", "OPTIONS": {"BOGUS": 1}}
    }
    messages = checks.run_checks(tags=[checks.Tags.caches])
    assert "tiered_cache.E002" in {m.id for m in messages}


@pytest.mark.parametrize(
    ("conf", "expected"),
    [
        (
            {"OPTIONS": {"TIERS": [{"BACKEND": "tiered_cache.tiers.MemoryTeir"}]}},
            "E003",
        ),
        ({"OPTIONS": {"TIERS": {"l1": L1}}}, "E001"),
        ({"OPTIONS": {"TIERS": [{**L1, "OPTIONS": {"MAX_BYTE": 1}}]}}, "E001"),
        ({"OPTIONS": {"TIERS": [L1, disk("/dev/null/l3")]}}, "E005"),
        ({"OPTIONS": {"TIERS": [L1, disk("/proc/tiered/l3")]}}, "E005"),
        ({"TIMEOUT": -5, "OPTIONS": {"TIERS": [L1]}}, "E006"),
    ],
)
def test_manage_py_check_reports_one_message_not_a_traceback(settings, conf, expected):
    """Django's own cache checks build every cache: ours must not raise there."""
    from io import StringIO

    from django.core.management import call_command
    from django.core.management.base import SystemCheckError

    settings.CACHES = {"default": {"BACKEND": "tiered_cache.TieredCache", **conf}}
    out = StringIO()
    with pytest.raises(SystemCheckError) as info:
        call_command("check", stdout=out, stderr=out)
    report = str(info.value)
    assert report.count(f"(tiered_cache.{expected})") == 1
    assert "HINT:" in report and "CACHES['default']" in report
    assert "Traceback" not in report


def test_misconfigured_cache_raises_on_use_not_when_built():
    from django.core.exceptions import ImproperlyConfigured

    from tiered_cache.backend import TieredCache

    cache = TieredCache("", {"OPTIONS": {"TIERS": {"l1": L1}}})
    cache.close()  # Django calls it after every request: never raises
    for call in (lambda: cache.get("k"), lambda: cache.set("k", 1)):
        with pytest.raises(ImproperlyConfigured, match="TIERS must be a non-empty"):
            call()


@pytest.mark.parametrize(
    "location", ["notaurl://x", "redis://127.0.0.1:notaport/0", "127.0.0.1:6379"]
)
def test_a_bad_redis_location_is_a_configuration_error(location):
    from django.core.exceptions import ImproperlyConfigured

    from tiered_cache.backend import TieredCache

    spec = REDIS | {"LOCATION": location}
    cache = TieredCache("", {"OPTIONS": {"TIERS": [L1, spec]}})
    with pytest.raises(ImproperlyConfigured, match="LOCATION"):
        cache.get("k")
    for call in (lambda: cache.tiers, lambda: cache.breaker_state("l2")):
        with pytest.raises(ImproperlyConfigured):
            call()
