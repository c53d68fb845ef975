"""Django app config: registers the system checks."""

from __future__ import annotations

from django.apps import AppConfig


class TieredCacheConfig(AppConfig):
    name = "tiered_cache"
    verbose_name = "Tiered cache"

    def ready(self) -> None:
        from . import checks  # noqa: F401  (registers the checks)
