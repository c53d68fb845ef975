"""The dashboard's permissions, carried by a model with no table.

Django grants permissions per model, so the dashboard has one: unmanaged
(no migration creates a table, nothing ever queries it) and with no default
add/change/delete/view permissions, only the three the pages check. The
admin lists it in its index like any model, under this app's name; only
users holding ``view_dashboard`` see the entry.
"""

from django.db import models

__all__ = ["ACT", "VALUES", "VIEW", "CacheDashboard"]

#: See the pages: overview, key groups, key inspector (sizes and TTLs only).
VIEW = "tiered_cache_admin.view_dashboard"
#: Run the actions: clear a tier, invalidate a key or a key group.
ACT = "tiered_cache_admin.act_on_cache"
#: See cached values in the key inspector (they are unpickled to be shown).
VALUES = "tiered_cache_admin.view_values"


class CacheDashboard(models.Model):
    """No rows, no table: the holder of the dashboard's permissions."""

    class Meta:
        managed = False
        default_permissions = ()
        permissions = [
            ("view_dashboard", "Can view the cache dashboard"),
            ("act_on_cache", "Can clear cache tiers and invalidate keys"),
            ("view_values", "Can see cached values in the key inspector"),
        ]
        verbose_name = "cache dashboard"
        verbose_name_plural = "cache dashboard"
