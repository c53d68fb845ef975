"""Fit the ``learned`` policy's reuse model from a recorded access history.

``train_from_history(accesses, capacity)`` is what ``manage.py
train_cache_model`` calls. ``accesses`` is the recorded history in time order,
``(key_hash, time)`` pairs (a key hash is any int or str that names a key; the
time orders the accesses and is otherwise unused, since the features use the
count of accesses as their clock). The history is split in time: the first
``1 - validation`` share trains, the rest validates.

1. **Labels.** The training part is replayed through a ``LearnedPolicy`` with
   a store of ``capacity`` entries, labelling the candidates of every
   eviction exactly as the live policy does (reused within the eviction age or
   not): the same features, the same labels, no look-ahead.
2. **Fit.** scikit-learn fits the model (``policy/fit.py``).
3. **Validation.** The validation part is labelled the same way; the report
   gives the model's ROC AUC, log loss and accuracy on it, and the share of
   positives (the accuracy of always saying "no reuse").
4. **Replay comparison.** The whole history is replayed twice, counting hits
   in the validation part only: with the base heuristic alone (the
   ``learned`` policy without a model: its shadow-chosen heuristic) and with
   the fitted model deciding (no further training), so the report says
   whether the model helps on requests it was not fitted on.

The model is returned in the report; ``report.model.save(path)`` writes the
versioned JSON that ``POLICY_OPTIONS={"model_path": ...}`` loads.

``read_history(path)`` reads ``key_hash,time`` lines (or bare keys): the seam
for the command until the access-history recorder provides its own reader.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..policy.fit import fit
from ..policy.learned import LearnedPolicy
from ..policy.model import ReuseModel
from ..policy.store import CountStore

__all__ = ["TrainReport", "read_history", "train_from_history"]


@dataclass
class TrainReport:
    """What a training run produced and how it did on held-out requests."""

    model: ReuseModel
    capacity: int
    train_requests: int
    validation_requests: int
    train_samples: int
    validation_samples: int
    metrics: dict[str, float] = field(default_factory=dict)
    replay: dict[str, float] = field(default_factory=dict)

    def as_dict(self) -> dict[str, Any]:
        """The report without the model's weights (for JSON output)."""
        return {
            "capacity": self.capacity,
            "train_requests": self.train_requests,
            "validation_requests": self.validation_requests,
            "train_samples": self.train_samples,
            "validation_samples": self.validation_samples,
            "metrics": self.metrics,
            "replay": self.replay,
        }


def read_history(path: str | Path) -> list[tuple[str, float]]:
    """Read ``key_hash,time`` lines (or ``key_hash`` lines: time = line number)."""
    accesses = []
    with open(path, encoding="utf-8") as lines:
        for number, line in enumerate(lines):
            line = line.strip()
            if not line or line.startswith("#"):
                continue
            key, _, when = line.partition(",")
            accesses.append((key, float(when) if when else float(number)))
    return accesses


def _labelled(keys: Sequence[str], capacity: int, options: dict) -> LearnedPolicy:
    """Replay ``keys`` with every eviction labelled; return the policy."""
    policy = LearnedPolicy(**{**options, "train": False, "label_every": 1})
    store = CountStore(policy, capacity)
    for key in keys:
        store.access(key)
    return policy


def _hits_after(
    keys: Sequence[str], capacity: int, start: int, policy: LearnedPolicy
) -> float:
    store = CountStore(policy, capacity)
    for key in keys[:start]:
        store.access(key)
    before = store.hits
    for key in keys[start:]:
        store.access(key)
    return (store.hits - before) / max(1, len(keys) - start)


def train_from_history(
    accesses: Iterable[tuple[int | str, float]],
    capacity: int,
    *,
    validation: float = 0.2,
    options: dict[str, Any] | None = None,
) -> TrainReport:
    """Fit a reuse model on ``accesses``; validate and compare on the last share.

    ``capacity`` is the L1's size in entries the model is trained for;
    ``options`` are ``LearnedPolicy`` options (the same as in
    ``POLICY_OPTIONS``). Raises ``ValueError`` when the history is too short
    to give both classes of labels in both parts.
    """
    import numpy as np
    from sklearn.metrics import log_loss, roc_auc_score

    if capacity < 1 or not 0.0 < validation < 1.0:
        raise ValueError("capacity must be >= 1 and validation in (0, 1)")
    options = dict(options or {})
    options.pop("model_path", None)
    keys = [str(key) for key, _ in sorted(accesses, key=lambda pair: pair[1])]
    split = int(len(keys) * (1 - validation))
    train, held = keys[:split], keys[split:]
    rows, groups, labels = _labelled(train, capacity, options).labels.snapshot()
    if len(set(labels)) < 2:
        raise ValueError("the training part gives labels of one class only")
    model = fit(rows, groups, labels, meta={"source": "history"})
    v_rows, v_groups, v_labels = _labelled(held, capacity, options).labels.snapshot()
    metrics: dict[str, float] = {"positive_rate": float(np.mean(v_labels or [0]))}
    if len(set(v_labels)) == 2:
        scores = np.asarray(model.score(v_rows, v_groups))
        probability = 1 / (1 + np.exp(-scores))
        metrics.update(
            roc_auc=float(roc_auc_score(v_labels, scores)),
            log_loss=float(log_loss(v_labels, probability)),
            accuracy=float(np.mean((probability >= 0.5) == np.asarray(v_labels))),
        )
    heuristic = LearnedPolicy(**{**options, "train": False})
    learned = LearnedPolicy(**{**options, "train": False})
    learned.load_model(model)
    replay = {
        "heuristic_hit_ratio": _hits_after(keys, capacity, split, heuristic),
        "learned_hit_ratio": _hits_after(keys, capacity, split, learned),
    }
    replay["gain_points"] = 100 * (
        replay["learned_hit_ratio"] - replay["heuristic_hit_ratio"]
    )
    model.meta.update(
        capacity=capacity,
        requests=len(keys),
        validation={k: round(v, 4) for k, v in metrics.items() if math.isfinite(v)},
    )
    return TrainReport(
        model=model,
        capacity=capacity,
        train_requests=len(train),
        validation_requests=len(held),
        train_samples=len(labels),
        validation_samples=len(v_labels),
        metrics=metrics,
        replay=replay,
    )
