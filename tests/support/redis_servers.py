"""Start and stop real ``redis-server`` processes for the test suite.

Why real servers: fakeredis cannot reproduce timeouts, failover, cluster
redirection or a server that stops answering, and those are exactly the
paths a tiered cache must survive.  Everything here is built so the suite
can never damage a Redis it did not start:

* every process binds 127.0.0.1 only, on a free port picked by the kernel
  (port 6379 is refused outright, so the shared server there is never hit);
* readiness is checked with ``INFO server`` and the reported ``process_id``
  must equal the PID we spawned, so a port collision with someone else's
  server can never be mistaken for ours;
* processes are stopped by PID (SIGTERM, then SIGKILL after a bounded
  wait), never by name, and an ``atexit`` hook SIGKILLs anything left over;
* nothing is persisted (``--save "" --appendonly no``) and each server gets
  its own directory.

Readiness is polled with a bounded deadline (never a fixed sleep) and every
failure raises :class:`RedisServerError` carrying the log tail of the
processes involved.
"""

from __future__ import annotations

import atexit
import contextlib
import os
import shutil
import signal
import socket
import subprocess
import threading
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType
from typing import TypeVar

import redis
from redis.backoff import NoBackoff
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import RedisError
from redis.retry import Retry

__all__ = [
    "DEFAULT_START_TIMEOUT",
    "LOOPBACK",
    "RedisCluster",
    "RedisServer",
    "RedisServerError",
    "SentinelGroup",
    "find_free_port",
    "pid_alive",
    "wait_until",
]

LOOPBACK = "127.0.0.1"
#: The shared, pre-existing server on this machine; never start or stop on it.
FORBIDDEN_PORTS = frozenset({6379})
DEFAULT_START_TIMEOUT = 10.0
STOP_TIMEOUT = 5.0
POLL_INTERVAL = 0.01
_PORT_ATTEMPTS = 5
_Self = TypeVar("_Self", bound="_StopsOnExit")
_LOG_NAME = "redis.log"


class RedisServerError(RuntimeError):
    """A test Redis process could not be started, reached or configured."""


class _PortTakenError(RedisServerError):
    """Our port is answered by a different process (lost the port race)."""


# --------------------------------------------------------------------------
# Process bookkeeping: every PID we spawn is recorded so an interpreter exit
# (even after a failed fixture) kills it instead of leaking a server.
# --------------------------------------------------------------------------
_LIVE: dict[int, subprocess.Popen[bytes]] = {}
_LIVE_LOCK = threading.Lock()
# Ports handed out but possibly not yet bound: keeps two servers started
# back to back from being given the same just-released port.
_CLAIMED_PORTS: set[int] = set()


def _register(proc: subprocess.Popen[bytes]) -> None:
    with _LIVE_LOCK:
        _LIVE[proc.pid] = proc


def _unregister(proc: subprocess.Popen[bytes]) -> None:
    with _LIVE_LOCK:
        _LIVE.pop(proc.pid, None)


@atexit.register
def _kill_leftovers() -> None:
    """Last-resort cleanup so an aborted test run leaves no servers behind."""
    with _LIVE_LOCK:
        procs = list(_LIVE.values())
        _LIVE.clear()
    for proc in procs:
        if proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                proc.kill()
    for proc in procs:
        with contextlib.suppress(subprocess.TimeoutExpired):
            proc.wait(timeout=STOP_TIMEOUT)


def pid_alive(pid: int) -> bool:
    """True if ``pid`` is a live (non-zombie) process.

    Used by tests to prove teardown really removed every process.
    """
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return True
    # Field 3 (after the parenthesised command name) is the state.
    return stat.rpartition(")")[2].split()[0] != "Z"


def find_free_port() -> int:
    """Return a loopback TCP port that is free right now.

    The kernel picks it (bind to port 0); the small race until redis-server
    binds it is handled by :meth:`RedisServer.start` retrying on
    "Address already in use".
    """
    for _ in range(100):
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
            sock.bind((LOOPBACK, 0))
            port = sock.getsockname()[1]
        with _LIVE_LOCK:
            if port in FORBIDDEN_PORTS or port in _CLAIMED_PORTS:
                continue
            _CLAIMED_PORTS.add(port)
            return port
    raise RedisServerError("could not find a free loopback port")


def _which(binary: str) -> str:
    path = shutil.which(binary)
    if path is None:
        raise RedisServerError(
            f"{binary!r} was not found on PATH; install redis-server "
            "(e.g. `apt-get install redis-server`). Tests needing a real Redis "
            "fail rather than skip so missing coverage is never silent."
        )
    return path


def _log_tail(path: Path, lines: int = 30, start: int = 0) -> str:
    try:
        with path.open("rb") as fh:
            fh.seek(start)
            data = fh.read()
    except OSError as exc:
        return f"<no log at {path}: {exc}>"
    text = data.decode("utf-8", "replace").splitlines()[-lines:]
    return "\n".join(text) if text else "<log is empty>"


def wait_until(
    predicate: Callable[[], object],
    *,
    timeout: float,
    what: str,
    watch: Sequence[RedisServer] = (),
    interval: float = POLL_INTERVAL,
) -> object:
    """Poll ``predicate`` until it returns a truthy value or ``timeout`` passes.

    Why not sleep: a fixed sleep is either too short on a loaded CI box or
    wastes time everywhere else.  Between attempts we block on the first
    watched process (``Popen.wait``), so a crash of any watched server ends
    the wait immediately with its log instead of running out the deadline.
    Exceptions from ``predicate`` (connection refused, LOADING, ...) count as
    "not yet".  Returns the predicate's truthy value.
    """
    deadline = time.monotonic() + timeout
    last_error: BaseException | None = None
    while True:
        for server in watch:
            server._raise_if_dead(f"while waiting for {what}")
        try:
            result = predicate()
        except (RedisError, OSError, ValueError, KeyError) as exc:
            result, last_error = None, exc
        if result:
            return result
        for server in watch:
            server._raise_if_dead(f"while waiting for {what}")
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            logs = "\n".join(s.describe_log() for s in watch)
            raise RedisServerError(
                f"timed out after {timeout:.1f}s waiting for {what}"
                f" (last error: {last_error!r})\n{logs}"
            )
        pause = min(interval, remaining)
        live = [s for s in watch if s.is_running()]
        if live:
            with contextlib.suppress(subprocess.TimeoutExpired):
                live[0].process.wait(timeout=pause)  # type: ignore[union-attr]
        else:
            threading.Event().wait(pause)


# --------------------------------------------------------------------------
# A single process
# --------------------------------------------------------------------------
class _StopsOnExit:
    """``with X.start(...) as x:`` stops every process ``x`` started."""

    def stop(self) -> None:
        raise NotImplementedError

    def __enter__(self: _Self) -> _Self:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()


@dataclass(eq=False)
class RedisServer(_StopsOnExit):
    """One ``redis-server`` (or ``redis-server --sentinel``) process we own.

    Create with :meth:`start`; :meth:`restart` reuses the same port,
    arguments and directory so a node can come back "as itself" (cluster
    nodes keep ``nodes.conf``, sentinels keep their rewritten config).
    """

    dir: Path
    port: int
    extra_args: tuple[str, ...] = ()
    cluster_port: int | None = None
    sentinel_config: tuple[str, ...] | None = None
    process: subprocess.Popen[bytes] | None = field(default=None, repr=False)
    _log_offset: int = field(default=0, repr=False)

    # -- construction ------------------------------------------------------
    @classmethod
    def start(
        cls,
        dir: Path | str,
        port: int | None = None,
        extra_args: Iterable[str] = (),
        *,
        cluster_bus: bool = False,
        sentinel_config: Iterable[str] | None = None,
        timeout: float = DEFAULT_START_TIMEOUT,
    ) -> RedisServer:
        """Spawn a server in ``dir`` and return once it answers as our PID.

        ``port=None`` picks a free port and retries with a new one if another
        process grabbed it first.  ``cluster_bus=True`` also reserves a free
        cluster bus port (passed as ``--cluster-port``) instead of relying on
        ``port + 10000``, which may be taken or exceed 65535.
        ``sentinel_config`` lines are written to ``sentinel.conf`` and the
        process is started in sentinel mode.
        """
        dir = Path(dir)
        dir.mkdir(parents=True, exist_ok=True)
        if port is not None and port in FORBIDDEN_PORTS:
            raise RedisServerError(f"refusing to start a test server on port {port}")
        attempts = 1 if port is not None else _PORT_ATTEMPTS
        last: RedisServerError | None = None
        for _ in range(attempts):
            server = cls(
                dir=dir,
                port=port if port is not None else find_free_port(),
                extra_args=tuple(extra_args),
                cluster_port=find_free_port() if cluster_bus else None,
                sentinel_config=(
                    tuple(sentinel_config) if sentinel_config is not None else None
                ),
            )
            try:
                server._spawn(timeout)
            except BaseException as exc:
                server.kill()
                retry = port is None and (
                    isinstance(exc, _PortTakenError) or server._port_collision()
                )
                if isinstance(exc, RedisServerError) and retry:
                    last = exc
                    continue
                raise
            return server
        raise RedisServerError(f"no free port after {attempts} attempts: {last}")

    def _argv(self) -> list[str]:
        argv = [_which("redis-server")]
        if self.sentinel_config is not None:
            argv += [str(self.dir / "sentinel.conf"), "--sentinel"]
        argv += [
            "--port", str(self.port),
            "--bind", LOOPBACK,
            "--dir", str(self.dir),
            "--daemonize", "no",
            "--save", "",
            "--appendonly", "no",
            # Redis 7 waits 5 s before a diskless full sync to batch replicas;
            # tests have one replica per master, so sync at once.
            "--repl-diskless-sync-delay", "0",
        ]  # fmt: skip
        if self.cluster_port is not None:
            argv += ["--cluster-enabled", "yes"]
            argv += ["--cluster-port", str(self.cluster_port)]
        return argv + list(self.extra_args)

    def _spawn(self, timeout: float) -> None:
        if self.process is not None and self.process.poll() is None:
            raise RedisServerError(f"{self} is already running")
        argv = self._argv()
        conf = self.dir / "sentinel.conf"
        if self.sentinel_config is not None and not conf.exists():
            # Sentinel rewrites this file (myid, discovered peers); only the
            # first start writes it so restart() keeps that state.
            conf.write_text("\n".join(self.sentinel_config) + "\n")
        log = self.dir / _LOG_NAME
        with log.open("ab") as fh:
            self._log_offset = fh.tell()
            # Same process group as pytest on purpose: if the whole run is
            # killed by its group, the servers go with it.
            self.process = subprocess.Popen(
                argv,
                cwd=self.dir,
                stdin=subprocess.DEVNULL,
                stdout=fh,
                stderr=subprocess.STDOUT,
            )
        _register(self.process)
        wait_until(
            self._answers_as_us,
            timeout=timeout,
            what=f"{self} to accept connections",
            watch=[self],
        )

    def _answers_as_us(self) -> bool:
        # No retries: redis-py's default (10 retries, exponential backoff)
        # would turn one poll into seconds and blow the readiness deadline.
        client = redis.Redis(
            host=LOOPBACK,
            port=self.port,
            socket_timeout=0.5,
            socket_connect_timeout=0.5,
            retry=Retry(NoBackoff(), 0),
            decode_responses=True,
        )
        try:
            info = client.info("server")
        finally:
            client.close()
        if int(info["process_id"]) != self.pid:
            raise _PortTakenError(
                f"port {self.port} answered as PID {info['process_id']}, not {self}"
            )
        return True

    def _port_collision(self) -> bool:
        tail = _log_tail(self.dir / _LOG_NAME, start=self._log_offset)
        return "Address already in use" in tail

    def _raise_if_dead(self, context: str) -> None:
        if self.process is not None and self.process.poll() is not None:
            raise RedisServerError(
                f"{self} exited with code {self.process.returncode} {context}\n"
                f"{self.describe_log()}"
            )

    # -- introspection -----------------------------------------------------
    @property
    def pid(self) -> int | None:
        """PID of the current process (changes on restart), None if never run."""
        return self.process.pid if self.process is not None else None

    @property
    def host(self) -> str:
        return LOOPBACK

    @property
    def addr(self) -> tuple[str, int]:
        return (LOOPBACK, self.port)

    @property
    def is_sentinel(self) -> bool:
        return self.sentinel_config is not None

    @property
    def log_path(self) -> Path:
        return self.dir / _LOG_NAME

    def is_running(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def url(self, db: int = 0) -> str:
        return f"redis://{LOOPBACK}:{self.port}/{db}"

    def client(self, db: int = 0, **kwargs: object) -> redis.Redis:
        """A client with 1 s timeouts so a stopped/paused server fails fast.

        redis-py's default retry policy (10 retries with backoff) would make
        a paused server look like a 20 s hang, so timeouts are not retried;
        one immediate retry on connection errors keeps pooled connections
        working across :meth:`restart`.  Override via ``kwargs``.
        """
        options: dict[str, object] = {
            "socket_timeout": 1.0,
            "socket_connect_timeout": 1.0,
            "retry": Retry(NoBackoff(), 1, supported_errors=(RedisConnectionError,)),
            "decode_responses": True,
        }
        options.update(kwargs)
        return redis.Redis(host=LOOPBACK, port=self.port, db=db, **options)  # type: ignore[arg-type]

    def replication_link_up(self) -> bool:
        """True once this replica has finished its initial sync."""
        client = self.client()
        try:
            info = client.info("replication")
        finally:
            client.close()
        return info.get("master_link_status") == "up"

    def describe_log(self, lines: int = 30) -> str:
        return f"--- last log lines of {self} ---\n{_log_tail(self.log_path, lines)}"

    def __str__(self) -> str:
        kind = "redis-sentinel" if self.is_sentinel else "redis-server"
        return f"{kind}[{LOOPBACK}:{self.port} pid={self.pid}]"

    # -- lifecycle -----------------------------------------------------------
    def _signal(self, sig: signal.Signals) -> None:
        if self.process is not None and self.process.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                self.process.send_signal(sig)

    def stop(self, timeout: float = STOP_TIMEOUT) -> None:
        """SIGTERM, then SIGKILL if it has not exited after ``timeout`` seconds.

        Idempotent.  SIGCONT follows SIGTERM so a paused server still exits.
        """
        proc = self.process
        if proc is None:
            return
        if proc.poll() is None:
            self._signal(signal.SIGTERM)
            self._signal(signal.SIGCONT)
            try:
                proc.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                self._signal(signal.SIGKILL)
                proc.wait(timeout=timeout)
        _unregister(proc)

    def kill(self) -> None:
        """SIGKILL and reap: simulates a crash (no shutdown, no failover hint)."""
        proc = self.process
        if proc is None:
            return
        self._signal(signal.SIGKILL)
        proc.wait(timeout=STOP_TIMEOUT)
        _unregister(proc)

    def pause(self) -> None:
        """SIGSTOP: the port stays open but nothing answers (a hung server)."""
        self._signal(signal.SIGSTOP)

    def resume(self) -> None:
        """SIGCONT after :meth:`pause`."""
        self._signal(signal.SIGCONT)

    def restart(self, timeout: float = DEFAULT_START_TIMEOUT) -> None:
        """Stop (if running) and start again on the same port with the same args."""
        self.stop()
        self._spawn(timeout)

    def ensure_running(self, timeout: float = DEFAULT_START_TIMEOUT) -> None:
        """Undo a test's pause()/kill() so a shared (session) server stays usable."""
        self.resume()
        if not self.is_running():
            if self.process is not None:
                _unregister(self.process)
            self._spawn(timeout)

    def flushdb(self, db: int = 0) -> None:
        """FLUSHDB, but only after confirming the port is served by our PID.

        Flushing the wrong server (e.g. a shared one on 6379) would destroy
        someone else's data, so identity is checked, not assumed.
        """
        client = self.client(db)
        try:
            pid = int(client.info("server")["process_id"])
            if pid != self.pid:
                raise RedisServerError(
                    f"refusing to FLUSHDB port {self.port}: it is served by PID "
                    f"{pid}, not by {self}"
                )
            client.flushdb()
        finally:
            client.close()


def _stop_all(servers: Iterable[RedisServer]) -> None:
    """Stop every server even if some stops fail; re-raise the first error."""
    first: BaseException | None = None
    for server in servers:
        try:
            server.stop()
        except BaseException as exc:  # keep stopping the rest
            server.kill()
            first = first or exc
    if first is not None:
        raise first


def _pairs(value: object) -> dict[str, str]:
    """SENTINEL replies are flat [k, v, ...] lists (RESP2) or maps (RESP3)."""
    if isinstance(value, dict):
        return {str(k): str(v) for k, v in value.items()}
    items = list(value)  # type: ignore[call-overload]
    return {str(items[i]): str(items[i + 1]) for i in range(0, len(items) - 1, 2)}


# --------------------------------------------------------------------------
# Sentinel
# --------------------------------------------------------------------------
class SentinelGroup(_StopsOnExit):
    """1 master + 1 replica watched by 3 sentinels (quorum 2).

    ``start()`` only returns once every sentinel sees the master, the
    replica with a healthy link and both other sentinels: otherwise a
    failover test could fail simply because discovery had not finished.
    """

    service_name = "mymaster"
    SENTINEL_COUNT = 3
    QUORUM = 2

    def __init__(self, dir: Path | str) -> None:
        self.dir = Path(dir)
        self.master: RedisServer | None = None
        self.replica: RedisServer | None = None
        self.sentinel_servers: list[RedisServer] = []

    @classmethod
    def start(
        cls,
        dir: Path | str,
        *,
        down_after_ms: int = 1000,
        failover_timeout_ms: int = 3000,
        timeout: float = 20.0,
    ) -> SentinelGroup:
        """Start everything; on any failure, kill what was started and re-raise."""
        group = cls(dir)
        try:
            group._start(down_after_ms, failover_timeout_ms, timeout)
        except BaseException:
            group.stop()
            raise
        return group

    def _start(
        self, down_after_ms: int, failover_timeout_ms: int, timeout: float
    ) -> None:
        self.master = RedisServer.start(self.dir / "master")
        self.replica = RedisServer.start(
            self.dir / "replica",
            extra_args=("--replicaof", LOOPBACK, str(self.master.port)),
        )
        wait_until(
            self.replica.replication_link_up,
            timeout=timeout,
            what="replica to sync with master",
            watch=[self.master, self.replica],
        )
        name = self.service_name
        conf = (
            f"bind {LOOPBACK}",
            "sentinel resolve-hostnames no",
            f"sentinel monitor {name} {LOOPBACK} {self.master.port} {self.QUORUM}",
            f"sentinel down-after-milliseconds {name} {down_after_ms}",
            f"sentinel failover-timeout {name} {failover_timeout_ms}",
            f"sentinel parallel-syncs {name} 1",
        )
        for i in range(self.SENTINEL_COUNT):
            self.sentinel_servers.append(
                RedisServer.start(self.dir / f"sentinel{i}", sentinel_config=conf)
            )
        wait_until(
            self._sentinels_ready,
            timeout=timeout,
            what="all sentinels to discover the master, replica and each other",
            watch=self.all_servers,
        )

    def _sentinels_ready(self) -> bool:
        assert self.master is not None and self.replica is not None
        for sentinel in self.sentinel_servers:
            client = sentinel.client()
            try:
                master = _pairs(
                    client.execute_command("SENTINEL", "MASTER", self.service_name)
                )
                if master.get("port") != str(self.master.port):
                    return False
                if set(master.get("flags", "").split(",")) != {"master"}:
                    return False
                if int(master.get("num-other-sentinels", 0)) < self.SENTINEL_COUNT - 1:
                    return False
                replicas = [
                    _pairs(r)
                    for r in client.execute_command(
                        "SENTINEL", "REPLICAS", self.service_name
                    )
                ]
                if not any(
                    r.get("port") == str(self.replica.port)
                    and set(r.get("flags", "").split(",")) == {"slave"}
                    and r.get("master-link-status") == "ok"
                    for r in replicas
                ):
                    return False
                ok = client.execute_command("SENTINEL", "CKQUORUM", self.service_name)
                if not str(ok).startswith("OK"):
                    return False
            finally:
                client.close()
        return True

    @property
    def all_servers(self) -> list[RedisServer]:
        data = [s for s in (self.master, self.replica) if s is not None]
        return data + self.sentinel_servers

    @property
    def sentinels(self) -> list[tuple[str, int]]:
        """Sentinel addresses in the form ``redis.sentinel.Sentinel`` expects."""
        return [s.addr for s in self.sentinel_servers]

    @property
    def pids(self) -> list[int]:
        return [s.pid for s in self.all_servers if s.pid is not None]

    def current_master_addr(self) -> tuple[str, int]:
        """Master address per the first sentinel that answers.

        Asks sentinels in order so one paused/killed sentinel does not hide
        the answer; raises if none answers.
        """
        errors: list[str] = []
        for sentinel in self.sentinel_servers:
            if not sentinel.is_running():
                continue
            client = sentinel.client()
            try:
                host, port = client.execute_command(
                    "SENTINEL", "GET-MASTER-ADDR-BY-NAME", self.service_name
                )
                return (str(host), int(port))
            except (RedisError, OSError, TypeError, ValueError) as exc:
                errors.append(f"{sentinel}: {exc!r}")
            finally:
                client.close()
        raise RedisServerError(f"no sentinel reported a master: {errors}")

    def stop(self) -> None:
        """Sentinels first (so none starts a failover mid-teardown), then data."""
        servers = list(self.sentinel_servers)
        servers += [s for s in (self.replica, self.master) if s is not None]
        _stop_all(servers)


# --------------------------------------------------------------------------
# Cluster
# --------------------------------------------------------------------------
class RedisCluster(_StopsOnExit):
    """A Redis Cluster of ``masters`` masters with ``replicas`` replicas each.

    ``start()`` returns once every node reports ``cluster_state:ok`` and
    knows every other node, so the first client command never hits a
    half-formed cluster (CLUSTERDOWN / MOVED storms).
    """

    def __init__(self, dir: Path | str) -> None:
        self.dir = Path(dir)
        self.nodes: list[RedisServer] = []
        self.masters = 0
        self.replicas = 0

    @classmethod
    def start(
        cls,
        dir: Path | str,
        masters: int = 3,
        replicas: int = 0,
        *,
        node_timeout_ms: int = 1000,
        timeout: float = 30.0,
    ) -> RedisCluster:
        """Start nodes and join them; on any failure kill them all and re-raise."""
        if masters < 3:
            raise ValueError("redis-cli --cluster create needs at least 3 masters")
        if replicas not in (0, 1):
            raise ValueError("only 0 or 1 replica per master is supported")
        cluster = cls(dir)
        cluster.masters, cluster.replicas = masters, replicas
        try:
            cluster._start(node_timeout_ms, timeout)
        except BaseException:
            cluster.stop()
            raise
        return cluster

    def _start(self, node_timeout_ms: int, timeout: float) -> None:
        args = (
            "--cluster-config-file", "nodes.conf",
            "--cluster-node-timeout", str(node_timeout_ms),
        )  # fmt: skip
        for i in range(self.masters * (1 + self.replicas)):
            self.nodes.append(
                RedisServer.start(
                    self.dir / f"node{i}", extra_args=args, cluster_bus=True
                )
            )
        cmd = [
            _which("redis-cli"),
            "--cluster", "create",
            *(f"{LOOPBACK}:{port}" for port in self.ports),
            "--cluster-replicas", str(self.replicas),
            "--cluster-yes",
        ]  # fmt: skip
        try:
            result = subprocess.run(
                cmd, capture_output=True, text=True, timeout=timeout, check=False
            )
        except subprocess.TimeoutExpired as exc:
            raise RedisServerError(
                f"`{' '.join(cmd)}` timed out: {exc.output}"
            ) from exc
        if result.returncode != 0:
            logs = "\n".join(n.describe_log(10) for n in self.nodes)
            raise RedisServerError(
                f"`{' '.join(cmd)}` failed ({result.returncode}):\n"
                f"{result.stdout}\n{result.stderr}\n{logs}"
            )
        wait_until(
            self._all_ok,
            timeout=timeout,
            what="cluster_state:ok on every node",
            watch=self.nodes,
        )

    def _all_ok(self) -> bool:
        total = len(self.nodes)
        for node in self.nodes:
            client = node.client()
            try:
                info = client.cluster("info")
                if info.get("cluster_state") != "ok":
                    return False
                if int(info.get("cluster_known_nodes", 0)) != total:
                    return False
                if int(info.get("cluster_slots_ok", 0)) != 16384:
                    return False
                repl = client.info("replication")
                if repl["role"] == "slave" and repl.get("master_link_status") != "up":
                    return False
            finally:
                client.close()
        return True

    @property
    def ports(self) -> list[int]:
        return [n.port for n in self.nodes]

    @property
    def startup_urls(self) -> list[str]:
        return [f"redis://{LOOPBACK}:{port}" for port in self.ports]

    @property
    def pids(self) -> list[int]:
        return [n.pid for n in self.nodes if n.pid is not None]

    def stop(self) -> None:
        _stop_all(self.nodes)
