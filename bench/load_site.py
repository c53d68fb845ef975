"""The testproject under one server of ``bench/load.py``: gunicorn or uvicorn.

Servers (``SERVERS``), as issue 10 measured them:

* ``sync``: gunicorn's sync workers (one request at a time per process, the
  connection closed after each answer);
* ``gthread``: gunicorn, ``--workers`` processes of ``--threads`` threads,
  ``--worker-connections 10000`` (the only configuration that accepted every
  one of 10 000 connections in the issue's measurements);
* ``uvicorn``: the ASGI application, async views (``/load/aslow/``).

Every server binds 127.0.0.1 on a free port with ``--backlog`` (4096 by
default; the kernel caps it at ``net.core.somaxconn``), is started with the
environment that picks the cache, and is stopped by PID.
"""

from __future__ import annotations

import http.client
import os
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent

SERVERS = ("sync", "gthread", "uvicorn")
#: server -> (view of the slow page, view that does no work)
PATHS = {
    "sync": ("/load/slow/", "/load/nowork/"),
    "gthread": ("/load/slow/", "/load/nowork/"),
    "uvicorn": ("/load/aslow/", "/load/anowork/"),
}


@dataclass(frozen=True)
class ServerShape:
    """How many processes and threads, and the listen backlog."""

    workers: int = 4
    threads: int = 32
    backlog: int = 4096
    worker_connections: int = 10000
    #: Seconds an idle kept-alive connection stays open; None: the server's
    #: default (gunicorn 2, uvicorn 5). gunicorn gthread gives a new
    #: connection that has sent nothing the same time.
    keep_alive: float | None = None


def argv_for(server: str, port: int, shape: ServerShape, config: str = "") -> list[str]:
    """The command line that serves the testproject with ``server`` on ``port``."""
    if server == "uvicorn":
        argv = [
            sys.executable, "-m", "uvicorn", "testproject.asgi:application",
            "--host", "127.0.0.1", "--port", str(port),
            "--workers", str(shape.workers), "--backlog", str(shape.backlog),
            "--no-access-log", "--log-level", "warning",
        ]  # fmt: skip
        if shape.keep_alive is not None:
            argv += ["--timeout-keep-alive", str(int(shape.keep_alive))]
        return argv
    argv = [
        sys.executable, "-m", "gunicorn", "testproject.wsgi:application",
        "--bind", f"127.0.0.1:{port}", "--workers", str(shape.workers),
        "--backlog", str(shape.backlog), "--timeout", "60",
        "--graceful-timeout", "5", "--log-level", "warning",
    ]  # fmt: skip
    if shape.keep_alive is not None:
        argv += ["--keep-alive", str(int(shape.keep_alive))]
    if server == "gthread":
        argv += ["--worker-class", "gthread", "--threads", str(shape.threads)]
        argv += ["--worker-connections", str(shape.worker_connections)]
    elif server == "sync":
        argv += ["--worker-class", "sync"]
    else:
        raise ValueError(f"unknown server {server!r}; one of {', '.join(SERVERS)}")
    if config:
        argv += ["--config", config]
    return argv


class Site:
    """A server process (and its workers) serving the testproject; stopped by PID.

    ``argv`` runs in ``testproject/`` with the settings module, ``DEBUG`` off
    and ``env`` on top of this process's environment; its output goes to
    ``log``. ``bench/chaos.py``'s site is one too.
    """

    def __init__(self, argv: list[str], port: int, env: dict[str, str], log: Path):
        self.port = port
        self.url = f"http://127.0.0.1:{port}"
        self.log = log
        env = {
            **os.environ,
            "DJANGO_SETTINGS_MODULE": "testproject.settings",
            "DJANGO_DEBUG": "0",
            "PYTHONPATH": os.pathsep.join([str(ROOT / "testproject"), str(ROOT)]),
            **env,
        }
        with log.open("ab") as fh:
            self.process = subprocess.Popen(
                argv,
                cwd=ROOT / "testproject",
                env=env,
                stdin=subprocess.DEVNULL,
                stdout=fh,
                stderr=subprocess.STDOUT,
            )

    def get(self, path: str, timeout: float = 5.0) -> tuple[int, bytes]:
        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=timeout)
        try:
            conn.request("GET", path)
            response = conn.getresponse()
            return response.status, response.read()
        finally:
            conn.close()

    def wait_ready(self, path: str, workers: int, timeout: float = 90.0) -> set[int]:
        """Return once ``workers`` PIDs answered ``path`` (a body starts with one)."""
        seen: set[int] = set()
        deadline = time.monotonic() + timeout
        while len(seen) < workers:
            if self.process.poll() is not None:
                raise RuntimeError(f"the server exited:\n{self.tail()}")
            if time.monotonic() > deadline:
                raise RuntimeError(
                    f"{len(seen)} of {workers} workers answered "
                    f"{path} within {timeout:.0f}s:\n{self.tail()}"
                )
            try:
                status, body = self.get(path, timeout=2)
            except (OSError, http.client.HTTPException):
                time.sleep(0.1)  # not listening yet
                continue
            if status != 200:
                raise RuntimeError(f"{path}: HTTP {status}\n{self.tail()}")
            seen.add(int(body.split()[0]))
        return seen

    def tail(self, lines: int = 30) -> str:
        text = self.log.read_text(errors="replace").splitlines()
        return "\n".join(text[-lines:])

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout=10)

    def __enter__(self) -> Site:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()
