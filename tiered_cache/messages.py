"""The invalidation bus's messages, parsed and checked before any is applied.

Anyone who can write to the stream can append anything to it: an old or new
version of this library, a tool, a mistake, an attacker. A message is only
*applied* (``tiered_cache.coherence``) once it parsed into the shapes below;
anything else is ``MalformedMessage``, which the listener skips (it moves past
it, so it never reads it again) and treats as a gap: it cannot know what the
message said changed, so it drops every copy (docs/faults.rst #25).

The shapes: ``{"o": origin, "w": [[key, stamp], ...]}`` for writes and
deletes (a copy older than the stamp goes); ``{"o", "x": [key, ...]}`` drops
copies whatever their stamp (``touch`` and ``incr`` change a value without a
new write stamp); ``{"o", "c": namespace}`` is ``clear()``; ``{"o", "a": "1"}``
drops every copy (an outbox that overflowed). The outbox may resend several
kinds in one message.

Stamps are checked here too: a stamp is an ``int`` in the envelope's unsigned
64-bit range (``envelope.STAMP_MAX``). JSON also gives floats (``1e30``) and
``Infinity``; either, fed into the process's clock, would make every later
envelope fail to pack. How far ahead a valid stamp may move the clock is
``envelope.observe_stamp``'s business.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from .envelope import STAMP_MAX

__all__ = ["MalformedMessage", "Message", "parse"]


class MalformedMessage(ValueError):
    """A bus message that does not parse into a known shape."""


@dataclass(frozen=True)
class Message:
    """What one bus message says (the shapes are in the module docstring)."""

    #: ``w``: copies older than the stamp go.
    writes: list[tuple[str, int]] = field(default_factory=list)
    #: ``x``: copies go whatever their stamp.
    drops: list[str] = field(default_factory=list)
    #: ``c``: a namespace's copies go (``clear()``).
    clear: str | None = None
    #: ``a``: every copy goes (a writer's outbox overflowed).
    drop_all: bool = False


def parse(fields: Mapping[str, str]) -> Message:
    """Return the ``Message`` in ``fields``; raise ``MalformedMessage`` if none.

    A message may carry several kinds at once (the outbox resends them so).
    """
    writes: list[tuple[str, int]] = []
    drops: list[str] = []
    if "w" in fields:
        for item in _list(fields["w"], "w"):
            if not (isinstance(item, list) and len(item) == 2):
                raise MalformedMessage(f"'w' holds {_short(item)}, not [key, stamp]")
            key, stamp = item
            writes.append((_key(key, "w"), _stamp(stamp)))
    if "x" in fields:
        drops = [_key(key, "x") for key in _list(fields["x"], "x")]
    clear = fields.get("c")
    if clear is not None and not isinstance(clear, str):
        raise MalformedMessage("'c' is not a namespace")
    return Message(writes, drops, clear, "a" in fields)


def _list(text: Any, name: str) -> list:
    try:
        value = json.loads(text)
    except (TypeError, ValueError) as exc:  # ValueError: JSON, or an int too long
        raise MalformedMessage(f"{name!r} is not JSON ({exc})") from exc
    if not isinstance(value, list):
        raise MalformedMessage(f"{name!r} holds {_short(value)}, not a list")
    return value


def _key(key: Any, name: str) -> str:
    if not isinstance(key, str):
        raise MalformedMessage(f"{name!r} names a key {_short(key)}, not a string")
    return key


def _stamp(stamp: Any) -> int:
    # bool is an int to Python, not a stamp; floats (1e30, Infinity) are not either.
    if type(stamp) is not int or not 0 <= stamp <= STAMP_MAX:
        raise MalformedMessage(f"stamp {_short(stamp)} is not an unsigned 64-bit int")
    return stamp


def _short(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 40 else text[:37] + "..."
