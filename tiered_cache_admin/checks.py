"""System checks ``tiered_cache_admin.E0xx``: what the dashboard needs installed."""

from __future__ import annotations

from typing import Any

from django.apps import apps
from django.core import checks

__all__ = ["E001", "check_admin_installed"]

E001 = "tiered_cache_admin.E001"  # the dashboard without django.contrib.admin


@checks.register()
def check_admin_installed(app_configs: Any = None, **kwargs: Any) -> list:
    """The dashboard's pages live in the admin: without it there are none."""
    if apps.is_installed("django.contrib.admin"):
        return []
    return [
        checks.Error(
            "tiered_cache_admin is installed without django.contrib.admin: the "
            "cache dashboard lives in the admin and would have no pages.",
            hint="Add 'django.contrib.admin' (and its dependencies) to "
            "INSTALLED_APPS and include admin.site.urls in your URLconf, or "
            "remove 'tiered_cache_admin'.",
            id=E001,
        )
    ]
