"""Errors raised by tiers and the backend.

Configuration errors reuse Django's ``ImproperlyConfigured``; everything a tier
raises because of its transport (network, disk, timeouts) is a
``TierUnavailable`` chained to its cause, so ``backend.py`` alone decides, per
``FAIL_OPEN``, whether the caller sees it.
"""

from __future__ import annotations

__all__ = ["TierError", "TierUnavailable", "CircuitOpen", "EnvelopeError"]


class TierError(Exception):
    """Base class of the errors a tier reports."""


class TierUnavailable(TierError):
    """The tier could not serve the call (connection, timeout, I/O, OOM...)."""

    def __init__(self, tier: str, operation: str, detail: str = "") -> None:
        self.tier = tier
        self.operation = operation
        message = f"tier {tier!r} unavailable during {operation}"
        if detail:
            message = f"{message}: {detail}"
        super().__init__(message)


class CircuitOpen(TierUnavailable):
    """The tier's circuit breaker is open, so the call was not attempted."""

    def __init__(self, tier: str, operation: str) -> None:
        super().__init__(tier, operation, "circuit breaker open")


class EnvelopeError(ValueError):
    """Stored bytes are not a value this version can trust (a logged miss)."""
