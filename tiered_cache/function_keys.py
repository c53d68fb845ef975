"""Cache keys for the arguments of a ``cached`` function, the same in every process.

``hash()`` of a string changes with every process (hash randomisation), and
``repr`` of most objects carries an address, so neither can name a value that
other processes must find. Arguments are encoded canonically instead (type
tags, lengths, sorted dicts and sets, model instances by label and primary
key) and digested; anything else is refused with a hint to pass ``key=``.
"""

from __future__ import annotations

import datetime
import decimal
import enum
import hashlib
import uuid
from typing import Any

__all__ = ["MAX_NAME_LENGTH", "bounded_name", "default_key"]

#: Longest ``<module>.<qualname>`` kept whole in a default key.
MAX_NAME_LENGTH = 120


def default_key(name: str, args: tuple, kwargs: dict) -> str:
    """Return ``cached:<name>:<digest of the arguments>`` (see the module doc)."""
    parts: list[str] = []
    _encode(args, parts)
    _encode(kwargs, parts)
    digest = hashlib.sha256("\x1f".join(parts).encode("utf-8", "surrogatepass"))
    return f"cached:{name}:{digest.hexdigest()[:32]}"


def bounded_name(name: str) -> str:
    if len(name) <= MAX_NAME_LENGTH:
        return name
    digest = hashlib.sha256(name.encode("utf-8", "surrogatepass")).hexdigest()[:16]
    return f"{name[: MAX_NAME_LENGTH - 17]}~{digest}"


_SCALARS = (
    decimal.Decimal,
    uuid.UUID,
    datetime.datetime,
    datetime.date,
    datetime.time,
    datetime.timedelta,
    complex,
)


def _encode(obj: Any, out: list[str]) -> None:
    """Append a canonical, process-independent form of ``obj`` to ``out``."""
    if obj is None or obj is True or obj is False:
        out.append(repr(obj))
    elif isinstance(obj, enum.Enum):
        cls = type(obj)
        out.append(f"E{cls.__module__}.{cls.__qualname__}.{obj.name}")
    elif isinstance(obj, int):
        out.append(f"i{int(obj)}")
    elif isinstance(obj, float):
        out.append(f"f{float(obj).hex()}")
    elif isinstance(obj, str):
        out.append(f"s{len(obj)}:{obj}")
    elif isinstance(obj, (bytes, bytearray, memoryview)):
        data = bytes(obj)
        out.append(f"b{len(data)}:{data.hex()}")
    elif isinstance(obj, (tuple, list)):
        out.append("(" if isinstance(obj, tuple) else "[")
        for item in obj:
            _encode(item, out)
        out.append(")")
    elif isinstance(obj, dict):
        items = sorted((_encoded(k), _encoded(v)) for k, v in obj.items())
        out.append("{" + "".join(f"{k}={v};" for k, v in items) + "}")
    elif isinstance(obj, (set, frozenset)):
        out.append("<" + ";".join(sorted(_encoded(item) for item in obj)) + ">")
    elif isinstance(obj, _SCALARS):
        out.append(f"o{type(obj).__name__}:{obj}")
    else:
        out.append(_model_or_refuse(obj))


def _encoded(obj: Any) -> str:
    parts: list[str] = []
    _encode(obj, parts)
    return "\x1e".join(parts)


def _model_or_refuse(obj: Any) -> str:
    from django.db.models import Model

    if isinstance(obj, Model) and obj.pk is not None:
        return f"M{obj._meta.label_lower}:{_encoded(obj.pk)}"
    raise TypeError(
        f"cached(): cannot build a cache key from a {type(obj).__qualname__} "
        "argument the same way in every process; pass key=... to the decorator"
    )
