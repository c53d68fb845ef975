"""What the dashboard's pages show: ratios as percentages, the inspector."""

from __future__ import annotations

import re
import time

import pytest
from django.urls import reverse

UNPICKLED: list[str] = []


def _unpickle(text: str) -> str:
    UNPICKLED.append(text)
    return text


class Tracked:
    """A value whose unpickling is recorded (it runs ``_unpickle``)."""

    def __init__(self, text: str) -> None:
        self.text = text

    def __reduce__(self):
        return _unpickle, (self.text,)


def url(name: str) -> str:
    return reverse(f"admin:tiered_cache_admin_{name}", args=["default"])


def test_overview_shows_hit_ratios_as_percentages(dash_cache, client_as):
    dash_cache.set("k", "v")
    for _ in range(3):
        assert dash_cache.get("k") == "v"  # three L1 hits
    assert dash_cache.get("absent") is None  # an L1 miss, then an L3 miss
    page = client_as("superuser").get(url("overview")).content.decode()
    total = re.search(r'id="tc-total-hit-ratio">([^<]*)<', page).group(1)
    assert total == "75.0 %"
    rows = dict(re.findall(r'data-tier="(\w+)">.*?tc-hit-ratio">([^<]*)<', page, re.S))
    assert rows == {"l1": "75.0 %", "l3": "0.0 %"}
    assert "<svg" in page and "cdn" not in page.lower()


def test_overview_without_requests_shows_a_dash_not_zero(dash_cache, client_as):
    page = client_as("viewer").get(url("overview")).content.decode()
    total = re.search(r'id="tc-total-hit-ratio">([^<]*)<', page).group(1)
    assert total == "—"


def test_overview_offers_actions_only_to_who_may_act(dash_cache, client_as):
    clear = url("clear_tier")
    assert clear not in client_as("viewer").get(url("overview")).content.decode()
    assert clear in client_as("actor").get(url("overview")).content.decode()


def test_overview_chart_window_day_and_unknown_window(dash_cache, client_as):
    client = client_as("viewer")
    assert "-24 h" in client.get(url("overview"), {"window": "day"}).content.decode()
    assert "-60 min" in client.get(url("overview"), {"window": "nope"}).content.decode()


def test_unknown_alias_is_404(dash_cache, client_as):
    response = client_as("superuser").get(
        reverse("admin:tiered_cache_admin_overview", args=["nope"])
    )
    assert response.status_code == 404


def _inspect(client, key):
    return client.get(url("inspect"), {"key": key}).content.decode()


def test_inspector_shows_tiers_ttl_and_size_never_the_value_without_permission(
    dash_cache, client_as
):
    UNPICKLED.clear()
    dash_cache.set("k", Tracked("secret"), timeout=600)
    dash_cache.tier("l1").clear(dash_cache.namespace)  # only L3 holds it now
    page = _inspect(client_as("actor"), "k")
    rows = dict(re.findall(r'data-tier="(\w+)">\s*<td>\w+</td>\s*<td>(\w+)</td>', page))
    assert rows == {"l1": "no", "l3": "yes"}
    assert re.search(r"\b(9|10) min\b", page)  # the remaining TTL
    assert "secret" not in page
    assert UNPICKLED == []  # the value was never unpickled


def test_inspector_shows_the_value_escaped_and_truncated_with_permission(
    dash_cache, client_as
):
    dash_cache.set("xss", "<script>alert(1)</script>")
    dash_cache.set("big", "x" * 100_000)
    client = client_as("superuser")
    page = _inspect(client, "xss")
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in page
    assert "<script>alert(1)" not in page
    big = _inspect(client, "big")
    preview = re.search(r'<pre class="tc-value-preview">([^<]*)</pre>', big).group(1)
    assert 2000 <= len(preview) < 2100


def test_inspector_says_when_no_tier_holds_the_key(dash_cache, client_as):
    page = _inspect(client_as("viewer"), "absent")
    assert re.findall(r'data-tier="(\w+)">\s*<td>\w+</td>\s*<td>(\w+)</td>', page) == [
        ("l1", "no"),
        ("l3", "no"),
    ]


@pytest.mark.redis_server
def test_inspector_over_a_real_redis_shows_every_tier(redis_dash_cache, client_as):
    redis_dash_cache.set("k", "v", timeout=None)
    page = _inspect(client_as("viewer"), "k")
    rows = dict(re.findall(r'data-tier="(\w+)">\s*<td>\w+</td>\s*<td>(\w+)</td>', page))
    # L3 below an L2 holds copies, served only once the bus vouches for them.
    assert rows["l1"] == rows["l2"] == "yes" and "l3" in rows
    assert page.count("never expires") >= 2


def test_pages_render_while_the_metrics_store_is_down(settings, tmp_path, client_as):
    from tests.admin.conftest import use_cache
    from tests.matrix import L1, real_l2
    from tests.support.redis_servers import RedisServer

    server = RedisServer.start(tmp_path / "redis")
    spec = real_l2(server.url(0))
    spec["OPTIONS"] = {"SOCKET_TIMEOUT": 0.2, "SOCKET_CONNECT_TIMEOUT": 0.2}
    cache = use_cache(settings, [L1, spec])
    cache.set("k", "v")
    assert cache.get("k") == "v"
    server.stop()
    client = client_as("superuser")
    for name in ("overview", "groups"):
        response = client.get(url(name))
        assert response.status_code == 200, name
        assert "metrics store" in response.content.decode(), name


def test_with_the_store_down_the_overview_shows_this_process_numbers(
    settings, tmp_path, client_as
):
    from tests.admin.conftest import use_cache
    from tests.matrix import L1, real_l2
    from tests.support.redis_servers import RedisServer

    server = RedisServer.start(tmp_path / "redis")
    spec = real_l2(server.url(0))
    spec["OPTIONS"] = {"SOCKET_TIMEOUT": 0.2, "SOCKET_CONNECT_TIMEOUT": 0.2}
    cache = use_cache(settings, [L1, spec])
    cache.set("k", "v")
    for _ in range(3):
        assert cache.get("k") == "v"  # three L1 hits
    assert cache.get("absent") is None  # an L1 miss, an L2 miss
    server.stop()
    page = client_as("superuser").get(url("overview")).content.decode()
    assert "shared metrics unavailable" in page
    total = re.search(r'id="tc-total-hit-ratio">([^<]*)<', page).group(1)
    assert total == "75.0 %"  # this process's counters, not zeros
    rows = dict(re.findall(r'data-tier="(\w+)">.*?tc-hit-ratio">([^<]*)<', page, re.S))
    assert rows == {"l1": "75.0 %", "l2": "0.0 %"}


HOSTILE = "<script>alert(1)</script>"


def test_names_read_from_the_store_are_escaped(settings, redis_server, client_as):
    import redis

    from tests.admin.conftest import use_cache
    from tests.matrix import L1, real_l2
    from tiered_cache.metrics.flusher import store_of

    # Groups counted: readers show the busiest, folding the rest in "other".
    cache = use_cache(
        settings, [L1, real_l2(redis_server.url(3))], METRICS={"GROUPS": 5}
    )
    cache.get("k")
    store = store_of("default")
    minute = int(time.time() // 60)
    client = redis.Redis.from_url(redis_server.url(3))
    for m in (minute, minute + 1):
        client.hset(
            f"{store.base}:{m}",
            mapping={f"grp|{HOSTILE}|hits": 1, f"{HOSTILE}|hits": 1},
        )
    viewer = client_as("superuser")
    assert HOSTILE not in viewer.get(url("overview")).content.decode()
    page = viewer.get(url("groups")).content.decode()
    assert HOSTILE not in page
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in page


def test_a_hostile_key_is_escaped_in_the_inspector_and_the_actions(
    dash_cache, client_as
):
    key = f'"><{HOSTILE[1:]}'
    dash_cache.set(key, "v")
    client = client_as("superuser")
    pages = [
        _inspect(client, key),
        client.get(
            reverse("admin:tiered_cache_admin_invalidate_key", args=["default"]),
            {"key": key},
        ).content.decode(),
        client.post(
            reverse("admin:tiered_cache_admin_invalidate_key", args=["default"]),
            {"key": key, "confirm": "yes"},
            follow=True,
        ).content.decode(),
    ]
    for page in pages:
        assert "<script>alert(1)" not in page
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in pages[2]  # the message
    assert dash_cache.get(key) is None


def test_overview_shows_the_l1_curve_only_with_history(settings, tmp_path, client_as):
    from django.core.cache import caches

    from tests.matrix import L1, l3
    from tiered_cache.history.flush import flush_history

    settings.CACHES = {
        "default": {
            "BACKEND": "tiered_cache.TieredCache",
            "KEY_PREFIX": "dash-curve",
            "OPTIONS": {
                "TIERS": [{**L1, "OPTIONS": {"MAX_ENTRIES": 4}}, l3(str(tmp_path))],
                "HISTORY": {"SAMPLE_RATE": 1.0},
            },
        }
    }
    cache = caches["default"]
    for key in ("a", "b", "a", "b"):
        cache.get(key)
    flush_history()
    page = client_as("viewer").get(url("overview")).content.decode()
    assert 'id="tc-l1-curve"' in page
    assert "current L1 size, 4 entries" in page


def test_overview_has_no_l1_curve_without_history(dash_cache, client_as):
    page = client_as("viewer").get(url("overview")).content.decode()
    assert 'id="tc-l1-curve"' not in page
