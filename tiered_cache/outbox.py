"""Announcements that could not be sent yet, kept until the bus's tier answers.

On one server a write and its announcement go out in one transaction
(``RedisStream.append_after``), so neither is lost without the other. When
that cannot be used (Cluster: the stream's slot is not the key's; ``delete``,
``touch``, ``incr``, ``clear`` send their message after the change) the change
can reach Redis while its message does not. Such a message is not dropped: it
waits here, and the bus's listener thread sends it again as soon as Redis
answers (``InvalidationBus``).

What is kept is small and bounded: per key, the newest stamp to announce, or
"drop whatever the stamp" (``touch``, ``incr``), which is the stronger of the
two and wins; plus the namespaces cleared. Past ``MAX_KEYS`` keys the
individual keys are forgotten and one "drop every copy" message replaces them
(``overflowed``): a bounded queue never loses a change, it only makes the
message coarser. If even that cannot be sent within the bus's bound, the bus
replaces the stream's generation token, which every reader notices as a gap.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Mapping

__all__ = ["MAX_KEYS", "Outbox"]

#: Keys kept before the queue turns into one "drop every copy" message.
MAX_KEYS = 10_000


class Outbox:
    """A bounded, thread-safe queue of undelivered announcements, merged per key."""

    def __init__(self, max_keys: int = MAX_KEYS) -> None:
        self.max_keys = max_keys
        self._lock = threading.Lock()
        self._reset()
        #: Since when (monotonic) something has waited; ``None`` when empty.
        self.since: float | None = None

    def _reset(self) -> None:
        #: key -> newest stamp to announce, or ``None``: drop whatever the stamp.
        self._keys: dict[str, int | None] = {}
        self._clears: set[str] = set()
        self.overflowed = False

    def __bool__(self) -> bool:
        return self.since is not None

    def add(self, fields: Mapping[str, str]) -> None:
        """Keep the message ``fields`` (as ``InvalidationBus`` builds them)."""
        with self._lock:
            self._merge(
                {key: stamp for key, stamp in json.loads(fields.get("w", "[]"))},
                json.loads(fields.get("x", "[]")),
                {fields["c"]} if "c" in fields else set(),
                fields.get("a") is not None,
            )
            if self.since is None:
                self.since = time.monotonic()

    def _merge(
        self,
        writes: Mapping[str, int],
        drops: list[str],
        clears: set[str],
        everything: bool,
    ) -> None:
        if self.overflowed or everything:
            self._reset()
            self.overflowed = True
            return
        keys = self._keys
        for key, stamp in writes.items():
            kept = keys.get(key, 0)
            keys[key] = None if kept is None else max(kept, stamp)
        for key in drops:
            keys[key] = None
        self._clears |= clears
        if len(keys) > self.max_keys:
            self._reset()
            self.overflowed = True

    def take(self) -> tuple[list[dict[str, str]], float | None]:
        """Empty the queue; return its messages (without origin) and ``since``.

        A caller that cannot send them gives them back with ``put_back``.
        """
        with self._lock:
            since = self.since
            if since is None:
                return [], None
            if self.overflowed:
                messages = [{"a": "1"}]
            else:
                messages = [{"c": namespace} for namespace in sorted(self._clears)]
                writes = [[k, s] for k, s in self._keys.items() if s is not None]
                drops = [k for k, s in self._keys.items() if s is None]
                message = {}
                if writes:
                    message["w"] = json.dumps(writes)
                if drops:
                    message["x"] = json.dumps(drops)
                if message:
                    messages.append(message)
            self._reset()
            self.since = None
            return messages, since

    def put_back(self, messages: list[dict[str, str]], since: float) -> None:
        """Return messages that ``take`` handed out and could not be sent."""
        for fields in messages:
            self.add(fields)
        with self._lock:
            self.since = since if self.since is None else min(self.since, since)

    def clear(self) -> None:
        """Forget everything (the readers were made to drop every copy)."""
        with self._lock:
            self._reset()
            self.since = None

    def after_fork(self) -> None:
        # The parent still delivers what it queued; the child starts empty, with
        # a lock no thread of the parent can hold.
        self._lock = threading.Lock()
        self.clear()
