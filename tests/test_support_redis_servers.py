"""Self-tests for ``tests.support.redis_servers``: the harness must be trusted.

If these fail, every Redis-backed test is suspect, so they check the things
the harness promises: real servers answer, failover really happens within a
bounded time, and no process outlives ``stop()`` even when start fails.
"""

from __future__ import annotations

import socket
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis
from redis.cluster import ClusterNode
from redis.cluster import RedisCluster as ClusterClient
from redis.sentinel import Sentinel

from tests.support import redis_servers as rs
from tests.support.redis_servers import (
    LOOPBACK,
    RedisCluster,
    RedisServer,
    RedisServerError,
    SentinelGroup,
    pid_alive,
    wait_until,
)

pytestmark = pytest.mark.redis_server


def assert_all_gone(pids: list[int]) -> None:
    assert pids, "expected some PIDs to check"
    alive = [pid for pid in pids if pid_alive(pid)]
    assert not alive, f"processes still alive after stop(): {alive}"


# -- standalone -------------------------------------------------------------
def test_session_server_set_get(
    redis_server: RedisServer, redis_url: str, clean_redis: redis.Redis
) -> None:
    assert redis_server.port != 6379
    assert redis_url == f"redis://127.0.0.1:{redis_server.port}/0"
    # Not dbsize() == 0: caches of earlier tests over this server keep their
    # listeners and metrics flushers, which may write their own keys at once.
    assert clean_redis.get("k") is None
    client = redis.Redis.from_url(redis_url, socket_timeout=1, decode_responses=True)
    client.set("k", "v")
    assert clean_redis.get("k") == "v"
    client.close()


def test_clean_redis_flushed_previous_test(clean_redis: redis.Redis) -> None:
    assert clean_redis.get("k") is None


def test_server_lifecycle(tmp_path: Path) -> None:
    server = RedisServer.start(tmp_path)
    pids = [server.pid]
    with server:
        port = server.port
        assert server.url(3) == f"redis://127.0.0.1:{port}/3"
        assert server.client().ping()

        server.pause()
        hung = server.client(socket_timeout=0.2)
        with pytest.raises(redis.TimeoutError):
            hung.ping()
        hung.close()
        server.resume()
        assert server.client().ping()

        server.restart()
        assert server.port == port
        assert server.pid not in pids
        pids.append(server.pid)
        assert server.client().ping()

        server.kill()
        assert not pid_alive(pids[-1])
        server.ensure_running()
        pids.append(server.pid)
        assert server.client().set("x", "1")
    assert_all_gone([p for p in pids if p is not None])


def test_retries_when_picked_port_is_taken(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, redis_server: RedisServer
) -> None:
    """Lose the port race twice: to a plain socket, then to another redis."""
    with socket.socket() as squatter:
        squatter.bind((LOOPBACK, 0))
        squatter.listen()
        taken = squatter.getsockname()[1]
        real = rs.find_free_port
        ports = iter([taken, redis_server.port])
        monkeypatch.setattr(rs, "find_free_port", lambda: next(ports, None) or real())
        with RedisServer.start(tmp_path) as server:
            assert server.port not in (taken, redis_server.port)
            assert server.client().ping()
        assert redis_server.client().ping()

        with pytest.raises(RedisServerError, match="Address already in use"):
            RedisServer.start(tmp_path / "explicit", port=taken)


def test_refuses_shared_port_and_missing_binary(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    with pytest.raises(RedisServerError, match="refusing"):
        RedisServer.start(tmp_path, port=6379)
    monkeypatch.setenv("PATH", str(tmp_path / "empty"))
    with pytest.raises(RedisServerError, match="not found on PATH"):
        RedisServer.start(tmp_path)


# -- cluster ----------------------------------------------------------------
def test_cluster_set_get_across_slots(redis_cluster: RedisCluster) -> None:
    assert len(redis_cluster.ports) == 3
    assert redis_cluster.startup_urls == [
        f"redis://127.0.0.1:{p}" for p in redis_cluster.ports
    ]
    client = ClusterClient(
        startup_nodes=[ClusterNode(LOOPBACK, p) for p in redis_cluster.ports],
        socket_timeout=1,
        decode_responses=True,
    )
    try:
        keys = [f"support-selftest:{i}" for i in range(30)]
        for key in keys:
            client.set(key, key.upper())
        assert [client.get(k) for k in keys] == [k.upper() for k in keys]
        owners = {client.get_node_from_key(k).port for k in keys}
        assert owners == set(redis_cluster.ports), "keys should span every master"
        client.delete(*keys)
    finally:
        client.close()


def test_cluster_with_replicas_and_full_teardown(tmp_path: Path) -> None:
    cluster = RedisCluster.start(tmp_path, masters=3, replicas=1)
    try:
        roles = sorted(n.client().info("replication")["role"] for n in cluster.nodes)
        assert roles == ["master"] * 3 + ["slave"] * 3
    finally:
        pids = cluster.pids
        cluster.stop()
    assert len(pids) == 6
    assert_all_gone(pids)


def test_failed_start_kills_everything(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """redis-cli missing: nodes already running must be killed, not leaked."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    (bin_dir / "redis-server").symlink_to(rs._which("redis-server"))
    monkeypatch.setenv("PATH", str(bin_dir))
    started: list[RedisServer] = []
    real_start = RedisServer.start.__func__  # type: ignore[attr-defined]

    def spy(cls: type[RedisServer], *args: object, **kwargs: object) -> RedisServer:
        server = real_start(cls, *args, **kwargs)
        started.append(server)
        return server

    monkeypatch.setattr(RedisServer, "start", classmethod(spy))
    with pytest.raises(RedisServerError, match="redis-cli"):
        RedisCluster.start(tmp_path / "cluster")
    assert len(started) == 3
    assert_all_gone([s.pid for s in started if s.pid is not None])


# -- sentinel ---------------------------------------------------------------
def _sentinel_client(group: SentinelGroup) -> Sentinel:
    return Sentinel(
        group.sentinels,
        socket_timeout=1.0,
        socket_connect_timeout=1.0,
        decode_responses=True,
    )


def test_sentinel_fixture_set_get(redis_sentinel: SentinelGroup) -> None:
    assert redis_sentinel.service_name == "mymaster"
    assert len(redis_sentinel.sentinels) == 3
    assert redis_sentinel.master is not None
    assert redis_sentinel.current_master_addr() == redis_sentinel.master.addr
    master = _sentinel_client(redis_sentinel).master_for("mymaster")
    master.set("support-selftest", "ok")
    assert master.get("support-selftest") == "ok"
    master.delete("support-selftest")


@pytest.fixture
def own_sentinel(tmp_path: Path) -> Iterator[SentinelGroup]:
    """A private group: the failover test destroys its master."""
    group = SentinelGroup.start(tmp_path)
    try:
        yield group
    finally:
        group.stop()


def test_sentinel_failover_after_master_crash(own_sentinel: SentinelGroup) -> None:
    group = own_sentinel
    assert group.master is not None and group.replica is not None
    master = _sentinel_client(group).master_for("mymaster")
    master.set("before", "1")
    # Make sure the replica has the key before the crash (replication is async).
    assert master.execute_command("WAIT", 1, 2000) == 1

    old_master_pid = group.master.pid
    group.master.kill()
    wait_until(
        lambda: group.current_master_addr() == group.replica.addr,  # type: ignore[union-attr]
        timeout=15,
        what="sentinels to promote the replica",
        watch=group.sentinel_servers,
    )

    new_master = _sentinel_client(group).master_for("mymaster")

    def writable() -> bool:
        return bool(new_master.set("after", "2"))

    wait_until(writable, timeout=5, what="new master to accept writes")
    assert new_master.connection_pool.get_master_address() == group.replica.addr
    assert new_master.get("before") == "1"
    assert new_master.get("after") == "2"

    pids = group.pids
    group.stop()
    assert old_master_pid is not None
    assert_all_gone([*pids, old_master_pid])
