"""Errors raised by tiers and the backend.

Configuration errors reuse Django's ``ImproperlyConfigured``; everything a tier
raises because of its transport (network, disk, timeouts) is a
``TierUnavailable`` chained to its cause, so ``backend.py`` alone decides, per
``FAIL_OPEN``, whether the caller sees it.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from django.core.exceptions import ImproperlyConfigured

__all__ = [
    "TierError",
    "TierUnavailable",
    "CircuitOpen",
    "EnvelopeError",
    "UntrustedRecord",
    "RefusedSerializer",
    "BadValue",
    "BadValues",
]


class TierError(Exception):
    """Base class of the errors a tier reports."""


class TierUnavailable(TierError):
    """The tier could not serve the call (connection, timeout, I/O, OOM...).

    ``kind`` is a short, bounded label for logs and counters (``timeout``,
    ``oom``, ``disk_full``...). ``alive`` says the tier *answered* and refused
    this call (Redis OOM, a full disk): reads still work, so the failure must
    not open the circuit breaker, which guards reachability. ``busy`` says the
    call never reached the tier: this process had no free connection within
    the pool's bound. That is back-pressure from our own concurrency, not a
    fault of the tier, so it is counted on its own and leaves the breaker be.
    """

    def __init__(
        self,
        tier: str,
        operation: str,
        detail: str = "",
        *,
        kind: str = "unavailable",
        alive: bool = False,
        busy: bool = False,
    ) -> None:
        self.tier = tier
        self.operation = operation
        self.kind = kind
        self.alive = alive
        self.busy = busy
        message = f"tier {tier!r} unavailable during {operation}"
        if detail:
            message = f"{message}: {detail}"
        super().__init__(message)


class CircuitOpen(TierUnavailable):
    """The tier's circuit breaker is open, so the call was not attempted."""

    def __init__(self, tier: str, operation: str) -> None:
        super().__init__(tier, operation, "circuit breaker open", kind="circuit_open")


class EnvelopeError(ValueError):
    """Stored bytes are not a value this version can trust (a logged miss)."""


class UntrustedRecord(EnvelopeError):
    """Stored data that this deployment did not sign for this key.

    Not an envelope at all (a raw pickle, a foreign string), a truncated one,
    an unknown format version, a forged header, or a valid record copied from
    another key or signed with a secret we do not hold: never decompressed,
    never unpickled, counted as ``poison_rejected``.
    """


class RefusedSerializer(EnvelopeError):
    """A record signed by this deployment but written by a serializer the
    reading cache does not decode: a pickle record read by a cache with
    ``SERIALIZER: "json"`` (another process with another SERIALIZER shares
    the keys, or someone holding SECRET_KEY forged it). Never decompressed,
    never deserialized; a counted, logged miss.
    """


@dataclass(frozen=True)
class BadValue:
    """One setting of a tier spec whose value the tier cannot use.

    ``setting`` is where it is (``"LOCATION"`` or ``"OPTIONS['MAX_BYTES']"``),
    ``expected`` what would do. ``manage.py check`` shows each one as its own
    E001 with ``hint``; the constructor raises them all in one ``BadValues``.
    """

    tier: str
    setting: str
    value: Any
    expected: str

    @property
    def message(self) -> str:
        return f"tier {self.tier!r}: {self.setting} = {self.value!r} is not valid."

    @property
    def hint(self) -> str:
        return f"{self.setting} must be {self.expected}, not {self.value!r}."


class BadValues(ImproperlyConfigured):
    """``ImproperlyConfigured`` for one or more ``BadValue``: same text as the check."""

    def __init__(self, problems: Sequence[BadValue]) -> None:
        self.problems = tuple(problems)
        super().__init__(" ".join(f"{p.message} {p.hint}" for p in self.problems))
