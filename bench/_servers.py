"""A throwaway redis-server for benchmarks: own loopback port, own temp dir.

The server is started with persistence off, on a free 127.0.0.1 port (never
6379), and stopped by its PID. Nothing here talks to any other server.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import tempfile
import time

__all__ = ["RedisServer", "free_port"]

_RESERVED = {6379}


def free_port() -> int:
    """Return a loopback TCP port that was free a moment ago (never 6379)."""
    while True:
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
            sock.bind(("127.0.0.1", 0))
            port = sock.getsockname()[1]
        if port not in _RESERVED:
            return port


def _ping(port: int, timeout: float = 0.2) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=timeout) as sock:
            sock.sendall(b"PING\r\n")
            return sock.recv(16).startswith(b"+PONG")
    except OSError:
        return False


class RedisServer:
    """Start ``redis-server`` on a free loopback port; use as a context manager."""

    def __init__(self, executable: str = "redis-server") -> None:
        path = shutil.which(executable)
        if path is None:
            raise RuntimeError(f"{executable} not found on PATH")
        self.executable = path
        self.port: int | None = None
        self.proc: subprocess.Popen | None = None
        self.dir: str | None = None

    def url(self, db: int = 0) -> str:
        return f"redis://127.0.0.1:{self.port}/{db}"

    def version(self) -> str:
        out = subprocess.run(
            [self.executable, "--version"], capture_output=True, text=True, check=False
        ).stdout
        for part in out.split():
            if part.startswith("v="):
                return part[2:]
        return out.strip()

    def start(self, attempts: int = 3) -> RedisServer:
        self.dir = tempfile.mkdtemp(prefix="bench-redis-")
        for _ in range(attempts):
            port = free_port()
            proc = subprocess.Popen(
                [
                    self.executable,
                    "--port",
                    str(port),
                    "--bind",
                    "127.0.0.1",
                    "--save",
                    "",
                    "--appendonly",
                    "no",
                    "--dir",
                    self.dir,
                    "--daemonize",
                    "no",
                    "--loglevel",
                    "warning",
                ],
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
            )
            deadline = time.monotonic() + 5
            while time.monotonic() < deadline and proc.poll() is None:
                if _ping(port):
                    self.port, self.proc = port, proc
                    return self
                time.sleep(0.02)
            # Lost the port race or failed to start: stop this one, try again.
            self._stop_proc(proc)
        self._cleanup_dir()
        raise RuntimeError("could not start redis-server")

    def stop(self) -> None:
        if self.proc is not None:
            self._stop_proc(self.proc)
            self.proc = None
        self._cleanup_dir()

    @staticmethod
    def _stop_proc(proc: subprocess.Popen) -> None:
        if proc.poll() is None:
            proc.terminate()  # SIGTERM to this PID only
            try:
                proc.wait(timeout=5)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(timeout=5)

    def _cleanup_dir(self) -> None:
        if self.dir and os.path.isdir(self.dir):
            shutil.rmtree(self.dir, ignore_errors=True)
        self.dir = None

    def __enter__(self) -> RedisServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
