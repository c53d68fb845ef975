"""A real redis-server whose credentials break, that loads, or cannot persist.

docs/faults.rst A9 (``ACL SETUSER`` while the cache runs: kind ``auth``) and
A11 (``LOADING`` during ``DEBUG RELOAD``; ``MISCONF`` after a failed
``BGSAVE``): nothing raised, each failure counted under its kind in
``cache.stats()["l2"]["errors_by_kind"]``, the breaker opens for the
unreachable states and stays closed for a server that answers, and L2 comes
back by itself once the server is fixed.
"""

from __future__ import annotations

import threading

import pytest

from tests.flights import l1
from tests.matrix import l3, real_l2
from tests.support.redis_servers import RedisServer, wait_until

pytestmark = pytest.mark.redis_server


@pytest.fixture
def server(tmp_path):
    """A server of this test's own, which may run DEBUG and CONFIG SET dir."""
    args = ("--enable-debug-command", "local", "--enable-protected-configs", "local")
    with RedisServer.start(tmp_path / "redis", extra_args=args) as srv:
        yield srv


def build(make_cache, url, tmp_path, monkeypatch, process=0):
    """L1 + L2 (``url``) + L3, with L2's breaker on a clock moved by hand."""
    # Generous socket timeouts: a loaded machine can miss the default 0.1 s,
    # and these tests count the failures of other kinds.
    l2 = real_l2(url)
    l2["OPTIONS"] = {"SOCKET_TIMEOUT": 2, "SOCKET_CONNECT_TIMEOUT": 2}
    cache = make_cache([l1(process), l2, l3(str(tmp_path / "l3"))], KEY_PREFIX="states")
    wait_until(lambda: cache._chain.bus.settled, timeout=5, what="bus settled")
    now = [1000.0]
    monkeypatch.setattr(cache._chain.by_name["l2"].breaker, "_clock", lambda: now[0])
    return cache, now


def kinds(cache) -> dict[str, int]:
    return cache.stats()["l2"]["errors_by_kind"]


def recovered(cache, now, server) -> None:
    """After OPEN_SECONDS one probe goes through; it succeeds and closes it."""
    now[0] += 5.1
    cache.set("after", "v2")
    assert cache.breaker_state("l2") == "closed"
    admin = server.client(0)
    try:
        assert admin.exists(cache.stored_key("after")) == 1
    finally:
        admin.close()


# -- A9: credentials --------------------------------------------------------------


def test_credentials_broken_while_running_are_kind_auth_and_recover(
    make_cache, server, tmp_path, monkeypatch
):
    admin = server.client(0)
    rules = {"keys": ["*"], "channels": ["*"], "commands": ["+@all"]}
    admin.acl_setuser("app", enabled=True, passwords=["+secret"], **rules)
    url = f"redis://app:secret@127.0.0.1:{server.port}/0"
    cache, now = build(make_cache, url, tmp_path, monkeypatch)
    cache.set("k", "v")
    assert kinds(cache) == {}
    # The password changes; connections already open stay authenticated
    # until they close, so close them: every new one gets WRONGPASS.
    # (redis-py's acl_setuser says "off" unless enabled=True.)
    admin.acl_setuser("app", enabled=True, reset_passwords=True, passwords=["+other"])
    admin.client_kill_filter(user="app")
    for i in range(6):
        cache.set(f"during{i}", i)  # never raised
        assert cache.get(f"during{i}") == i  # L1 (and L3) still serve
    assert kinds(cache)["auth"] == 5  # then the breaker opened: calls skipped
    assert set(kinds(cache)) == {"auth"}
    assert cache.breaker_state("l2") == "open"
    admin.acl_setuser("app", enabled=True, reset_passwords=True, passwords=["+secret"])
    recovered(cache, now, server)
    # A missing permission (NOPERM) is kind auth as well.
    admin.acl_setuser("app", enabled=True, reset_keys=True)
    cache.set("denied", "v")
    assert kinds(cache)["auth"] == 6
    admin.close()


# -- A11: loading and unable to persist -------------------------------------------


def test_loading_is_kind_loading_skipped_then_recovered(
    make_cache, server, tmp_path, monkeypatch
):
    cache, now = build(make_cache, server.url(0), tmp_path, monkeypatch)
    cache.set("k", "v")
    admin = server.client(2)
    pipe = admin.pipeline(transaction=False)
    for i in range(8000):  # in another db: the dataset Redis will load
        pipe.set(f"filler{i}", "x" * 1100)  # > 1 KiB: events after every key
    pipe.execute()
    # Redis' own test knobs: load slowly, and answer (LOADING) while loading.
    admin.config_set("key-load-delay", 1000)  # microseconds per key: ~8 s
    admin.config_set("loading-process-events-interval-bytes", 1024)
    reload = threading.Thread(
        target=lambda: server.client(0, socket_timeout=120).execute_command(
            "DEBUG", "RELOAD"
        )
    )
    reload.start()
    try:
        wait_until(
            lambda: admin.info("persistence")["loading"] == 1,
            timeout=10,
            what="Redis loading",
        )
        for i in range(6):
            cache.set(f"during{i}", i)  # never raised
            assert cache.get(f"during{i}") == i
        assert kinds(cache).get("loading", 0) >= 1
        # A loaded 2-core machine may also see a reply miss the 0.1 s timeout.
        assert set(kinds(cache)) <= {"loading", "timeout"}
        assert sum(kinds(cache).values()) == 5
        assert cache.breaker_state("l2") == "open"
    finally:
        reload.join(120)
        admin.config_set("key-load-delay", 0)
        admin.close()
    recovered(cache, now, server)


def _misconf(server: RedisServer) -> None:
    """Make RDB saves fail (a directory nobody can write) and Redis refuse writes."""
    admin = server.client(0)
    try:
        admin.config_set("dir", "/proc")
        admin.config_set("save", "3600 1")
        admin.config_set("stop-writes-on-bgsave-error", "yes")
        admin.bgsave()
        wait_until(
            lambda: (
                admin.info("persistence")["rdb_bgsave_in_progress"] == 0
                and admin.info("persistence")["rdb_last_bgsave_status"] == "err"
            ),
            timeout=10,
            what="a failed BGSAVE",
        )
    finally:
        admin.close()


def _persisting_again(server: RedisServer) -> None:
    admin = server.client(0)
    try:
        admin.config_set("dir", str(server.dir))
        admin.config_set("save", "")  # no save points: no MISCONF
    finally:
        admin.close()


def test_misconf_refuses_writes_but_keeps_serving_reads(
    make_cache, server, tmp_path, monkeypatch
):
    cache, _ = build(make_cache, server.url(0), tmp_path, monkeypatch)
    cache.set("kept", "v")
    _misconf(server)
    try:
        for i in range(10):
            cache.set(f"k{i}", i)  # refused by Redis: counted, never raised
            assert cache.get(f"k{i}") == i  # L1
        # Counted as a server that answered (the kind: see the next test).
        assert sum(kinds(cache).values()) == 10
        assert set(kinds(cache)) <= {"misconf", "response"}
        assert cache.breaker_state("l2") == "closed"  # Redis answers: reads go on
        cache.tier("l1").delete(cache.stored_key("kept"))
        assert cache.get("kept") == "v"  # served by L2
        assert cache.set_many({"m": 1}) == ["m"]  # the authority did not take it
    finally:
        _persisting_again(server)
    errors = sum(kinds(cache).values())
    cache.set("after", "v2")  # Redis persists again: stored
    assert sum(kinds(cache).values()) == errors
    admin = server.client(0)
    assert admin.exists(cache.stored_key("after")) == 1
    admin.close()


def test_a_write_refused_with_misconf_is_counted_as_misconf(
    make_cache, server, tmp_path, monkeypatch
):
    cache, _ = build(make_cache, server.url(0), tmp_path, monkeypatch)
    _misconf(server)
    try:
        cache.set("k", "v")
        assert kinds(cache) == {"misconf": 1}
    finally:
        _persisting_again(server)


def test_a_delete_refused_with_misconf_reports_false(
    make_cache, server, tmp_path, monkeypatch
):
    """MISCONF refuses DEL too (unlike OOM): the older value stays readable at
    L2, so ``delete`` does not report a deletion (docs/design.rst, "Writes
    Redis refuses")."""
    here, _ = build(make_cache, server.url(0), tmp_path, monkeypatch, process=0)
    there, _ = build(make_cache, server.url(0), tmp_path, monkeypatch, process=1)
    here.set("k", "old")
    assert there.get("k") == "old"
    _misconf(server)
    try:
        assert here.delete("k") is False  # Redis still serves it
        assert kinds(here).get("misconf", 0) >= 1
    finally:
        _persisting_again(server)
    # Journaled: once Redis takes writes again the delete is replayed.
    wait_until(lambda: there.get("k") is None, timeout=10, what="replayed delete")
