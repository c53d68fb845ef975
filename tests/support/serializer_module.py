"""A module used as SERIALIZER by dotted path: ``marshal`` under our own name."""

from __future__ import annotations

import marshal
from typing import Any


def dumps(value: Any) -> bytes:
    return marshal.dumps(value)


def loads(data: bytes) -> Any:
    return marshal.loads(data)
