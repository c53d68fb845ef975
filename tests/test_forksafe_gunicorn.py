"""A real pre-forking server: gunicorn ``--preload`` (docs/faults.rst D32).

The testproject runs under gunicorn with 3 sync workers, ``--preload`` (the
application, hence the cache configuration, is loaded in the master) and a
``when_ready`` hook that uses the cache in the master just before it forks:
L1 filled, Redis connections open, L3 opened and written, the bus listener
running. Then every worker must answer, write through the tiers it inherited
and read its write back, while the others do the same; after the server
stopped, every SQLite file of L3 passes ``PRAGMA quick_check``.
"""

from __future__ import annotations

import contextlib
import http.client
import json
import os
import signal
import sqlite3
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support.redis_servers import find_free_port, wait_until

ROOT = Path(__file__).resolve().parents[1]
WORKERS = 3

HOOK = '''
def when_ready(server):
    """Use every tier in the master, after --preload loaded Django, before fork."""
    from django.core.cache import cache

    cache.set("chaos:parent", "parent-value", 3600)
    assert cache.get("chaos:parent") == "parent-value"
    assert [t.name for t in cache.tiers] == {tiers!r}, cache.tiers
'''


class Server:
    """gunicorn over the testproject; stopped by PID."""

    def __init__(self, tmp: Path, redis_url: str, tiers: list[str]) -> None:
        self.port = find_free_port()
        self.log = tmp / "gunicorn.log"
        config = tmp / "gunicorn_hooks.py"
        config.write_text(HOOK.format(tiers=tiers))
        env = {
            **os.environ,
            "DJANGO_SETTINGS_MODULE": "testproject.settings",
            "DJANGO_DEBUG": "0",
            "TESTPROJECT_CHAOS": "1",
            "TESTPROJECT_L3_DIR": str(tmp / "l3"),
            "REDIS_URL": redis_url,
            "PYTHONPATH": str(ROOT),
        }
        argv = [sys.executable, "-m", "gunicorn", "testproject.wsgi:application"]
        argv += ["--preload", "--workers", str(WORKERS), "--worker-class", "sync"]
        argv += ["--bind", f"127.0.0.1:{self.port}", "--config", str(config)]
        argv += ["--timeout", "60", "--graceful-timeout", "10"]
        with self.log.open("ab") as fh:
            self.process = subprocess.Popen(
                argv,
                cwd=ROOT / "testproject",
                env=env,
                stdin=subprocess.DEVNULL,
                stdout=fh,
                stderr=subprocess.STDOUT,
            )

    def post(self, path: str, timeout: float = 10.0) -> tuple[int, bytes]:
        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=timeout)
        try:
            conn.request("POST", path)
            response = conn.getresponse()
            return response.status, response.read()
        finally:
            conn.close()

    def roundtrip(self, key: str) -> dict:
        if self.process.poll() is not None:
            raise RuntimeError(f"gunicorn exited:\n{self.tail()}")
        status, body = self.post(f"/chaos/roundtrip?key={key}")
        assert status == 200, (status, body[-2000:], self.tail())
        return json.loads(body)

    def tail(self, lines: int = 40) -> str:
        return "\n".join(self.log.read_text(errors="replace").splitlines()[-lines:])

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout=10)


@pytest.fixture
def serve(tmp_path) -> Iterator:
    servers: list[Server] = []

    def start(redis_url: str, tiers: list[str]) -> Server:
        server = Server(tmp_path, redis_url, tiers)
        servers.append(server)
        return server

    yield start
    for server in servers:
        server.stop()


def _hammer(server: Server, threads: int, each: int) -> list[dict]:
    """``threads`` clients at once, ``each`` round trips per client."""
    answers: list[dict] = []
    errors: list[BaseException] = []
    lock = threading.Lock()

    def client(n: int) -> None:
        try:
            for i in range(each):
                answer = server.roundtrip(f"c{n}-{i}")
                with lock:
                    answers.append(answer)
        except BaseException as exc:
            with lock:
                errors.append(exc)

    workers = [threading.Thread(target=client, args=(n,)) for n in range(threads)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join(120)
    assert not errors, errors[0]
    return answers


@pytest.mark.slow
@pytest.mark.parametrize("with_redis", [True, False], ids=["l1+l2+l3", "l1+l3"])
def test_preloaded_gunicorn_workers_write_and_read_back(
    serve, redis_server, tmp_path, with_redis
):
    if with_redis:
        url, tiers = redis_server.url(10), ["l1", "l2", "l3"]
        redis_server.flushdb(10)
    else:  # nothing listens there: the settings configure L1 + L3
        url, tiers = f"redis://127.0.0.1:{find_free_port()}/0", ["l1", "l3"]
    server = serve(url, tiers)
    seen: dict[int, dict] = {}

    def every_worker_answered() -> bool:
        with contextlib.suppress(OSError, http.client.HTTPException):
            answer = server.roundtrip(f"probe-{len(seen)}")
            seen.setdefault(answer["pid"], answer)
        return len(seen) >= WORKERS

    wait_until(every_worker_answered, timeout=90, what=f"{WORKERS} workers")
    answers = _hammer(server, threads=6, each=25)
    pids = {answer["pid"] for answer in answers} | set(seen)
    assert len(pids) == WORKERS and server.process.pid not in pids
    for answer in answers + list(seen.values()):
        assert answer["read"] == answer["wrote"], answer  # its own write
        assert answer["parent"] == "parent-value", answer  # written before fork
        for name, stats in answer["tiers"].items():
            assert stats.get("breaker") in (None, "closed"), (name, stats)
    server.stop()
    assert server.process.returncode == 0, server.tail()
    log = server.log.read_text(errors="replace")
    assert "Traceback" not in log and "corrupt" not in log, server.tail()
    shards = sorted((tmp_path / "l3").rglob("*.db"))
    assert len(shards) >= 8  # 8 shards (and the marks cache with an L2)
    assert not list((tmp_path / "l3").rglob("*corrupt*"))
    rows = 0
    for shard in shards:
        with contextlib.closing(sqlite3.connect(shard)) as db:
            assert db.execute("PRAGMA quick_check").fetchall() == [("ok",)], shard
            rows += db.execute("SELECT count(*) FROM Cache").fetchone()[0]
    assert rows >= len(answers) // 2  # the workers' writes did reach L3
