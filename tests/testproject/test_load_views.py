"""The views bench/load.py drives answer alike with every cache it switches."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

PROBE = Path(__file__).with_name("load_probe.py")


def probe(cache: str, **env: str) -> dict:
    env = {**os.environ, "TESTPROJECT_CACHE": cache, "DJANGO_DEBUG": "0", **env}
    env.pop("DJANGO_SETTINGS_MODULE", None)
    done = subprocess.run(
        [sys.executable, str(PROBE)], env=env, capture_output=True, text=True,
        timeout=120,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr[-3000:]
    return json.loads(done.stdout.strip().splitlines()[-1])


@pytest.mark.parametrize(
    ("cache", "backend", "cached"),
    [
        ("locmem", "django.core.cache.backends.locmem.LocMemCache", True),
        ("none", "django.core.cache.backends.dummy.DummyCache", False),
    ],
)
def test_load_views_answer_with_the_pid_and_cache_the_slow_value(
    cache, backend, cached
):
    facts = probe(cache)
    assert facts["backend"] == backend
    pid = f"{facts['pid']:08d}"
    for url, (status, body) in facts["pages"].items():
        assert status == 200, url
        assert body == f"{pid} 64\n", url  # same bytes from every view
    assert facts["cached_after_slow"] is cached
    assert facts["cached_after_aslow"] is cached


@pytest.mark.redis_server
def test_load_views_on_django_redis_alone(redis_server):
    facts = probe("redis", REDIS_URL=redis_server.url(4))
    assert facts["backend"] == "django_redis.cache.RedisCache"
    assert facts["cached_after_slow"] and facts["cached_after_aslow"]
    assert {status for status, _ in facts["pages"].values()} == {200}
