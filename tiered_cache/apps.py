"""Django app config: registers the system checks, starts the metrics flush."""

from __future__ import annotations

from django.apps import AppConfig


class TieredCacheConfig(AppConfig):
    name = "tiered_cache"
    verbose_name = "Tiered cache"

    def ready(self) -> None:
        from . import checks  # noqa: F401  (registers the checks)
        from .history.flush import history_enabled
        from .metrics.flusher import flusher, options_enabled, tiered_aliases

        # Every process that may serve a TieredCache sends its counters to
        # the shared store; the thread only looks at chains already built,
        # so a process that never uses the cache sends nothing.
        if any(options_enabled(alias) for alias in tiered_aliases()):
            flusher.start()
        # The access history and the L1 preload (issue 9), each opt-in.
        from .warming.preload import start_preloads

        if history_enabled(tiered_aliases()):  # its flush is a job of the flusher
            flusher.start()
        start_preloads(tiered_aliases())
