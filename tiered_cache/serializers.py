"""How a value becomes a record's payload and back: pickle, JSON, or yours.

``OPTIONS["SERIALIZER"]`` of a TieredCache entry picks one (``load``):

``"pickle"`` (the default)
    Anything picklable, so ``cache_page`` (an ``HttpResponse``) and
    ``{% cache %}`` work. Unpickling runs code: it is safe only because every
    record is authenticated first (``envelope``, ``signing``), so a leaked
    ``SECRET_KEY`` is a leaked key to code execution.
``"json"``
    Data only: ``dict``, ``list``, ``str``, ``int``, ``float``, ``bool``,
    ``None``. A cache configured with it never unpickles anything, whatever
    a shared tier holds and whoever holds the key (issue 7 item 1). What
    ``get`` returns is the JSON round trip of what was set, from every tier
    (a tuple comes back a list, non-string dict keys as strings); a value
    JSON cannot encode raises ``TypeError`` or ``ValueError`` at ``set``, as
    an unpicklable value does with pickle.
a dotted path
    An object, module or class (instantiated without arguments) with
    ``dumps(value) -> bytes`` and ``loads(data: bytes) -> value``.

Each serializer has an id written in the envelope's signed flags
(``ENVELOPE_IDS``), and each says which ids it decodes (``readers``): pickle
decodes pickle and JSON records (JSON is only data, and a deployment moving
from pickle to JSON then does not thrash), JSON only JSON, a custom one only
custom records. Anything else is refused before it is decompressed.

``live_types`` are the exact types the memory tier may keep as live objects
instead of a payload: their instances cannot be mutated by a caller, and the
round trip through the serializer gives back an equal object of the same
type, so an L1 hit returns what an L2 or L3 hit would.
"""

from __future__ import annotations

import datetime
import decimal
import importlib
import json
import pickle
import uuid
from typing import Any

from django.core.exceptions import ImproperlyConfigured
from django.utils.module_loading import import_string
from django.utils.safestring import SafeString

__all__ = [
    "ENVELOPE_IDS",
    "JSON",
    "PICKLE",
    "PICKLE_PROTOCOL",
    "Serializer",
    "SerializerError",
    "load",
]

PICKLE_PROTOCOL = pickle.HIGHEST_PROTOCOL

#: Envelope id of each kind of serializer (bits 2-3 of the envelope flags).
ENVELOPE_IDS = {"pickle": 0, "json": 1, "custom": 2}
#: ``flags >> 2`` indexes a ``readers`` table; ids 3 and up (reserved flag
#: bits set) have no reader in any table, so such a record is refused.
_READER_SLOTS = 64


class Serializer:
    """A serializer as the envelope uses it (built by this module, not users).

    ``name`` is what ``SERIALIZER`` said; ``flag`` its id shifted into the
    envelope flags; ``readers[flags >> 2]`` the serializer that decodes a
    record with those flags for a cache using this one (``None``: refused).
    """

    __slots__ = ("name", "flag", "dumps", "loads", "live_types", "readers")

    def __init__(
        self,
        name: str,
        kind: str,
        dumps: Any,
        loads: Any,
        live_types: frozenset[type],
    ) -> None:
        self.name = name
        self.flag = ENVELOPE_IDS[kind] << 2
        self.dumps = dumps
        self.loads = loads
        self.live_types = live_types
        self.readers: tuple[Serializer | None, ...] = _readers(self)

    def __repr__(self) -> str:
        return f"<Serializer {self.name}>"


def _readers(serializer: Serializer, *others: Serializer) -> tuple:
    table: list[Serializer | None] = [None] * _READER_SLOTS
    for reader in (serializer, *others):
        table[reader.flag >> 2] = reader
    return tuple(table)


def _pickle_dumps(value: Any) -> bytes:
    """Pickle ``value``; what cannot be pickled raises ``PicklingError``/``TypeError``.

    Python < 3.14 raises ``AttributeError`` for local functions and classes
    ("Can't pickle local object"), which reads like a bug in the caller's
    value rather than "this cannot be cached".
    """
    try:
        return pickle.dumps(value, PICKLE_PROTOCOL)
    except AttributeError as exc:
        raise pickle.PicklingError(f"cannot cache this value: {exc}") from exc


# ensure_ascii=False + surrogatepass: non-ASCII text costs its UTF-8 bytes,
# not a 6-byte escape per character, and a lone surrogate still round-trips.
_json_encoder = json.JSONEncoder(ensure_ascii=False, separators=(",", ":"))
_json_decode = json.JSONDecoder().decode


def _json_dumps(value: Any) -> bytes:
    """Encode ``value`` as JSON; ``TypeError`` names what JSON cannot hold."""
    try:
        text = _json_encoder.encode(value)
    except TypeError as exc:
        raise TypeError(
            f"{exc}: a cache with SERIALIZER 'json' stores JSON data only (dict "
            "with str keys, list, str, int, float, bool, None). HttpResponse "
            "(cache_page), bytes, tuples' exact type, dates and model "
            "instances need SERIALIZER 'pickle'"
        ) from exc
    return text.encode("utf-8", "surrogatepass")


def _json_loads(data: bytes) -> Any:
    return _json_decode(data.decode("utf-8", "surrogatepass"))


#: Immutable types whose pickle round trip is an equal object of the same
#: type. SafeString (slots, no __dict__) is what {% cache %} stores.
_PICKLE_LIVE = frozenset(
    {
        str,
        SafeString,
        bytes,
        int,
        float,
        bool,
        complex,
        type(None),
        decimal.Decimal,
        datetime.datetime,
        datetime.date,
        datetime.time,
        datetime.timedelta,
        uuid.UUID,
    }
)
#: JSON gives back exactly these (a str subclass comes back a plain str).
_JSON_LIVE = frozenset({str, int, float, bool, type(None)})
#: A custom serializer's round trip is unknown: only ints, which shared tiers
#: keep raw whatever the serializer (``envelope.is_raw_int``), stay live.
_CUSTOM_LIVE = frozenset({int})

JSON = Serializer("json", "json", _json_dumps, _json_loads, _JSON_LIVE)
PICKLE = Serializer("pickle", "pickle", _pickle_dumps, pickle.loads, _PICKLE_LIVE)
PICKLE.readers = _readers(PICKLE, JSON)

_BUILTIN = {"pickle": PICKLE, "json": JSON}


def load(name: Any) -> Serializer:
    """Return the serializer ``SERIALIZER`` names; ``ImproperlyConfigured`` if none.

    The error carries a ``hint`` for ``manage.py check``.
    """
    if name is None:
        return PICKLE
    found = _BUILTIN.get(name) if isinstance(name, str) else None
    if found is not None:
        return found
    if not isinstance(name, str) or "." not in name:
        raise _bad(name, "is neither 'pickle', 'json' nor a dotted path")
    try:
        obj = _import(name)
    except Exception as exc:  # ImportError, or what the module raised
        raise _bad(name, f"does not import ({exc})") from exc
    if isinstance(obj, type):
        try:
            obj = obj()
        except Exception as exc:
            raise _bad(
                name, f"is a class that cannot be built without arguments ({exc!r})"
            ) from exc
    dumps, loads = getattr(obj, "dumps", None), getattr(obj, "loads", None)
    if not callable(dumps) or not callable(loads):
        raise _bad(name, "has no callable dumps(value) and loads(data)")
    return Serializer(name, "custom", _checked(name, dumps), loads, _CUSTOM_LIVE)


def _import(name: str) -> Any:
    """Return the object at dotted path ``name``, or the module called ``name``."""
    try:
        return import_string(name)
    except ImportError:
        try:
            return importlib.import_module(name)
        except ImportError:
            pass
        raise


def _checked(name: str, dumps: Any) -> Any:
    """Wrap a custom ``dumps``: what it returns must be bytes."""

    def checked_dumps(value: Any) -> bytes:
        data = dumps(value)
        if type(data) is bytes:
            return data
        if isinstance(data, (bytes, bytearray, memoryview)):
            return bytes(data)
        raise TypeError(
            f"SERIALIZER {name!r}: dumps() returned a {type(data).__name__}, not bytes"
        )

    return checked_dumps


class SerializerError(ImproperlyConfigured):
    """A ``SERIALIZER`` that cannot be used, with the hint the check shows."""

    hint = (
        "Use 'pickle' (the default: anything picklable, cache_page included), "
        "'json' (data only; never unpickles) or the dotted path of an object "
        "with dumps(value) -> bytes and loads(data) -> value."
    )


def _bad(name: Any, problem: str) -> SerializerError:
    return SerializerError(f"SERIALIZER {name!r} {problem}.")
