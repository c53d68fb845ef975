"""Dashboard pages for tiered_cache in the Django admin."""

from django.apps import AppConfig


class TieredCacheAdminConfig(AppConfig):
    name = "tiered_cache_admin"
    verbose_name = "Tiered cache"
    # The one model has no table; its key type only has to stay the migration's.
    default_auto_field = "django.db.models.AutoField"

    def ready(self) -> None:
        from . import checks  # noqa: F401  (registers the checks)
