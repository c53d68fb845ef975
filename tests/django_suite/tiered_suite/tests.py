"""Django's own cache tests, re-pointed at ``tiered_cache.TieredCache``.

Nothing is copied from upstream: every class here subclasses a class of the
pinned Django ``tests/cache/tests.py`` or ``tests/template_tests/syntax_tests/
test_cache.py`` and only swaps its ``CACHES``. The upstream modules are imported
as module objects so unittest does not collect their classes a second time.

Environment (set by ``tests.django_suite.run``):

``TIERED_SUITE_BACKEND``
    ``tiered`` (default) or ``locmem``: run the same classes against
    ``LocMemCache`` to validate the harness itself.
``TIERED_SUITE_REDIS_URL``
    L2 URL of a redis-server started for this run (db 1). Every alias uses
    the same tiers; aliases that upstream gives a LOCATION of their own keep it
    as TieredCache's store name.
``TIERED_SUITE_L3_DIR``
    Absolute directory of the L3 ``diskcache.DjangoCache``.
"""

from __future__ import annotations

import contextlib
import functools
import glob
import os
import sqlite3
import unittest

import cache.tests as upstream
from django.conf import settings
from django.core.cache import cache, caches
from django.core.exceptions import ImproperlyConfigured
from django.test import SimpleTestCase, TestCase, override_settings
from django.utils.module_loading import import_string
from template_tests.syntax_tests import test_cache as upstream_templates

MODE = os.environ.get("TIERED_SUITE_BACKEND", "tiered")
LOCMEM_BACKEND = "django.core.cache.backends.locmem.LocMemCache"
TIERED_BACKEND = "tiered_cache.TieredCache"


def _env(name: str) -> str:
    value = os.environ.get(name, "")
    if not value:
        raise ImproperlyConfigured(
            f"{name} is not set: run this suite with `python -m tests.django_suite.run`"
        )
    return value


if MODE == "locmem":
    REDIS_URL = L3_DIR = ""
elif MODE == "tiered":
    REDIS_URL = _env("TIERED_SUITE_REDIS_URL")
    L3_DIR = _env("TIERED_SUITE_L3_DIR")
    if not os.path.isabs(L3_DIR):
        raise ImproperlyConfigured(f"TIERED_SUITE_L3_DIR must be absolute: {L3_DIR}")
else:
    raise ImproperlyConfigured(
        f"TIERED_SUITE_BACKEND must be 'tiered' or 'locmem', not {MODE!r}"
    )


def backend_params(location: str = "") -> dict:
    """Return the CACHES entry of the backend under test on store ``location``.

    Upstream gives an alias a LOCATION of its own when that alias must not see
    the other aliases' data (``CacheMiddlewareTest``'s ``other``, the
    ``template_fragments`` cache). TieredCache treats its top-level LOCATION as
    a store name, as LocMemCache does, so every alias keeps the same tiers
    (one Redis database, one directory) and only the LOCATION differs.
    """
    if MODE == "locmem":
        return {"BACKEND": LOCMEM_BACKEND, "LOCATION": location}
    params = {
        "BACKEND": TIERED_BACKEND,
        "OPTIONS": {
            "TIERS": [
                {"NAME": "l1", "BACKEND": "tiered_cache.tiers.MemoryTier"},
                {
                    "NAME": "l2",
                    "BACKEND": "django_redis.cache.RedisCache",
                    "LOCATION": REDIS_URL,
                },
                {"NAME": "l3", "BACKEND": "diskcache.DjangoCache", "LOCATION": L3_DIR},
            ]
        },
    }
    if location:
        params["LOCATION"] = location
    return params


TIERED_PARAMS = backend_params()

# What an upstream alias may set besides BACKEND/LOCATION; kept as is.
_KEPT = {"TIMEOUT", "KEY_PREFIX", "VERSION", "KEY_FUNCTION"}


def repoint(upstream_caches: dict) -> dict:
    """Return upstream's CACHES with every alias on the backend under test."""
    result = {}
    for alias, params in upstream_caches.items():
        params = dict(params)
        backend = params.pop("BACKEND")
        location = params.pop("LOCATION", "")
        if backend != LOCMEM_BACKEND or set(params) - _KEPT:
            raise ImproperlyConfigured(f"cannot re-point {alias!r}: {params}")
        result[alias] = {**backend_params(location), **params}
    return result


def class_caches(test_class: type) -> dict:
    """Return the class-level ``override_settings(CACHES=...)``, re-pointed."""
    return repoint(test_class._overridden_settings["CACHES"])


def _overrides_of(function) -> list:
    """Return the ``override_settings`` a test function is decorated with."""
    return [
        cell.cell_contents
        for cell in getattr(function, "__closure__", None) or ()
        if isinstance(cell.cell_contents, override_settings)
    ]


def rerun(method):
    """Return an upstream test method under its own settings, CACHES re-pointed.

    For methods decorated with ``@override_settings(CACHES=...)``: the
    decorator's other settings are kept, its body is called unchanged.
    """
    found = _overrides_of(method)
    if len(found) != 1 or "CACHES" not in found[0].options:
        raise TypeError(f"{method.__qualname__} has no override_settings(CACHES)")
    options = {**found[0].options, "CACHES": repoint(found[0].options["CACHES"])}
    body = method.__wrapped__

    @override_settings(**options)
    @functools.wraps(body)
    def test(self):
        return body(self)

    return test


def skipped(reason: str):
    """Return a test method that is skipped with ``reason``."""

    @unittest.skip(reason)
    def test(self):  # pragma: no cover - never runs
        pass

    return test


CULL_REASON = (
    "culling: the 'cull'/'zero_cull' aliases (MAX_ENTRIES, CULL_FREQUENCY) are "
    "excluded; size limits are per tier in TieredCache"
)


@override_settings(
    CACHES=upstream.caches_setting_for_tests(
        base=TIERED_PARAMS, exclude={"cull", "zero_cull"}
    )
)
class TieredCacheTests(upstream.BaseCacheTests, TestCase):
    test_cull = skipped(CULL_REASON)
    test_zero_cull = skipped(CULL_REASON)
    test_cull_delete_when_store_empty = skipped(CULL_REASON)

    def test_backend_under_test(self):
        """The suite runs against the backend it names, not a fallback."""
        expected = LOCMEM_BACKEND if MODE == "locmem" else TIERED_BACKEND
        for alias in settings.CACHES:
            with self.subTest(alias=alias):
                self.assertEqual(settings.CACHES[alias]["BACKEND"], expected)
                self.assertIs(type(caches[alias]), import_string(expected))

    @unittest.skipIf(MODE == "locmem", "there are no tiers with locmem")
    def test_writes_reach_redis_and_disk(self):
        """A set lands in the real L2 and L3: FAIL_OPEN cannot hide a dead tier.

        Counted with redis-py and sqlite3, not through the backend under test.
        """
        import redis

        cache.set("tiered-suite-probe", "value")
        client = redis.Redis.from_url(REDIS_URL)
        try:
            self.assertGreater(client.dbsize(), 0, f"nothing in {REDIS_URL}")
        finally:
            client.close()
        rows = 0
        for path in glob.glob(os.path.join(L3_DIR, "**", "cache.db"), recursive=True):
            uri = f"file:{path}?mode=ro"
            with contextlib.closing(sqlite3.connect(uri, uri=True)) as db:
                rows += db.execute("SELECT COUNT(*) FROM Cache").fetchone()[0]
        self.assertGreater(rows, 0, f"nothing in the diskcache under {L3_DIR}")


@override_settings(CACHES=class_caches(upstream.CacheUtils))
class TieredCacheUtils(upstream.CacheUtils):
    pass


@override_settings(CACHES=class_caches(upstream.PrefixedCacheUtils))
class TieredPrefixedCacheUtils(upstream.PrefixedCacheUtils):
    pass


@override_settings(CACHES=class_caches(upstream.CacheHEADTest))
class TieredCacheHEADTest(upstream.CacheHEADTest):
    pass


@override_settings(CACHES=class_caches(upstream.CacheI18nTest))
class TieredCacheI18nTest(upstream.CacheI18nTest):
    pass


@override_settings(CACHES=class_caches(upstream.PrefixedCacheI18nTest))
class TieredPrefixedCacheI18nTest(upstream.PrefixedCacheI18nTest):
    pass


@override_settings(CACHES=class_caches(upstream.CacheMiddlewareTest))
class TieredCacheMiddlewareTest(upstream.CacheMiddlewareTest):
    pass


@override_settings(CACHES=class_caches(upstream.TestWithTemplateResponse))
class TieredTestWithTemplateResponse(upstream.TestWithTemplateResponse):
    pass


# Module-level TestCase names are collected: keep this alias out of the module.
_NonExpiring = upstream.DefaultNonExpiringCacheKeyTests


@override_settings(CACHES={"default": TIERED_PARAMS})
class TieredDefaultNonExpiringCacheKeyTests(_NonExpiring):
    test_caches_set_with_timeout_as_none_has_correct_default_timeout = rerun(
        _NonExpiring.test_caches_set_with_timeout_as_none_has_correct_default_timeout
    )
    # They read LocMemCache's private _expire_info: TieredCache offers the same
    # read-only view over its tiers.
    test_caches_with_unset_timeout_set_expiring_key = rerun(
        _NonExpiring.test_caches_with_unset_timeout_set_expiring_key
    )
    test_caches_set_with_timeout_as_none_set_non_expiring_key = rerun(
        _NonExpiring.test_caches_set_with_timeout_as_none_set_non_expiring_key
    )


del _NonExpiring


@override_settings(CACHES={"default": TIERED_PARAMS})
class TieredCacheHandlerTest(upstream.CacheHandlerTest):
    pass


@override_settings(CACHES={"default": TIERED_PARAMS})
class TieredCacheTagTests(upstream_templates.CacheTagTests):
    pass


@override_settings(CACHES={"default": TIERED_PARAMS})
class TieredCacheTemplateTests(upstream_templates.CacheTests):
    test_cache_fragment_cache = rerun(
        upstream_templates.CacheTests.test_cache_fragment_cache
    )


class TieredSuiteHarnessTests(SimpleTestCase):
    """Every class and method here really runs on the backend under test."""

    def test_every_caches_override_is_repointed(self):
        expected = LOCMEM_BACKEND if MODE == "locmem" else TIERED_BACKEND
        classes = [
            obj
            for obj in globals().values()
            if isinstance(obj, type)
            and issubclass(obj, SimpleTestCase)
            and obj.__module__ == __name__
            and obj is not type(self)
        ]
        self.assertGreater(len(classes), 10)
        for cls in classes:
            overrides = [cls._overridden_settings]
            for name in dir(cls):
                if name.startswith("test"):
                    method = getattr(cls, name)
                    overrides += [o.options for o in _overrides_of(method)]
            for options in overrides:
                for alias, params in options.get("CACHES", {}).items():
                    with self.subTest(cls=cls.__name__, alias=alias):
                        self.assertEqual(params["BACKEND"], expected)
