"""The keys that authenticate records in shared tiers, derived from SECRET_KEY.

Redis and a disk folder can be written by someone else (another service on the
same Redis, a user with access to the folder, an attacker who reached either).
What a shared tier returns is unpickled, so a record is trusted only when it
carries a MAC made with a key that only this deployment knows: one derived
from ``SECRET_KEY`` with Django's ``salted_hmac`` (the same construction
Django's own signing uses), under a salt of our own so that no other Django
signature can pass for a record tag.

Deriving costs two HMACs and a settings lookup, far too much for every read,
so the keys are derived once per process and kept until Django reports a
change of ``SECRET_KEY`` or ``SECRET_KEY_FALLBACKS`` (``setting_changed``,
sent by ``override_settings``). ``SECRET_KEY`` comes first: it signs; each
fallback key only verifies, so a deployment can rotate its secret without
turning every cached value into a miss at once.

Per record the tag is a keyed BLAKE2b, a MAC by design. Each key is kept as a
BLAKE2b object that has already absorbed it; a record's tag is a ``copy()`` of
it fed the record, so the key block is not hashed again for every record, and
no keyword arguments are parsed on the read path (``envelope`` has the layout;
an HMAC-SHA256 costs about three times as much for a 100-byte value).
"""

from __future__ import annotations

from hashlib import blake2b
from typing import Any

from django.core.exceptions import ImproperlyConfigured
from django.core.signals import setting_changed
from django.utils.crypto import salted_hmac

__all__ = ["KEYRING", "TAG_SIZE", "keys", "reset"]

#: Bytes of each tag (128 bits: forging one takes 2**128 tries on average).
TAG_SIZE = 16

_SALT = "tiered_cache.envelope.RecordTag"

#: Keyed BLAKE2b objects, nothing fed yet: SECRET_KEY's first, then each
#: fallback's; empty until first used. Never updated themselves: callers
#: ``copy()`` them. Filled and emptied in place, so the read path can hold it
#: as a global and skip a call (``KEYRING or keys()``).
KEYRING: list[Any] = []


def keys() -> list[Any]:
    """Return the keyed BLAKE2b objects, SECRET_KEY's first (derived once)."""
    return KEYRING or _derive()


def reset(**_: Any) -> None:
    """Forget the derived keys (the settings they came from changed)."""
    KEYRING.clear()


def _derive() -> list[Any]:
    from django.conf import settings

    try:
        secret = settings.SECRET_KEY
    except ImproperlyConfigured as exc:
        raise ImproperlyConfigured(
            f"{exc} tiered_cache signs what it stores in Redis and on disk with "
            "a key derived from SECRET_KEY, and every process sharing them "
            "needs the same one."
        ) from exc
    secrets = [secret, *getattr(settings, "SECRET_KEY_FALLBACKS", ())]
    derived = [blake2b(key=_key(secret), digest_size=TAG_SIZE) for secret in secrets]
    KEYRING[:] = derived
    return KEYRING


def _key(secret: str | bytes) -> bytes:
    return salted_hmac(_SALT, "record", secret=secret, algorithm="sha256").digest()


def _on_setting_changed(setting: str = "", **_: Any) -> None:
    if setting in ("SECRET_KEY", "SECRET_KEY_FALLBACKS"):
        reset()


setting_changed.connect(_on_setting_changed, dispatch_uid="tiered_cache.signing")
