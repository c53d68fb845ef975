"""The dashboard's place in the admin: an index entry and its URLs.

``CacheDashboardAdmin`` registers the table-less ``CacheDashboard`` with the
default admin site, so a project needs nothing but ``tiered_cache_admin`` in
``INSTALLED_APPS`` (after ``django.contrib.admin``). Its URLs replace the
model's add/change/delete pages; every one goes through
``admin_site.admin_view`` (active staff, CSRF) and the views check the app's
permissions.
"""

from __future__ import annotations

from functools import partial, update_wrapper
from typing import Any

from django.contrib import admin
from django.http import HttpRequest, HttpResponse
from django.urls import URLPattern, path

from . import views
from .models import VIEW, CacheDashboard

__all__ = ["CacheDashboardAdmin"]


@admin.register(CacheDashboard)
class CacheDashboardAdmin(admin.ModelAdmin):
    """No objects to add, change or delete: the dashboard's pages instead."""

    def has_module_permission(self, request: HttpRequest) -> bool:
        return request.user.has_perm(VIEW)

    def has_view_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return request.user.has_perm(VIEW)

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def changelist_view(
        self, request: HttpRequest, extra_context: dict | None = None
    ) -> HttpResponse:
        return views.index(self, request)

    def get_urls(self) -> list[URLPattern]:
        def wrap(view: Any, **kwargs: Any) -> Any:
            bound = partial(view, self, **kwargs)
            return self.admin_site.admin_view(update_wrapper(bound, view))

        name = "tiered_cache_admin_"
        urls = [
            path("", wrap(views.index), name=f"{name}cachedashboard_changelist"),
            path("<str:alias>/", wrap(views.overview), name=f"{name}overview"),
            path("<str:alias>/groups/", wrap(views.groups), name=f"{name}groups"),
            path("<str:alias>/inspect/", wrap(views.inspect), name=f"{name}inspect"),
        ]
        for action in views.ACTIONS:
            urls.append(
                path(
                    f"<str:alias>/{action}/",
                    wrap(views.action, name=action),
                    name=name + action.replace("-", "_"),
                )
            )
        return urls
