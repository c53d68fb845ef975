"""Django app config: registers the system checks, starts the background work.

The metrics flush (with the access history's, a job of the same thread) and
the opt-in L1 preload of the warm set.
"""

from __future__ import annotations

from django.apps import AppConfig


class TieredCacheConfig(AppConfig):
    name = "tiered_cache"
    verbose_name = "Tiered cache"

    def ready(self) -> None:
        from . import checks  # noqa: F401  (registers the checks)
        from .history.flush import history_enabled
        from .metrics.flusher import flusher, options_enabled, tiered_aliases
        from .warming.preload import start_preloads

        aliases = tiered_aliases()
        # Every process that may serve a TieredCache sends its counters to
        # the shared store, and its sampled reads when HISTORY is on (a job
        # of the same thread); the thread only looks at chains already
        # built, so a process that never uses the cache sends nothing.
        if any(options_enabled(alias) for alias in aliases) or history_enabled(aliases):
            flusher.start()
        # WARMING["PRELOAD"] (opt-in): load the warm set into L1.
        start_preloads(aliases)
