"""Fit the reuse model with scikit-learn, and the thread that does it off-path.

``fit`` turns labelled samples (feature rows, key groups, 0/1 labels) into a
``ReuseModel``: the group bias is the smoothed log-odds of each group's label
rate against the overall rate (target encoding, ``prior`` pseudo-samples), and
a ``LogisticRegression`` (standardised inside, weights folded back) fits the
features with that bias as an offset-like extra column. scikit-learn and numpy
are imported inside the function, never when the policy is imported, and never
on a request: ``Trainer`` runs ``fit`` in a daemon thread of its own, which
holds no policy lock (the policy hands it a copy of the samples and picks the
result up at its next eviction).
"""

from __future__ import annotations

import logging
import math
import threading
from collections.abc import Sequence

from .keystats import FEATURES, GROUPS
from .model import ReuseModel

__all__ = ["Trainer", "fit"]

logger = logging.getLogger("tiered_cache.policy.learned")


def fit(
    rows: Sequence[Sequence[float]],
    groups: Sequence[int],
    labels: Sequence[int],
    *,
    prior: float = 20.0,
    meta: dict | None = None,
) -> ReuseModel:
    """Fit a ``ReuseModel``; ``ValueError`` if the labels are all one class."""
    import numpy as np
    from sklearn.linear_model import LogisticRegression

    x = np.asarray(rows, dtype=float)
    g = np.asarray(groups, dtype=np.int64)
    y = np.asarray(labels, dtype=np.int64)
    if x.ndim != 2 or x.shape[1] != len(FEATURES) or not len(x) == len(y) == len(g):
        raise ValueError("rows, groups and labels must be aligned")
    if y.min() == y.max():
        raise ValueError("labels are all one class: nothing to learn")
    rate = (y.sum() + 1.0) / (len(y) + 2.0)
    positives = np.bincount(g, weights=y, minlength=GROUPS)
    totals = np.bincount(g, minlength=GROUPS)
    smoothed = (positives + prior * rate) / (totals + prior)
    bias = np.log(smoothed / (1 - smoothed)) - math.log(rate / (1 - rate))
    mean, std = x.mean(axis=0), x.std(axis=0)
    std[std == 0] = 1.0
    columns = np.column_stack([(x - mean) / std, bias[g]])
    model = LogisticRegression(C=1.0, max_iter=200)
    model.fit(columns, y)
    weights = model.coef_[0]
    coef = weights[:-1] / std
    intercept = float(model.intercept_[0] - (coef * mean).sum())
    return ReuseModel(
        coef=[float(v) for v in coef],
        intercept=intercept,
        group_bias=[float(v) for v in weights[-1] * bias],
        meta={"samples": len(y), "positive_rate": float(y.mean()), **(meta or {})},
    )


class Trainer:
    """Fits in a background thread; at most one fit at a time.

    ``submit`` starts a fit of a copy of the samples unless one is running;
    ``take`` returns the newest finished model once (``None`` otherwise).
    ``done`` is set each time a fit ends (tests wait on it, not on a sleep).
    """

    def __init__(self) -> None:
        self._thread: threading.Thread | None = None
        self._result: ReuseModel | None = None
        self.done = threading.Event()
        self.fits = 0
        self.failures = 0
        self.unavailable = False  # scikit-learn is missing: never submit again

    @property
    def busy(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    def submit(
        self,
        rows: list[list[float]],
        groups: list[int],
        labels: list[int],
        meta: dict,
    ) -> bool:
        """Start fitting these samples in the background; ``False`` if busy."""
        if self.busy or self.unavailable:
            return False
        self.done.clear()
        self._thread = threading.Thread(
            target=self._run,
            args=(rows, groups, labels, meta),
            name="tiered-cache-learned-fit",
            daemon=True,
        )
        self._thread.start()
        return True

    def _run(self, rows: list, groups: list, labels: list, meta: dict) -> None:
        try:
            self._result = fit(rows, groups, labels, meta=meta)
            self.fits += 1
        except ImportError as exc:  # no [ml] extra: say it once, stop trying
            self.failures += 1
            self.unavailable = True
            logger.warning(
                "learned policy: cannot fit without scikit-learn and numpy "
                "(pip install 'django-tiered-cache[ml]'): %s; staying on the "
                "heuristic",
                exc,
            )
        except Exception:  # a failed fit leaves the policy on its heuristic
            self.failures += 1
            logger.exception("learned policy: fitting the reuse model failed")
        finally:
            self.done.set()

    def take(self) -> ReuseModel | None:
        """Return the model a finished fit produced, once."""
        result, self._result = self._result, None
        return result
