"""Fixtures of the dashboard's tests: a TieredCache as ``default``, and users.

Users, from least to most privileged: ``nonstaff`` (every app permission but
not staff), ``staff`` (staff, no app permission), ``viewer`` (staff +
``view_dashboard``), ``actor`` (+ ``act_on_cache``) and ``superuser``.
"""

from __future__ import annotations

import itertools
from typing import Any

import pytest
from django.test import Client

from tests.matrix import L1, l3, real_l2

_prefixes = itertools.count()

PERMS = {
    "nonstaff": ["view_dashboard", "act_on_cache", "view_values"],
    "staff": [],
    "viewer": ["view_dashboard"],
    "actor": ["view_dashboard", "act_on_cache"],
}


def use_cache(settings: Any, tiers: list[dict[str, Any]], **options: Any) -> Any:
    """Make ``caches["default"]`` a TieredCache over ``tiers``; return it."""
    from django.core.cache import caches

    settings.CACHES = {
        "default": {
            "BACKEND": "tiered_cache.TieredCache",
            "KEY_PREFIX": f"dash{next(_prefixes)}",
            "OPTIONS": {"TIERS": tiers, **options},
        }
    }
    cache = caches["default"]
    for tier in cache.tiers:  # tiers are shared by configuration: start clean
        tier.stats.reset()
    return cache


@pytest.fixture
def dash_cache(settings, tmp_path):
    """``caches["default"]``: L1 + L3 in a fresh folder."""
    return use_cache(settings, [L1, l3(str(tmp_path / "l3"))])


@pytest.fixture
def redis_dash_cache(settings, tmp_path, redis_server):
    """``caches["default"]``: L1 + L2 (a real redis-server, db 3) + L3."""
    return use_cache(
        settings, [L1, real_l2(redis_server.url(3)), l3(str(tmp_path / "l3"))]
    )


def make_user(role: str) -> Any:
    from django.contrib.auth.models import Permission, User

    if role == "superuser":
        return User.objects.create_superuser(role, f"{role}@example.com", "pw")
    user = User.objects.create_user(
        role, f"{role}@example.com", "pw", is_staff=role != "nonstaff"
    )
    codenames = PERMS[role]
    user.user_permissions.set(
        Permission.objects.filter(
            content_type__app_label="tiered_cache_admin", codename__in=codenames
        )
    )
    assert Permission.objects.filter(
        content_type__app_label="tiered_cache_admin", codename__in=codenames
    ).count() == len(codenames)
    return user


@pytest.fixture
def client_as(db):
    """Return ``client_as(role, **client_kwargs)``: a Client logged in as ``role``."""

    def factory(role: str | None, **kwargs: Any) -> Client:
        client = Client(**kwargs)
        if role is not None:
            client.force_login(make_user(role))
        return client

    return factory
