"""The learned policy: the best heuristic for the workload, a model on top.

Two layers, each able to fall back to the one below (issue 9):

1. **Which heuristic.** A ``Chooser`` replays a hash-sampled share of the
   accesses (SHARDS) into mini caches run by each candidate heuristic
   (``lru``, ``s3fifo``, ``tinylfu``) and, when another one leads the current
   by a margin, the live base heuristic is rebuilt from the resident keys
   (oldest access first). This alone picks LRU for a tiny cache over a looping
   trace and S3-FIFO or W-TinyLFU where frequency matters, without being told.
2. **Which victim.** At each eviction the base heuristic names its victim;
   its next ``tail`` keys plus ``random`` random resident keys are the
   candidates; a logistic-regression reuse model (``model.py``) scores them
   from cheap per-key statistics (``keystats.py``) and the candidate least
   likely to be reused within the label window is evicted instead, when the
   model is sure enough (``margin`` in log-odds). With ``gate`` set, a
   victim whose own score is below it is evicted without scoring the others
   (cheaper, but it cost 0.1-0.3 point of hit ratio on web12).

Learning: at every ``label_every``-th eviction the candidates' features are
sampled; the stream labels them (``labels.py``: reused within the measured
eviction age or not). When ``refit`` new labels have arrived a background
thread fits a new model with scikit-learn (``fit.py``) from a copy of the
samples; the policy picks the result up at a later eviction. The request path
never fits and never imports scikit-learn; scoring is plain Python.

Fallback: the base heuristic decides alone while there is no model
(``untrained``), while the model is older than ``stale_after`` label windows
(``stale``), or while it is losing the sampled shadow comparison against the
heuristic (``losing``): the chooser's sampled stream also feeds a shadow of
the current heuristic run *with* the model (``judged``), and the model
decides while that shadow is not behind the plain one (``Chooser.model_lead``).
Before the first verdict, or without shadows, duels decide instead
(``scoreboard.py``), a cheaper but poorer proxy. Each eviction is counted under the
mode that decided it (``stats()``), and every change of mode is logged on the
``tiered_cache.policy.learned`` logger. ``model_path`` (or ``load_model``)
starts from a model trained elsewhere, e.g. by ``tiered_cache.learning.train``.

Costs: ``on_hit`` is a bound ``deque.append`` (the read buffer, ``hits.py``);
statistics, labels, duels and shadows are updated when the buffer is drained
under the tier's lock, so they are paid per eviction, not per hit. Memory per
key: one ``KeyStats`` (7 slots) for resident keys and for at most
``ghost_ratio`` x capacity recently evicted keys; pending labels, duels and
shadow stores are bounded by their own limits.
"""

from __future__ import annotations

import logging
import random
import time
from collections.abc import Iterator, Sequence
from pathlib import Path

from .base import BasePolicy
from .chooser import Chooser
from .fit import Trainer
from .hits import HIT_BUFFER, HitBuffer
from .keystats import Ghost, KeyStats, group_of
from .labels import Labeler
from .model import ReuseModel
from .scoreboard import Scoreboard
from .store import CountStore

__all__ = ["LearnedPolicy"]

logger = logging.getLogger("tiered_cache.policy.learned")

MODES = ("model", "untrained", "stale", "losing")


def _group(key: str, stats: KeyStats) -> int:
    group = stats.group
    if group < 0:
        stats.group = group = group_of(key)
    return group


class LearnedPolicy(HitBuffer, BasePolicy):
    """Adaptive base heuristic (sampled shadows) with a learned victim choice."""

    name = "learned"
    entry_bytes = 450  # its key statistics too: bench/memory.py, 200 000 entries

    def __init__(
        self,
        base: str = "s3fifo",
        choices: Sequence[str] = ("lru", "s3fifo", "tinylfu"),
        shadow: int = 128,
        tail: int = 3,
        random_candidates: int = 1,
        margin: float = 0.5,
        gate: float | None = None,
        label_every: int = 8,
        refit: int = 5000,
        min_samples: int = 2000,
        stale_after: float = 200.0,
        ghost_ratio: float = 1.0,
        probe_every: int = 4,
        min_duels: int = 30,
        judged: bool = True,
        train: bool = True,
        wait_for_fit: bool = False,
        model_path: str | None = None,
        seed: int = 0,
        hit_buffer: int = HIT_BUFFER,
    ) -> None:
        from . import REGISTRY  # the registry imports this module

        for name in (base, *choices):
            if name not in REGISTRY or name == self.name:
                raise ValueError(f"unknown base heuristic {name!r}")
        if base not in choices and choices:
            raise ValueError(f"base {base!r} must be one of choices {choices!r}")
        if tail < 1 or random_candidates < 0 or label_every < 1 or probe_every < 1:
            raise ValueError(
                "tail and label_every/probe_every must be >= 1, random >= 0"
            )
        if not 0.0 <= ghost_ratio <= 10.0:
            raise ValueError(f"ghost_ratio must be in [0, 10], not {ghost_ratio!r}")
        self._registry = REGISTRY
        self.base_name = base
        self.choices = tuple(choices)
        self.shadow = shadow
        self.tail = tail
        self.random_candidates = random_candidates
        self.margin = margin
        self.gate = gate
        self.label_every = label_every
        self.refit = refit
        self.min_samples = min_samples
        self.stale_after = stale_after
        self.ghost_ratio = ghost_ratio
        self.probe_every = probe_every
        self.min_duels = min_duels
        self.judged = judged
        self.train = train
        self.wait_for_fit = wait_for_fit
        self._rng = random.Random(seed)
        self.base: BasePolicy = REGISTRY[base]()
        self._stats: dict[str, KeyStats] = {}
        self._keys: list[str] = []  # resident keys, for random candidates
        self._index: dict[str, int] = {}
        self.ghost = Ghost(0)
        self._ghost_pop = self.ghost.pop
        self.labels = Labeler()
        self._pending = self.labels.pending  # keys waiting for a label
        self.board = Scoreboard()
        self._dueling = self.board.by_key  # keys in an undecided duel
        self._half_life = 1.0
        self.trainer = Trainer()
        self.model: ReuseModel | None = None
        self._model_at = 0  # logical time the model's samples end at
        self._fitted_at = 0  # labels count at the last fit submitted
        self._fitting = False  # a fit was submitted and not picked up yet
        self._chooser: Chooser | None = None
        self._capacity = 0
        self._now = 0
        self._window = 0.0  # mean idle time of evicted keys (the label window)
        self._evictions = 0
        self._mode = "untrained"
        self.counts = dict.fromkeys(MODES, 0)
        self.counts["overridden"] = 0
        self.switches: list[tuple[int, str]] = []
        self._init_hits(hit_buffer)
        if model_path is not None:
            self.load_model(ReuseModel.load(Path(model_path)))

    # -- the model -------------------------------------------------------------

    def load_model(self, model: ReuseModel) -> None:
        """Use ``model`` from now on (a newer one may replace it)."""
        self.model = model
        self._model_at = self._now
        judge = self._chooser.judge if self._chooser is not None else None
        if judge is not None:
            judge.policy.load_model(model)  # type: ignore[attr-defined]
        elif self.judged and self._chooser is not None:
            self._set_judge()

    @property
    def chooser(self) -> Chooser | None:
        """The shadow caches (``None`` until the first eviction, or one choice)."""
        return self._chooser

    def mode(self) -> str:
        """Who decides evictions now: ``"model"`` or the fallback's reason."""
        if self.model is None:
            return "untrained"
        if self.train and self._now - self._model_at > self._stale_age():
            return "stale"
        chooser = self._chooser
        lead = chooser.model_lead if chooser is not None else None
        if lead is not None:  # the shadow A/B has spoken: it decides
            return "model" if lead >= 0 else "losing"
        if not self.board.leading(self.min_duels):
            return "losing"
        return "model"

    def _stale_age(self) -> float:
        """Accesses after which a model is stale: many label windows and refits.

        A refit is due every ``refit`` labels, and each sampled eviction labels
        several candidates, so ``2 x refit x label_every`` accesses is well past
        the next refit: a model that old means fitting failed or stopped.
        """
        return max(
            self.stale_after * max(self._window, self._capacity),
            2 * self.refit * self.label_every,
        )

    def _maybe_fit(self) -> None:
        labels = self.labels
        if (
            not self.train
            or labels.labelled - self._fitted_at < self.refit
            or labels.kept < self.min_samples
            or self.trainer.busy
        ):
            return
        rows, groups, ys = labels.snapshot()
        if min(ys) == max(ys):
            return
        self._fitted_at = labels.labelled
        self._fitting = self.trainer.submit(rows, groups, ys, {"at": self._now})

    # -- bookkeeping ------------------------------------------------------------

    def _access(self, key: str) -> KeyStats:
        """Record an access to ``key`` (hit or miss) at the next logical time.

        ``KeyStats``'s update is inlined: this runs once per access.
        """
        self._now = now = self._now + 1
        stats = self._stats.get(key)
        if stats is None:
            stats = self._ghost_pop(key, None) or KeyStats(key, now)
        if stats.count:
            gap = now - stats.last
            stats.gap2 = stats.gap1
            stats.gap1 = gap
            stats.freq = stats.freq * 0.5 ** (gap / self._half_life) + 1.0
        else:
            stats.freq = 1.0
        stats.count += 1
        stats.last = now
        if key in self._pending:
            self.labels.accessed(key, now, self._window)
        if key in self._dueling:
            self.board.accessed(key)
        chooser = self._chooser
        if chooser is not None and stats.hash < chooser.threshold:
            switch = chooser.access(key)
            if switch is not None:
                self._switch(switch)
        return stats

    def _drain(self) -> None:
        hits = self._take_hits()
        if not hits:
            return
        table, base_hit = self._stats, self.base.on_hit
        for key in hits:
            if key in table:  # else removed meanwhile: a lossy record
                self._access(key)
                base_hit(key)

    def _switch(self, name: str) -> None:
        """Rebuild the base heuristic ``name`` from the resident keys."""
        new = self._registry[name]()
        stats = self._stats
        for key in sorted(stats, key=lambda k: stats[k].last):
            new.on_insert(key, stats[key].size, stats[key].expires)
        self.base = new
        self.base_name = name
        if self.judged:
            self._set_judge()
        self.switches.append((self._now, name))
        logger.info("learned policy: base heuristic is now %s", name)

    def _set_judge(self) -> None:
        """Start the shadow A/B: the current heuristic with the model."""
        chooser = self._chooser
        if chooser is None or self.model is None:
            return
        name = self.base_name
        judged = LearnedPolicy(
            base=name,
            choices=(name,),
            tail=self.tail,
            random_candidates=self.random_candidates,
            margin=self.margin,
            label_every=2**62,  # no labels, no duels that could bench it
            min_duels=2**62,
            train=False,
            seed=self._rng.randrange(2**32),
        )
        judged.load_model(self.model)
        chooser.set_judge(CountStore(judged, chooser.mini, "judge"))

    def _start_chooser(self) -> None:
        self._capacity = capacity = len(self._stats)
        self._half_life = max(1.0, float(capacity))
        self.ghost.limit = int(self.ghost_ratio * capacity)
        self._window = float(capacity)
        if len(self.choices) > 1:
            self._chooser = Chooser(
                {name: self._registry[name]() for name in self.choices},
                capacity,
                self.base_name,
                shadow=self.shadow,
            )
            if self.judged:
                self._set_judge()

    # -- the contract ------------------------------------------------------------

    def on_insert(self, key: str, size: int, expires_at: float | None) -> None:
        if self._hits:
            self._drain()
        if key in self._stats:  # replaced without on_remove: start afresh
            self.on_remove(key)
        stats = self._access(key)
        stats.expires = expires_at
        stats.size = size
        self._stats[key] = stats
        self._index[key] = len(self._keys)
        self._keys.append(key)
        self.base.on_insert(key, size, expires_at)

    def admit(self, key: str, size: int) -> bool:
        if self._hits:
            self._drain()
        return self.base.admit(key, size)

    def victim(self) -> str | None:
        self._drain()
        if self._capacity == 0 or len(self._stats) > 2 * self._capacity:
            self._start_chooser()
        victim = self.base.victim()
        if victim is None:
            return None
        self._evictions += 1
        mode = self.mode()
        if mode != self._mode:
            logger.info("learned policy: eviction mode %s -> %s", self._mode, mode)
            self._mode = mode
        labelled = self._evictions % self.label_every == 0
        asked = self.model is not None and (
            mode == "model" or self._evictions % self.probe_every == 0
        )
        if labelled or asked:
            chosen = self._choose(victim, labelled, asked)
            if chosen != victim and mode == "model":
                self.counts["overridden"] += 1
                self.counts[mode] += 1
                return chosen
        self.counts[mode] += 1
        return victim

    def _choose(self, victim: str, labelled: bool, asked: bool) -> str:
        """Sample candidates' features; return the model's pick among them."""
        now, scale = self._now, max(1.0, float(self._capacity))
        wall = time.time()
        stats = self._stats
        model = self.model
        if not labelled and model is not None and self.gate is not None:
            # A victim the model finds unlikely to be reused is evicted
            # without scoring the other candidates (most victims, cheaply).
            mine = stats[victim]
            row = mine.features(now, scale, wall)
            if model.score([row], [_group(victim, mine)])[0] < self.gate:
                return victim
        candidates = self.base.tail(self.tail)
        keys = self._keys
        if keys:
            choice = self._rng.choice
            candidates += [choice(keys) for _ in range(self.random_candidates)]
        if victim not in candidates:
            candidates.append(victim)
        candidates = list(dict.fromkeys(candidates))
        rows = [stats[key].features(now, scale, wall) for key in candidates]
        groups = [_group(key, stats[key]) for key in candidates]
        if labelled:
            sample = self.labels.sample
            for key, row, group in zip(candidates, rows, groups, strict=True):
                sample(key, now, row, group)
            self.labels.expire(now, self._window)
            self._maybe_fit()
        if not asked or model is None:
            return victim
        scores = model.score(rows, groups)
        best = min(range(len(candidates)), key=scores.__getitem__)
        chosen = candidates[best]
        if (
            chosen == victim
            or scores[candidates.index(victim)] - scores[best] < self.margin
        ):
            return victim
        self.board.duel(victim, chosen, now)
        return chosen

    def on_evict(self, key: str) -> None:
        stats = self._stats.get(key)
        if stats is not None:
            idle = self._now - stats.last
            self._window += (idle - self._window) / 64  # moving mean, ~64 evictions
        self._forget(key, evicted=True)
        self.base.on_evict(key)
        if not self._evictions % 64:
            self.board.expire(self._now, 2 * self._window)
        if self._fitting:
            if self.wait_for_fit:
                self.trainer.done.wait()
            if self.trainer.done.is_set():
                self._fitting = False
                fitted = self.trainer.take()
                if fitted is not None:
                    self.load_model(fitted)
                    self._model_at = fitted.meta.get("at", self._now)

    def on_remove(self, key: str) -> None:
        self._forget(key, evicted=False)
        self.base.on_remove(key)

    def _forget(self, key: str, evicted: bool) -> None:
        stats = self._stats.pop(key, None)
        if stats is None:
            return
        if evicted:
            self.ghost.add(key, stats)
        index = self._index.pop(key)
        last = self._keys.pop()
        if last != key:
            self._keys[index] = last
            self._index[last] = index

    def stats(self) -> dict:
        """Counters for reports: decisions per mode, fits, duels, shadows."""
        chooser = self._chooser
        return {
            "base": self.base_name,
            "decisions": dict(self.counts),
            "switches": list(self.switches),
            "fits": self.trainer.fits,
            "fit_failures": self.trainer.failures,
            "duels_won": self.board.wins,
            "duels_lost": self.board.losses,
            "labelled": self.labels.labelled,
            "window": round(self._window, 1),
            "shadows": chooser.hit_ratios() if chooser else {},
            "model_lead": chooser.model_lead if chooser else None,
        }

    def clear(self) -> None:
        self.base.clear()
        self._stats.clear()
        self._keys.clear()
        self._index.clear()
        self.ghost.clear()
        self._hits.clear()  # the same deque: on_hit stays bound to it

    def __len__(self) -> int:
        return len(self._stats)

    def __iter__(self) -> Iterator[str]:
        return iter(list(self._stats))
