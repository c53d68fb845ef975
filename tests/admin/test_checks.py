"""``tiered_cache_admin.E001``: the dashboard needs the admin."""

from __future__ import annotations

from django.test import override_settings

from tiered_cache_admin.checks import E001, check_admin_installed


def test_no_error_with_the_admin_installed():
    assert check_admin_installed() == []


def test_error_with_a_hint_without_the_admin():
    from django.conf import settings

    without = [app for app in settings.INSTALLED_APPS if app != "django.contrib.admin"]
    with override_settings(INSTALLED_APPS=without):
        (error,) = check_admin_installed()
    assert error.id == E001 and "django.contrib.admin" in error.hint
