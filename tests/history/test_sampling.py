"""Spatial sampling: stable across processes, the share of keys asked for."""

from __future__ import annotations

import subprocess
import sys

import pytest

from tiered_cache.history.sampling import Sampler, key_hash


def test_key_hash_is_the_same_in_another_process():
    other = subprocess.run(
        [
            sys.executable,
            "-c",
            "from tiered_cache.history.sampling import key_hash;"
            "print(key_hash('shop:1:product:42'))",
        ],
        capture_output=True,
        text=True,
        check=True,
    )
    assert int(other.stdout) == key_hash("shop:1:product:42")


def test_sampler_keeps_about_its_rate_of_keys_and_always_the_same_ones():
    sampler = Sampler(0.1)
    keys = [f"k{i}" for i in range(20000)]
    first = {key for key in keys if sampler(key) is not None}
    assert 0.09 < len(first) / len(keys) < 0.11
    assert first == {key for key in keys if sampler(key) is not None}


@pytest.mark.parametrize("rate", [0, -0.5, 1.5])
def test_sampler_refuses_a_rate_outside_0_1(rate):
    with pytest.raises(ValueError):
        Sampler(rate)
