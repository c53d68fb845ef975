"""Importing the package must not touch settings or optional dependencies."""

from __future__ import annotations

import subprocess
import sys

SCRIPT = """
import sys
import tiered_cache
import tiered_cache.backend
optional = ("redis", "django_redis", "diskcache", "sklearn", "prometheus_client")
heavy = [m for m in optional if m in sys.modules]
from django.conf import settings
print(heavy, settings.configured)
"""


def test_import_is_light_and_does_not_configure_settings():
    env_free = {"PATH": "/usr/bin:/bin"}
    done = subprocess.run(
        [sys.executable, "-c", SCRIPT], capture_output=True, text=True, env=env_free
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "[] False"


def test_public_names():
    import tiered_cache
    from tiered_cache.backend import TieredCache
    from tiered_cache.tiers.memory import MemoryTier

    assert tiered_cache.TieredCache is TieredCache
    assert tiered_cache.MemoryTier is MemoryTier
    assert tiered_cache.__version__
    import pytest

    with pytest.raises(AttributeError):
        tiered_cache.Nope  # noqa: B018
    import tiered_cache.tiers as tiers

    with pytest.raises(AttributeError):
        tiers.Nope  # noqa: B018
