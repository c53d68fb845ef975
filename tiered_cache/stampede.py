"""Stampede protection: a missing value is computed once, not once per caller.

When a popular key is missing (cold, expired, deleted), every request that
misses it at that moment would run the same expensive computation: a
*stampede*. ``TieredCache.get_or_set`` and the ``tiered_cache.cached``
decorator coordinate through this module, at two levels.

Single flight, per process. The first thread that misses a key becomes the
*leader* of a flight and computes; threads that miss the same key meanwhile
join the flight and wait on an event (no polling) for the leader's result.
Each waiter gets its own copy, unpickled from one pickle, so a caller that
mutates its value changes nobody else's (as with any cache hit). An exception
raised by the computation reaches every waiter. The flight ends with its
leader, so the next call tries again. A leader interrupted by a
``BaseException`` (``KeyboardInterrupt``, a worker timeout) abandons its
flight and the waiters start over. Flights are per chain of tiers (one per
configuration per process) and a forked child starts with none.

Leases, per deployment. When a tier can hold leases (``BaseTier.holds_leases``,
Redis; ``Chain.lease_slot``), the leader also takes a lease on the key there
(``SET NX PX``) before computing, so one process of the whole deployment
computes. The lease key is ``<namespace>#lease:<digest of the stored key>``:
under the cache's namespace, so ``clear()`` removes it and another cache
never meets it, and never the key of a value. It lasts ``LEASE_SECONDS``
(``OPTIONS["STAMPEDE"]``), never longer than the value's own timeout.

A leader that does not get the lease waits for the holder's value: it looks
at the cache after a short pause that doubles up to ``MAX_POLL_SECONDS``, and
asks for the lease again each time, so a holder that failed (and gave its
lease back) or died (and let it expire) is replaced at once. It waits at most
``LEASE_SECONDS``, then computes itself. The holder reads the key again once
it has the lease (another holder may have stored it and left between our miss
and our lease), stores the value, and only then gives the lease back
(compare-and-delete): in that order, a waiter never finds the lease free and
the value absent.

Failing open. A lease call the tier does not answer (timeout, refused
connection, open breaker) has an unknown outcome: the leader computes at once,
as if no tier held leases, and a waiter whose lease call fails stops waiting
and computes. Nobody waits for a lease across an L2 failure; a lease that the
failed call may have taken ends after its ``PX``. Giving a lease back never
raises, even with FAIL_OPEN off: the caller has its value, and the lease ends
by itself.

Not promised: a computation slower than its lease may run twice (the lease
expires and another process takes it); leases are not fenced (a holder past
its lease still stores its value, as ``add`` would). ``aget_or_set`` runs
the coordinated ``get_or_set`` in a thread (Django's ``sync_to_async``).
"""

from __future__ import annotations

import contextlib
import hashlib
import math
import pickle
import threading
import time
from collections.abc import Callable, Hashable
from typing import Any

from django.core.cache.backends.base import DEFAULT_TIMEOUT

from .chain import Chain, Slot
from .exceptions import TierUnavailable
from .forksafe import Registry, renewed_lock
from .sentinels import MISSING, UNAVAILABLE

__all__ = [
    "Coordinator",
    "coordinator_for",
    "get_or_set",
    "lease_key",
    "lease_seconds",
    "local_coordinator",
]

#: The first pause of a waiter, doubled up to ``MAX_POLL_SECONDS``.
FIRST_POLL_SECONDS = 0.005
#: Exact types handed to waiters as they are: they cannot be mutated.
_IMMUTABLE = frozenset({str, bytes, int, float, bool, complex, type(None)})

#: ``read()`` returns a value or ``MISSING``; ``produce(outage)`` computes and
#: stores one (``outage``: the lease tier did not answer).
Read = Callable[[], Any]
Produce = Callable[[bool], Any]


class _Flight:
    """One computation in progress in this process, and what its waiters get."""

    __slots__ = ("done", "waiting", "value", "payload", "error", "abandoned")

    def __init__(self) -> None:
        self.done = threading.Event()
        self.waiting = 0
        self.value: Any = MISSING
        self.payload: bytes | None = None
        self.error: Exception | None = None
        self.abandoned = False

    def result(self) -> Any:
        """Return a waiter's copy of the value, or raise the leader's error."""
        if self.error is not None:
            raise self.error
        if self.payload is None:
            return self.value
        return pickle.loads(self.payload)


class Coordinator:
    """Single flight in this process; leases at ``lease`` when there is one."""

    def __init__(self, lease: Slot | None, *, owner: object = None) -> None:
        #: Where leases are taken (``Chain.lease_slot``); ``None``: nowhere.
        self.lease = lease
        # The chain this serves is kept alive: its id keys the registry.
        self._owner = owner
        self._flights: dict[Hashable, _Flight] = {}
        # Callers that join a flight instead of computing (stampedes
        # collapsed) are counted in the chain's ``ChainStats``.
        self._counts = getattr(owner, "stats", None)
        self._lock = renewed_lock(self)

    def waiting(self, key: Hashable) -> int:
        """Return how many threads wait for the flight on ``key`` (0: none)."""
        flight = self._flights.get(key)
        return 0 if flight is None else flight.waiting

    def in_flight(self, key: Hashable) -> bool:
        """Return whether a thread of this process is computing ``key``."""
        return key in self._flights

    # -- a missing value -------------------------------------------------------

    def run(
        self,
        key: Hashable,
        read: Read,
        produce: Produce,
        *,
        lease_key: str | None = None,
        lease_seconds: float | None = None,
        max_poll: float = 0.05,
    ) -> Any:
        """Return ``read()``'s value or ``produce``'s, computed once (see above).

        ``key`` names the flight (the stored key); ``lease_key`` and
        ``lease_seconds`` (``None``: no lease) the lease.
        """
        while True:
            with self._lock:
                flight = self._flights.get(key)
                if flight is None:
                    flight = self._flights[key] = _Flight()
                    break
                flight.waiting += 1
                if self._counts is not None:
                    self._counts.collapsed += 1
            flight.done.wait()
            if not flight.abandoned:
                return flight.result()
        try:
            value = self._compute(read, produce, lease_key, lease_seconds, max_poll)
        except Exception as exc:
            flight.error = exc
            self._land(key, flight)
            raise
        except BaseException:
            flight.abandoned = True
            self._land(key, flight)
            raise
        flight.value = value
        self._land(key, flight)
        return value

    def _compute(
        self,
        read: Read,
        produce: Produce,
        lease_key: str | None,
        seconds: float | None,
        max_poll: float,
    ) -> Any:
        value = read()  # the leader's read; or a flight landed since our miss
        if value is not MISSING:
            return value
        slot = self.lease
        if slot is None or lease_key is None or seconds is None:
            return produce(False)
        token = slot.acquire_lease(lease_key, seconds)
        if token is None:
            value, token = self._wait(slot, read, lease_key, seconds, max_poll)
            if value is not MISSING:
                return value
            if token is None:  # the holder outlived its lease: compute too
                return produce(False)
        if token is UNAVAILABLE:
            return produce(True)
        try:
            value = read()
            return produce(False) if value is MISSING else value
        finally:
            self._release(slot, lease_key, token)

    def _wait(
        self, slot: Slot, read: Read, lease_key: str, seconds: float, max_poll: float
    ) -> tuple[Any, Any]:
        """Wait for another holder's value, at most ``seconds``.

        Return ``(value, None)`` when it arrived, ``(MISSING, token)`` when
        the lease became ours, ``(MISSING, UNAVAILABLE)`` when the tier stopped
        answering and ``(MISSING, None)`` when the time is up.
        """
        deadline = time.monotonic() + seconds
        pause = min(FIRST_POLL_SECONDS, max_poll)
        while True:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return MISSING, None
            time.sleep(min(pause, remaining))
            value = read()
            if value is not MISSING:
                return value, None
            token = slot.acquire_lease(lease_key, seconds)
            if token is not None:
                return MISSING, token
            pause = min(pause * 2, max_poll)

    # -- a value recomputed before it expires ------------------------------------

    def refresh(
        self,
        key: Hashable,
        produce: Produce,
        *,
        lease_key: str | None = None,
        lease_seconds: float | None = None,
    ) -> Any:
        """Recompute now, unless a thread here or a lease holder elsewhere does.

        Never waits. Return what ``produce`` returned, or ``MISSING`` when it
        did not run; its exception propagates
        (and reaches the threads that joined the flight meanwhile). A lease
        tier that does not answer means "not now": the caller still holds a
        valid value.
        """
        with self._lock:
            if key in self._flights:
                return MISSING
            flight = self._flights[key] = _Flight()
        slot = self.lease
        try:
            token = None
            if slot is not None and lease_key is not None and lease_seconds:
                try:
                    token = slot.acquire_lease(lease_key, lease_seconds)
                except TierUnavailable:  # FAIL_OPEN off: still only an option
                    token = UNAVAILABLE
                if token is None or token is UNAVAILABLE:
                    flight.abandoned = True
                    return MISSING
            try:
                flight.value = produce(False)
            finally:
                if token is not None:
                    self._release(slot, lease_key, token)  # type: ignore[arg-type]
        except Exception as exc:
            flight.error = exc
            raise
        except BaseException:
            flight.abandoned = True
            raise
        finally:
            self._land(key, flight)
        return flight.value

    # -- helpers -------------------------------------------------------------------

    def _land(self, key: Hashable, flight: _Flight) -> None:
        """End ``flight``: later calls start a new one; wake its waiters."""
        with self._lock:
            if self._flights.get(key) is flight:
                del self._flights[key]
            waiting = flight.waiting  # final: nobody can join any more
        if (
            waiting
            and flight.error is None
            and not flight.abandoned
            and type(flight.value) not in _IMMUTABLE
        ):
            try:
                flight.payload = pickle.dumps(flight.value, pickle.HIGHEST_PROTOCOL)
            except Exception:
                # Not picklable (a value that was not stored): the waiters
                # get the leader's object itself, as there is no copy to make.
                flight.payload = None
        flight.done.set()

    @staticmethod
    def _release(slot: Slot, lease_key: str, token: str) -> None:
        # FAIL_OPEN off: the slot has counted and logged the failure; the
        # lease ends by itself and the caller has its value.
        with contextlib.suppress(TierUnavailable):
            slot.release_lease(lease_key, token)


_coordinators: Registry[Coordinator] = Registry(forget_in_child=True)


def coordinator_for(chain: Chain) -> Coordinator:
    """Return this process's coordinator for ``chain`` (flights and leases)."""
    return _coordinators.get_or_create(
        ("chain", id(chain)), lambda: Coordinator(chain.lease_slot, owner=chain)
    )


def local_coordinator(name: Hashable) -> Coordinator:
    """Return this process's lease-less coordinator called ``name``.

    For caches that are not a ``TieredCache`` (the ``cached`` decorator over
    another Django backend): single flight per process only.
    """
    return _coordinators.get_or_create(("local", name), lambda: Coordinator(None))


def lease_key(namespace: str, stored_key: str) -> str:
    """Return the lease key of ``stored_key``: under ``namespace``, never a value's.

    Keys a cache builds start with ``namespace`` followed by the version
    (``<prefix>:<version>:``), so ``<namespace>#lease:`` cannot be one of
    them (``keys.storable_key`` relies on the same).
    """
    digest = hashlib.sha256(stored_key.encode("utf-8", "surrogatepass")).hexdigest()
    return f"{namespace}#lease:{digest[:32]}"


def lease_seconds(
    configured: float | None, timeout: Any, default_timeout: Any
) -> float | None:
    """Return how long to lease a value stored for ``timeout`` (``None``: no lease).

    Never longer than the value's own lifetime; no lease at all for a value
    that will not be stored (``timeout <= 0``) or a timeout that is not a
    number (storing it raises, after the computation, as in Django).
    """
    if configured is None:
        return None
    if timeout is DEFAULT_TIMEOUT:
        timeout = default_timeout
    if timeout is None:
        return configured
    if isinstance(timeout, bool) or not isinstance(timeout, (int, float)):
        return None
    if not timeout > 0:  # also NaN
        return None
    return configured if math.isinf(timeout) else min(configured, timeout)


def get_or_set(
    cache: Any,
    chain: Chain,
    key: Any,
    default: Any,
    timeout: Any = DEFAULT_TIMEOUT,
    version: int | None = None,
) -> Any:
    """``TieredCache.get_or_set``: Django's semantics, computed once (see above).

    As in Django, a computed value is stored with ``add`` and the key is read
    again, so a value another caller stored first wins. Each tier counts one
    lookup per call, hit or miss: the reads after the first (the leader's
    second look, the read back after ``add``) are uncounted (issue 8), and
    the key group, if counted, is counted once.
    """
    stored = cache.stored_key(key, version)
    if not callable(default):  # nothing to compute: Django's get, add, get
        value = cache.get(key, MISSING, version=version)
        if value is not MISSING:
            return value
        cache.add(key, default, timeout=timeout, version=version)
        return cache._peek(stored, default)
    groups = chain.groups
    top = chain.fast_top
    if top is not None:
        # The hit costs what ``get``'s does. After a miss here the rest of the
        # read is the flight leader's, so the threads that miss while a flight
        # is in the air join it without a round trip to L2 each.
        value = top.get_value(stored, MISSING)
        if value is not MISSING:
            if groups is not None:
                groups.count(key, True)
            return value
    looks = []

    def read() -> Any:
        if looks:  # a look again: counted already
            return cache._peek(stored, MISSING)
        looks.append(True)
        value = cache._get_top_counted(stored)
        if groups is not None:
            groups.count(key, value is not MISSING)
        return value

    def produce(outage: bool) -> Any:
        value = default()
        cache.add(key, value, timeout=timeout, version=version)
        return cache._peek(stored, value)

    options = cache.options.stampede
    return coordinator_for(chain).run(
        stored,
        read,
        produce,
        lease_key=lease_key(cache.namespace, stored),
        lease_seconds=lease_seconds(
            options.lease_seconds, timeout, cache.default_timeout
        ),
        max_poll=options.max_poll_seconds,
    )
