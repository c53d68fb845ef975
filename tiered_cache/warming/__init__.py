"""Warming: fill the shared tiers with the keys predicted hot, and L1 from them.

Issue 9, item 6. One module per job:

* ``registry``: ``@tiered_cache.warmer("group")`` callables that recompute
  the value of a key of their group (the part of the key before its first
  ``:``);
* ``score``: the scorer that ranks sampled keys by predicted reuse from the
  access history (``tiered_cache.history``); the seam a learned model plugs
  into is its signature, ``score(history) -> [(key, score), ...]``;
* ``run``: ``warm()``, what ``manage.py warm_cache`` runs: plan, skip what
  L2/L3 hold, re-run warmers (or request pages), checkpoint, publish the
  warm set;
* ``preload``: the opt-in start-up thread that loads the warm set into a
  process's L1.

Importing this package is light: ``tiered_cache.warmer`` resolves to
``registry.warmer`` on first use.
"""
