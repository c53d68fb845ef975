"""The exported reuse model: a few floats, scored in plain Python, stored as JSON.

scikit-learn fits the model (``policy/fit.py``, never on the request path);
what the eviction path uses is this export: a logistic regression's weights
over ``keystats.FEATURES``, its intercept, and a bias per hashed key group
(the smoothed log-odds of reuse of the group's samples against all samples).
``score`` is the log-odds that the key is accessed again within the label
window; the policy evicts the candidate with the lowest.

Why plain Python and not numpy: the policy scores 4-10 candidates per
eviction, and for that few rows numpy's per-call overhead (array creation, a
``dot``) costs more than the arithmetic (measured in ``docs/policies.rst``).

The JSON form is versioned (``format``) and small (``GROUPS`` + a dozen
floats), so a command can train it and web processes can load it.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from .keystats import FEATURES, GROUPS

__all__ = ["FORMAT", "ReuseModel"]

#: Version of the JSON layout; ``load`` refuses others.
FORMAT = 1


@dataclass
class ReuseModel:
    """Logistic-regression weights over ``FEATURES`` plus a group bias table."""

    coef: list[float]
    intercept: float
    group_bias: list[float] = field(default_factory=lambda: [0.0] * GROUPS)
    #: Free-form provenance: samples, validation metrics, source trace...
    meta: dict[str, Any] = field(default_factory=dict)
    features: tuple[str, ...] = FEATURES
    format: int = FORMAT

    def __post_init__(self) -> None:
        if len(self.coef) != len(FEATURES) or tuple(self.features) != FEATURES:
            raise ValueError(
                f"model features {list(self.features)} do not match {list(FEATURES)}"
            )
        if len(self.group_bias) != GROUPS:
            raise ValueError(f"group_bias needs {GROUPS} entries")

    def score(self, rows: Sequence[Sequence[float]], groups: Sequence[int]) -> list:
        """Return the reuse log-odds of each feature row."""
        # Unrolled over the 7 features: a generator per row cost 3x more.
        c0, c1, c2, c3, c4, c5, c6 = self.coef
        bias, b = self.group_bias, self.intercept
        return [
            b
            + bias[g]
            + c0 * x0
            + c1 * x1
            + c2 * x2
            + c3 * x3
            + c4 * x4
            + c5 * x5
            + c6 * x6
            for (x0, x1, x2, x3, x4, x5, x6), g in zip(rows, groups, strict=True)
        ]

    def to_json(self) -> str:
        """Return the versioned JSON form."""
        data = asdict(self)
        data["features"] = list(self.features)
        return json.dumps(data, separators=(",", ":"))

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> ReuseModel:
        """Build a model from its JSON form; ``ValueError`` if it does not fit."""
        if data.get("format") != FORMAT:
            raise ValueError(f"model format {data.get('format')!r}, expected {FORMAT}")
        return cls(
            coef=[float(v) for v in data["coef"]],
            intercept=float(data["intercept"]),
            group_bias=[float(v) for v in data["group_bias"]],
            meta=dict(data.get("meta") or {}),
            features=tuple(data["features"]),
        )

    @classmethod
    def load(cls, path: str | Path) -> ReuseModel:
        """Read a model written by ``save``."""
        return cls.from_dict(json.loads(Path(path).read_text(encoding="utf-8")))

    def save(self, path: str | Path) -> None:
        """Write the JSON form to ``path``."""
        Path(path).write_text(self.to_json(), encoding="utf-8")
