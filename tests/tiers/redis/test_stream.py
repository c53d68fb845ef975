"""The bus's stream on Redis: a write and its announcement in one transaction."""

from __future__ import annotations

import pytest
import redis

from tests.tiers.redis.common import make_tier, rec
from tiered_cache.exceptions import TierUnavailable
from tiered_cache.sentinels import MISSING
from tiered_cache.tiers.redis import RedisClusterTier

pytestmark = pytest.mark.redis_server

MESSAGE = {"o": "origin", "w": '[["a", 1]]'}


def writer_url(server, *, xadd: bool) -> str:
    """The URL of a user that may (or may not) run XADD, every other command allowed."""
    server.client(0).execute_command(
        "ACL", "SETUSER", "writer", "on", ">pw", "~*", "&*", "+@all",
        "+xadd" if xadd else "-xadd",
    )  # fmt: skip
    host, port = server.addr
    return f"redis://writer:pw@{host}:{port}/1"


def calls(server, command: str) -> int:
    stats = server.client(0).info("commandstats").get(f"cmdstat_{command}", {})
    return stats.get("calls", 0)


def script_calls(server) -> int:
    return calls(server, "eval") + calls(server, "evalsha")


def test_the_writes_and_the_message_are_one_transaction(own_server, clock):
    tier = make_tier(own_server.url(1), clock)
    stream = tier.stream("bus")
    assert stream.joins_writes
    tier.set_many_announced({"warm": rec(0)}, stream, MESSAGE)  # loads the script
    execs, scripts = calls(own_server, "exec"), script_calls(own_server)
    assert tier.set_many_announced({"a": rec(1), "b": rec(2)}, stream, MESSAGE)
    assert script_calls(own_server) == scripts + 1  # one script for all three
    assert calls(own_server, "exec") == execs
    assert tier.get("a").value == 1 and tier.get("b").value == 2
    (_, fields) = own_server.client(1).xrange(stream.key)[-1]
    assert fields == MESSAGE  # the test client decodes replies


def test_a_refused_message_aborts_the_writes(own_server, clock):
    """Neither without the other: an XADD refused stores nothing."""
    tier = make_tier(writer_url(own_server, xadd=False), clock)
    stream = tier.stream("bus")
    with pytest.raises(TierUnavailable):
        tier.set_many_announced({"a": rec(1)}, stream, MESSAGE)
    assert tier.get("a") is MISSING
    assert own_server.client(1).exists(stream.key) == 0


def test_a_message_refused_while_executing_is_reported(own_server, clock):
    """Redis does not roll back: the writes stay, the caller resends the message."""
    tier = make_tier(own_server.url(1), clock)
    stream = tier.stream("bus")
    own_server.client(1).set(stream.key, "not a stream")
    assert tier.set_many_announced({"a": rec(1)}, stream, MESSAGE) is False
    assert tier.get("a").value == 1


def test_the_generation_can_be_replaced(own_server, clock):
    stream = make_tier(own_server.url(1), clock).stream("bus")
    before = stream.state().generation
    stream.new_generation()
    assert stream.state().generation != before


def test_on_cluster_the_stream_does_not_join_writes(clock):
    # The stream's slot is not the keys': no transaction can span both.
    tier = RedisClusterTier("redis://127.0.0.1:1", {}, name="l2", clock=clock)
    assert tier.stream("bus").joins_writes is False


def test_a_dead_connection_is_an_unavailable_tier(own_server, clock):
    tier = make_tier(own_server.url(1), clock)
    stream = tier.stream("bus")
    own_server.kill()
    with pytest.raises(TierUnavailable) as caught:
        tier.set_many_announced({"a": rec(1)}, stream, MESSAGE)
    assert isinstance(caught.value.__cause__, redis.ConnectionError)


def test_a_failing_bus_call_lets_the_tier_recover(clock):
    """On Cluster, recovery re-reads the slot map after a failover."""
    from tests.support.redis_servers import find_free_port

    tier = make_tier(f"redis://127.0.0.1:{find_free_port()}/0", clock)  # refused
    seen: list[BaseException] = []
    tier._recover = lambda exc: seen.append(exc) or False
    stream = tier.stream("bus")
    for call in (
        lambda: stream.append({"k": "1"}),
        lambda: stream.read("0-0", 0.01, 10),
        stream.state,
        stream.new_generation,
    ):
        with pytest.raises(TierUnavailable):
            call()
    assert len(seen) == 4 and all(isinstance(e, redis.ConnectionError) for e in seen)


@pytest.mark.parametrize("empty", ["xtrim", "del"])
def test_an_emptied_stream_tells_a_lagging_reader_it_lost_messages(
    own_server, clock, empty
):
    stream = make_tier(own_server.url(1), clock).stream("bus")
    read = stream.append(MESSAGE)  # the reader's last id
    missed = stream.append(MESSAGE)  # appended while it lags
    assert not stream.state().lost_after(read)
    if empty == "xtrim":
        own_server.client(1).xtrim(stream.key, maxlen=0, approximate=False)
    else:
        own_server.client(1).delete(stream.key)
    state = stream.state()
    assert state.first_id == "0-0"  # no entry left, generation unchanged
    assert state.lost_after(read)
    # One that had read everything missed nothing, unless the stream was
    # deleted (a stream made again would hand out ids behind its own).
    assert state.lost_after(missed) is (empty == "del")
    assert state.lost_after("0-0") is (empty == "xtrim")


def test_a_reader_that_read_nothing_lost_what_was_trimmed(own_server, clock):
    stream = make_tier(own_server.url(1), clock).stream("bus")
    for _ in range(3):
        stream.append(MESSAGE)
    assert not stream.state().lost_after("0-0")  # every entry added is held
    own_server.client(1).xtrim(stream.key, maxlen=1, approximate=False)
    assert stream.state().lost_after("0-0")


def test_bytes_that_are_not_utf8_are_read_not_refused(own_server, clock):
    stream = make_tier(own_server.url(1), clock).stream("bus")
    own_server.client(1).xadd(stream.key, {"o": b"\xff", "w": b"\xfe\xff"})
    ((_, fields),), _ = stream.read("0-0", 0.01, 10)
    assert fields["w"] == "\ufffd\ufffd"  # for the bus to skip as malformed


def test_a_read_says_whether_the_stream_still_held_its_start(own_server, clock):
    # A generous timeout: this is about what a read reports, not about time.
    stream = make_tier(own_server.url(1), clock, SOCKET_TIMEOUT=2).stream("bus")
    read = stream.append(MESSAGE)
    assert stream.read(read, 0.01, 10) == ([], True)
    assert stream.read("0-0", 0.01, 10)[1] is True
    own_server.client(1).xtrim(stream.key, maxlen=0, approximate=False)
    after = stream.append(MESSAGE)  # the first entry after a hole
    assert stream.read(read, 0.01, 10) == ([(after, MESSAGE)], False)
