"""Who may see the dashboard and run its actions (docs/faults.rst E39).

Every URL refuses anonymous users and non-staff users (the admin's login
page) and staff without the app's permission (403), for GET and POST; the
actions also need ``act_on_cache``. A refused POST changes nothing.
"""

from __future__ import annotations

import pytest
from django.urls import reverse

PAGES = ["overview", "groups", "inspect"]
ACTIONS = {
    "clear_tier": {"tier": "*", "confirm": "yes"},
    "invalidate_key": {"key": "k", "confirm": "yes"},
    "invalidate_group": {"group": "user", "confirm": "yes"},
}


def url(name: str) -> str:
    if name == "changelist":
        return reverse("admin:tiered_cache_admin_cachedashboard_changelist")
    return reverse(f"admin:tiered_cache_admin_{name}", args=["default"])


def every_request():
    for name in ["changelist", *PAGES]:
        yield name, "get", {}
        yield name, "post", {}
    for name, payload in ACTIONS.items():
        yield name, "get", payload
        yield name, "post", payload


REQUESTS = list(every_request())


def assert_refused(response, role):
    if role in (None, "nonstaff"):
        assert response.status_code == 302, response
        assert response["Location"].startswith(reverse("admin:login"))
    else:
        assert response.status_code == 403, response


@pytest.mark.parametrize("role", [None, "nonstaff", "staff"])
@pytest.mark.parametrize(("name", "method", "payload"), REQUESTS)
def test_dashboard_refuses_anonymous_nonstaff_and_staff_without_permission(
    dash_cache, client_as, role, name, method, payload
):
    dash_cache.set("k", "v")
    dash_cache.set("user:1", "v")
    response = getattr(client_as(role), method)(url(name), payload)
    assert_refused(response, role)
    assert dash_cache.get("k") == "v" and dash_cache.get("user:1") == "v"


@pytest.mark.parametrize(("name", "payload"), ACTIONS.items())
@pytest.mark.parametrize("method", ["get", "post"])
def test_actions_refuse_staff_who_may_only_view(
    dash_cache, client_as, name, payload, method
):
    dash_cache.set("k", "v")
    dash_cache.set("user:1", "v")
    response = getattr(client_as("viewer"), method)(url(name), payload)
    assert response.status_code == 403
    assert dash_cache.get("k") == "v" and dash_cache.get("user:1") == "v"


def test_viewer_gets_every_page(dash_cache, client_as):
    client = client_as("viewer")
    for name in PAGES:
        assert client.get(url(name)).status_code == 200, name


def test_superuser_gets_every_page_and_action_confirmation(dash_cache, client_as):
    client = client_as("superuser")
    assert client.get(url("changelist")).status_code == 302  # one alias: its page
    for name in PAGES:
        assert client.get(url(name)).status_code == 200, name
    for name, payload in ACTIONS.items():
        assert client.get(url(name), payload).status_code == 200, name


def test_admin_index_lists_the_dashboard_only_with_the_permission(
    dash_cache, client_as
):
    changelist = url("changelist")
    assert (
        changelist in client_as("viewer").get(reverse("admin:index")).content.decode()
    )
    assert (
        changelist
        not in client_as("staff").get(reverse("admin:index")).content.decode()
    )


def test_dashboard_has_no_add_change_or_delete_pages(dash_cache, client_as):
    from django.urls import NoReverseMatch

    for page in ("add", "change", "delete", "history"):
        args = [] if page == "add" else [1]
        with pytest.raises(NoReverseMatch):
            reverse(f"admin:tiered_cache_admin_cachedashboard_{page}", args=args)
