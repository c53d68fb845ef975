"""Spatial sampling by key hash: the same keys are sampled in every process.

A key is sampled when ``key_hash(key) < rate * 2**64``. The hash is a
keyed-less BLAKE2b digest of the stored key (Python's ``hash`` differs per
process), so every process, ``warm_cache`` and the simulator agree on which
keys are in the sample and on their hashes (Waldspurger et al., "Efficient
MRC Construction with SHARDS", FAST 2015, section 3).
"""

from __future__ import annotations

import hashlib

__all__ = ["MODULUS", "Sampler", "key_hash"]

#: The hash space.
MODULUS = 2**64


def key_hash(key: str) -> int:
    """Return the stable 64-bit hash of ``key``."""
    digest = hashlib.blake2b(key.encode("utf-8", "surrogatepass"), digest_size=8)
    return int.from_bytes(digest.digest(), "big")


class Sampler:
    """Decide whether a key is in the sample (``rate`` of the hash space)."""

    def __init__(self, rate: float) -> None:
        if not 0 < rate <= 1:
            raise ValueError(f"rate must be in (0, 1], not {rate!r}")
        self.rate = rate
        self.threshold = int(rate * MODULUS)

    def __call__(self, key: str) -> int | None:
        """Return the key's hash when it is sampled, else ``None``."""
        hashed = key_hash(key)
        return hashed if hashed < self.threshold else None
