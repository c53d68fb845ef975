"""Announcements that could not be sent are sent later, or replaced by a gap.

The writer ``a`` connects as a Redis user whose ``XADD`` can be refused and
allowed again (ACL): its changes reach Redis while their messages cannot, as
when the stream's shard is down on Cluster or a connection dies between a
delete and its message. ``b`` stands for another process.
"""

from __future__ import annotations

import json

import pytest
import redis

from tests.matrix import L1, real_l2
from tests.support.redis_servers import RedisServer, wait_until
from tiered_cache.outbox import Outbox

pytestmark = pytest.mark.redis_server


# -- the queue itself ---------------------------------------------------------------


def writes(*pairs) -> dict[str, str]:
    return {"o": "me", "w": json.dumps([list(p) for p in pairs])}


def test_the_newest_stamp_per_key_is_kept_and_a_drop_wins():
    box = Outbox()
    box.add(writes(("a", 5), ("b", 1)))
    box.add(writes(("a", 3)))
    box.add({"o": "me", "x": json.dumps(["b"])})
    box.add(writes(("b", 9)))
    box.add({"o": "me", "c": "ns:"})
    messages, since = box.take()
    assert since is not None and not box
    assert messages == [
        {"c": "ns:"},
        {"w": json.dumps([["a", 5]]), "x": json.dumps(["b"])},
    ]


def test_an_overflow_becomes_one_drop_everything_message():
    box = Outbox(max_keys=2)
    box.add(writes(("a", 1), ("b", 1)))
    assert not box.overflowed
    box.add(writes(("c", 1)))
    assert box.overflowed
    box.add(writes(("d", 1)))  # covered by the message to come
    assert box.take()[0] == [{"a": "1"}]


def test_messages_put_back_keep_their_age():
    box = Outbox()
    box.add(writes(("a", 1)))
    messages, since = box.take()
    box.add(writes(("b", 2)))
    box.put_back(messages, since)
    again, since_again = box.take()
    assert since_again == since
    assert again == [{"w": json.dumps([["b", 2], ["a", 1]])}]


def test_a_forked_child_starts_empty():
    box = Outbox()
    box.add(writes(("a", 1)))
    box.after_fork()
    assert not box and box.take() == ([], None)


# -- through the bus, on a real server ----------------------------------------------


@pytest.fixture
def server(tmp_path):
    with RedisServer.start(tmp_path / "redis") as server:
        yield server


def allow_xadd(clients: list[redis.Redis], allowed: bool) -> None:
    for client in clients:
        client.execute_command(
            "ACL", "SETUSER", "writer", "on", ">pw", "~*", "&*", "+@all",
            "+xadd" if allowed else "-xadd",
        )  # fmt: skip


def writer_and_reader(make_cache, server, **writer_options):
    allow_xadd([server.client(0)], True)
    host, port = server.addr
    a = make_cache(
        [L1, real_l2(f"redis://writer:pw@{host}:{port}/1")],
        KEY_PREFIX="ob",
        **writer_options,
    )
    b = make_cache([L1, real_l2(server.url(1))], KEY_PREFIX="ob")
    assert a._chain.bus and b._chain.bus
    return a, b


def in_l1(cache, key) -> bool:
    return cache.tier("l1").has_key(cache.stored_key(key))


def test_a_message_that_cannot_be_sent_is_sent_when_redis_takes_it(make_cache, server):
    a, b = writer_and_reader(make_cache, server, INVALIDATION={"HEARTBEAT": 30})
    a.set("k", "v")
    assert b.get("k") == "v" and in_l1(b, "k")
    allow_xadd([server.client(0)], False)
    assert a.delete("k") is True  # the delete reaches Redis, its message does not
    bus = a._chain.bus
    assert bus.stats.announce_errors == 1 and bus.outbox
    assert b.get("k") == "v"  # B's copy stays: nothing told it yet
    allow_xadd([server.client(0)], True)
    wait_until(lambda: not in_l1(b, "k"), timeout=3, what="B's copy dropped")
    assert b.get("k") is None
    assert bus.stats.resent == 1 and not bus.outbox
    assert b._chain.bus.stats.gaps == 0  # the message itself, not a guess


def test_messages_not_sent_within_a_heartbeat_make_every_reader_drop(
    make_cache, server
):
    a, b = writer_and_reader(make_cache, server, INVALIDATION={"HEARTBEAT": 0.3})
    a.set_many({"k": "v", "other": "w"})
    assert b.get_many(["k", "other"]) == {"k": "v", "other": "w"}
    gaps = b._chain.bus.stats.gaps
    allow_xadd([server.client(0)], False)
    a.delete("k")
    bus = a._chain.bus
    wait_until(
        lambda: bus.stats.generation_bumps == 1, timeout=5, what="a new generation"
    )
    assert not bus.outbox
    wait_until(
        lambda: b._chain.bus.stats.gaps > gaps, timeout=5, what="B noticed the gap"
    )
    assert not in_l1(b, "k") and not in_l1(b, "other")
    assert b.get("k") is None


def test_an_overflowing_outbox_makes_every_reader_drop(make_cache, server):
    a, b = writer_and_reader(make_cache, server, INVALIDATION={"HEARTBEAT": 30})
    keys = [f"k{i}" for i in range(5)]
    a.set_many(dict.fromkeys([*keys, "other"], "v"))
    assert len(b.get_many([*keys, "other"])) == 6
    a._chain.bus.outbox.max_keys = 3
    allow_xadd([server.client(0)], False)
    a.delete_many(keys)  # five keys: more than the outbox keeps
    assert a._chain.bus.stats.announce_errors == 1
    allow_xadd([server.client(0)], True)
    wait_until(lambda: not in_l1(b, "other"), timeout=3, what="B dropped everything")
    assert b._chain.bus.stats.gaps == 1
    assert b.get_many([*keys, "other"]) == {"other": "v"}


def test_on_cluster_a_lost_message_is_sent_after_recovery(make_cache, redis_cluster):
    """On Cluster a set and its message go to two shards: the message waits."""
    nodes = [redis.Redis(port=port) for port in redis_cluster.ports]
    allow_xadd(nodes, True)
    spec = {
        "NAME": "l2",
        "BACKEND": "tiered_cache.tiers.RedisClusterTier",
        "LOCATION": redis_cluster.startup_urls,
    }
    writer = {**spec, "OPTIONS": {"USERNAME": "writer", "PASSWORD": "pw"}}
    a = make_cache([L1, writer], KEY_PREFIX="obc", INVALIDATION={"HEARTBEAT": 30})
    b = make_cache([L1, spec], KEY_PREFIX="obc")
    try:
        a.set("k", "v1")
        assert b.get("k") == "v1" and in_l1(b, "k")
        allow_xadd(nodes, False)
        a.set("k", "v2")  # stored on the key's shard; the message is refused
        assert a._chain.bus.outbox and b.get("k") == "v1"
        allow_xadd(nodes, True)
        wait_until(lambda: not in_l1(b, "k"), timeout=3, what="B's copy dropped")
        assert b.get("k") == "v2"
        assert a._chain.bus.stats.generation_bumps == 0
    finally:
        for node in nodes:
            node.execute_command("ACL", "DELUSER", "writer")
