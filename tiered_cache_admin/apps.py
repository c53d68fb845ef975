from django.apps import AppConfig


class TieredCacheAdminConfig(AppConfig):
    name = "tiered_cache_admin"
    verbose_name = "Tiered cache"
