"""The dashboard's actions: confirmed POSTs with CSRF, logged, announced."""

from __future__ import annotations

import re

import pytest
from django.contrib.admin.models import LogEntry
from django.contrib.messages import get_messages
from django.urls import reverse

from tiered_cache_admin import actions


def url(name: str) -> str:
    return reverse(f"admin:tiered_cache_admin_{name}", args=["default"])


def test_get_on_an_action_url_shows_the_confirmation_and_never_acts(
    dash_cache, client_as
):
    dash_cache.set("k", "v")
    response = client_as("superuser").get(
        url("invalidate_key"), {"key": "k", "confirm": "yes"}
    )
    assert response.status_code == 200
    assert 'name="confirm" value="yes"' in response.content.decode()
    assert 'method="post"' in response.content.decode()
    assert dash_cache.get("k") == "v"
    assert not LogEntry.objects.exists()


def test_post_without_confirmation_shows_the_confirmation_page(dash_cache, client_as):
    dash_cache.set("k", "v")
    response = client_as("actor").post(url("invalidate_key"), {"key": "k"})
    assert response.status_code == 200 and "Are you sure?" in response.content.decode()
    assert dash_cache.get("k") == "v"


def test_confirmed_post_invalidates_the_key_logs_the_user_and_says_so(
    dash_cache, client_as
):
    dash_cache.set("k", "v")
    client = client_as("actor")
    response = client.post(url("invalidate_key"), {"key": "k", "confirm": "yes"})
    assert response.status_code == 302
    assert response["Location"] == url("inspect")
    assert dash_cache.get("k") is None
    entry = LogEntry.objects.get()
    assert entry.user.username == "actor"
    assert "invalidated key 'k'" in entry.change_message
    shown = [str(m) for m in get_messages(response.wsgi_request)]
    assert shown == ["Cache default: invalidated key 'k'."]


def test_missing_csrf_token_is_refused(dash_cache, client_as):
    dash_cache.set("k", "v")
    client = client_as("superuser", enforce_csrf_checks=True)
    refused = client.post(url("invalidate_key"), {"key": "k", "confirm": "yes"})
    assert refused.status_code == 403
    assert dash_cache.get("k") == "v"
    # The confirmation page's own form carries the token and works.
    page = client.get(url("invalidate_key"), {"key": "k"}).content.decode()
    token = re.search(r'name="csrfmiddlewaretoken" value="([^"]+)"', page).group(1)
    done = client.post(
        url("invalidate_key"),
        {"key": "k", "confirm": "yes", "csrfmiddlewaretoken": token},
    )
    assert done.status_code == 302
    assert dash_cache.get("k") is None


@pytest.mark.parametrize(
    ("name", "data"),
    [
        ("clear_tier", {"tier": "l1"}),
        ("invalidate_key", {"key": "user:1"}),
        ("invalidate_group", {"group": "user"}),
    ],
)
def test_every_action_refuses_a_post_without_csrf_token(
    dash_cache, client_as, name, data
):
    dash_cache.set("user:1", "v")
    client = client_as("superuser", enforce_csrf_checks=True)
    refused = client.post(url(name), {**data, "confirm": "yes"})
    assert refused.status_code == 403
    assert dash_cache.get("user:1") == "v"
    assert not LogEntry.objects.exists()


def test_invalid_input_is_shown_again_not_run(dash_cache, client_as):
    dash_cache.set("user:1", "v")
    response = client_as("actor").post(
        url("invalidate_group"), {"group": "user:1 x", "confirm": "yes"}
    )
    assert response.status_code == 200
    assert "text before the first" in response.content.decode()
    assert dash_cache.get("user:1") == "v"


@pytest.mark.parametrize("group", ["-", "other"])
def test_a_pooled_group_is_refused_not_invalidated(dash_cache, client_as, group):
    dash_cache.set_many({f"{group}:1": 1, "plain": 2})
    response = client_as("actor").post(
        url("invalidate_group"), {"group": group, "confirm": "yes"}
    )
    assert response.status_code == 200  # the form again, with the reason
    assert "pools many prefixes" in response.content.decode()
    assert dash_cache.get_many([f"{group}:1", "plain"]) == {f"{group}:1": 1, "plain": 2}
    assert not LogEntry.objects.exists()


def test_clear_one_tier_leaves_the_others(dash_cache, client_as):
    dash_cache.set("k", "v")
    response = client_as("actor").post(
        url("clear_tier"), {"tier": "l1", "confirm": "yes"}
    )
    assert response.status_code == 302
    held = dash_cache.inspect("k")
    assert "l1" not in held and "l3" in held
    assert LogEntry.objects.get().change_message.startswith("cleared tier l1")


def test_clear_every_tier(dash_cache, client_as):
    dash_cache.set("k", "v")
    client_as("actor").post(url("clear_tier"), {"tier": "*", "confirm": "yes"})
    assert dash_cache.inspect("k") == {}


def test_clear_an_unknown_tier_is_refused_by_the_form(dash_cache, client_as):
    dash_cache.set("k", "v")
    response = client_as("actor").post(
        url("clear_tier"), {"tier": "l9", "confirm": "yes"}
    )
    assert (
        response.status_code == 200
        and "Select a valid choice" in response.content.decode()
    )
    assert dash_cache.inspect("k") != {}


def test_invalidate_group_deletes_only_the_groups_keys(dash_cache, client_as):
    dash_cache.set_many({"user:1": 1, "user:2": 2, "users:3": 3, "other:1": 4})
    response = client_as("actor").post(
        url("invalidate_group"), {"group": "user", "confirm": "yes"}
    )
    assert response.status_code == 302
    assert dash_cache.get_many(["user:1", "user:2", "users:3", "other:1"]) == {
        "users:3": 3,
        "other:1": 4,
    }
    shown = [str(m) for m in get_messages(response.wsgi_request)]
    assert shown == ["Cache default: invalidated 2 keys of group 'user'."]


def test_invalidate_group_stops_at_its_limit_and_says_so(dash_cache):
    dash_cache.set_many({f"user:{i}": i for i in range(5)})
    result = actions.invalidate_group(dash_cache, "user", limit=3)
    assert result.deleted == 3 and result.truncated
    assert len(dash_cache.get_many([f"user:{i}" for i in range(5)])) == 2
    rest = actions.invalidate_group(dash_cache, "user", limit=3)
    assert rest.deleted == 2 and not rest.truncated


def test_invalidate_group_refuses_a_key_function_that_hides_the_prefix(settings):
    from tests.admin.conftest import use_cache
    from tests.matrix import L1

    cache = use_cache(settings, [L1])
    cache.key_func = lambda key, prefix, version: f"{key[::-1]}:{prefix}"
    with pytest.raises(actions.GroupNotListable):
        actions.invalidate_group(cache, "user")


@pytest.mark.redis_server
def test_invalidate_group_over_redis_reaches_l2_and_announces(
    redis_dash_cache, client_as
):
    cache = redis_dash_cache
    cache.set_many({"user:1": 1, "user:2": 2, "other:1": 3})
    l2 = cache.tier("l2")
    stored = cache.stored_key("user:1")
    assert l2.keys(cache.stored_key("user:")) != []
    announced = cache._chain.bus.stats.announced
    client_as("actor").post(
        url("invalidate_group"), {"group": "user", "confirm": "yes"}
    )
    assert l2.keys(cache.stored_key("user:")) == []
    assert cache.inspect("user:1") == {} and stored not in l2.keys(cache.namespace)
    assert cache.get("other:1") == 3
    assert cache._chain.bus.stats.announced > announced  # other processes hear of it
