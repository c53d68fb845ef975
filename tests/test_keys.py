from __future__ import annotations

import warnings

import pytest
from django.core.cache.backends.base import CacheKeyWarning, default_key_func

from tiered_cache.keys import clear_namespace, validate_key


def test_validate_key_is_silent_for_good_keys():
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        validate_key(":1:good-key")


@pytest.mark.parametrize("key", ["a b", "\x7f", "x" * 251])
def test_validate_key_warns(key):
    with pytest.warns(CacheKeyWarning):
        validate_key(key)


def test_namespace_of_default_key_func():
    assert clear_namespace(default_key_func, "shop", 1) == "shop:"
    assert clear_namespace(default_key_func, "", 7) == ":"


def test_namespace_of_custom_key_funcs():
    def custom(key, prefix, version):
        return "CUSTOM-" + "-".join([prefix, str(version), key])

    def key_first(key, prefix, version):
        return f"{key}:{prefix}"

    def arithmetic(key, prefix, version):
        return f"{prefix}|{version + 1}|{key}"

    assert clear_namespace(custom, "p", 1) == "CUSTOM-p-"
    assert clear_namespace(key_first, "p", 1) == ""
    assert clear_namespace(arithmetic, "p", 1) == "p|2|"


def test_storable_key_keeps_ordinary_keys():
    from tiered_cache.keys import storable_key

    assert storable_key("p:1:café", "p:") == "p:1:café"
    assert storable_key("p:1:" + "k" * 1000, "p:") == "p:1:" + "k" * 1000


def test_storable_key_digests_long_and_unencodable_keys():
    from tiered_cache.keys import MAX_STORED_KEY_LENGTH, storable_key

    long_key = "p:1:" + "k" * MAX_STORED_KEY_LENGTH
    odd_key = "p:1:\ud800"
    for key in (long_key, odd_key):
        stored = storable_key(key, "p:")
        assert stored.startswith("p:#sha256:")
        assert len(stored) == len("p:#sha256:") + 64
        assert stored == storable_key(key, "p:")  # deterministic
    assert storable_key(long_key, "p:") != storable_key(long_key + "x", "p:")
