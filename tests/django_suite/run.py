"""Run Django's cache test suite against ``tiered_cache.TieredCache``.

    python -m tests.django_suite.run [--backend tiered|locmem]
                                     [LABEL ...] [runtests.py options]

Fetches Django's ``tests/`` for the installed version (``fetch.py``), starts a
redis-server of its own on a free loopback port (never 127.0.0.1:6379), makes a
temporary L3 directory, copies ``tiered_suite`` into the extracted ``tests/``
directory and runs ``runtests.py --parallel 1`` on it. Exits with runtests'
exit code (2 when the harness itself cannot start).
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import django

from tests.django_suite.fetch import REPO_ROOT, FetchError, fetch

SUITE_PACKAGE = Path(__file__).resolve().parent / "tiered_suite"
DEFAULT_LABELS = ["tiered_suite"]
# A label that runs no test but makes runtests.py install the upstream `cache`
# app, whose Poll model BaseCacheTests uses.
APP_LABELS = ["cache.models"]
FORBIDDEN_PORT = 6379


class HarnessError(RuntimeError):
    """The suite could not be started."""


class _OwnRedisServer:
    """A throwaway redis-server on a free loopback port, without persistence.

    Fallback with the interface of ``tests.support.redis_servers.RedisServer``
    (``RedisServer.start(dir)`` returns a running server; ``url(db)``, ``stop()``).
    """

    def __init__(self, port: int, process: subprocess.Popen) -> None:
        self.port = port
        self.process: subprocess.Popen | None = process

    @classmethod
    def start(cls, dir: Path) -> _OwnRedisServer:
        binary = shutil.which("redis-server")
        if binary is None:
            raise HarnessError("redis-server is not on PATH")
        dir = Path(dir)
        dir.mkdir(parents=True, exist_ok=True)
        for _attempt in range(5):
            with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
                sock.bind(("127.0.0.1", 0))
                port = sock.getsockname()[1]
            if port == FORBIDDEN_PORT:
                continue
            argv = [binary, "--port", str(port), "--bind", "127.0.0.1"]
            argv += ["--save", "", "--appendonly", "no", "--dir", str(dir)]
            with open(dir / f"redis-{port}.log", "wb") as log:
                process = subprocess.Popen(
                    argv, stdin=subprocess.DEVNULL, stdout=log, stderr=log
                )
            server = cls(port, process)
            if server._wait_ready():
                return server
            server.stop()
        raise HarnessError(f"redis-server did not start; logs in {dir}")

    def _wait_ready(self, timeout: float = 10.0) -> bool:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline and self.process.poll() is None:
            try:
                with socket.create_connection(("127.0.0.1", self.port), 0.5) as s:
                    s.sendall(b"PING\r\n")
                    if s.recv(64).startswith(b"+PONG"):
                        return True
            except OSError:
                pass
            time.sleep(0.05)
        return False

    def url(self, db: int = 0) -> str:
        return f"redis://127.0.0.1:{self.port}/{db}"

    def stop(self) -> None:
        process, self.process = self.process, None
        if process is not None:
            _terminate(process)


def _redis_server_class():
    try:
        from tests.support.redis_servers import RedisServer
    except ImportError:
        return _OwnRedisServer
    return RedisServer


def _install_suite(tests_dir: Path) -> None:
    dest = tests_dir / SUITE_PACKAGE.name
    if dest.is_symlink() or dest.is_file():
        dest.unlink()
    elif dest.exists():
        shutil.rmtree(dest)
    shutil.copytree(
        SUITE_PACKAGE, dest, ignore=shutil.ignore_patterns("__pycache__", "*.pyc")
    )


def _terminate(process: subprocess.Popen) -> None:
    if process.poll() is None:
        process.terminate()
        try:
            process.wait(15)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def summarize(lines: list[str]) -> list[str]:
    """Return runtests' closing lines plus a 'N passed, N failed' line."""
    ran = None
    result = None
    for line in lines:
        line = line.strip()
        if match := re.fullmatch(r"Ran (\d+) tests? in [\d.]+s", line):
            ran, ran_line = int(match.group(1)), line
        elif re.fullmatch(r"(OK|FAILED)( \(.*\))?", line):
            result = line
    if ran is None or result is None:
        return ["tiered_suite: runtests.py printed no test summary"]
    counts = dict(
        (key.strip(), int(value))
        for key, value in re.findall(r"([a-z ]+)=(\d+)", result)
    )
    failed = counts.get("failures", 0) + counts.get("errors", 0)
    skipped = counts.get("skipped", 0)
    other = counts.get("expected failures", 0) + counts.get("unexpected successes", 0)
    passed = max(ran - failed - skipped - other, 0)
    return [
        ran_line,
        result,
        f"tiered_suite: {passed} passed, {failed} failed, {skipped} skipped",
    ]


def runtests_args(extra: list[str]) -> list[str]:
    """Return runtests.py's arguments: options first, then the test labels.

    Labels are the arguments under ``tiered_suite``; the others are options.
    """
    labels = [a for a in extra if a.startswith(DEFAULT_LABELS[0])]
    options = [a for a in extra if a not in labels]
    args = ["--settings=test_sqlite", "--parallel=1", "--noinput"]
    if not any(a.startswith(("-v", "--verbosity")) for a in options):
        args.append("--verbosity=2")
    return args + options + (labels or DEFAULT_LABELS) + APP_LABELS


def run(backend: str, extra: list[str]) -> int:
    started = time.monotonic()
    tests_dir = fetch()
    print(f"Django {django.__version__} test suite: {tests_dir}", flush=True)
    _install_suite(tests_dir)

    tmp_root = Path(tempfile.mkdtemp(prefix="tiered-suite-"))
    server = None
    env = dict(os.environ)
    env["TIERED_SUITE_BACKEND"] = backend
    env["PYTHONPATH"] = os.pathsep.join(
        p for p in (str(REPO_ROOT), env.get("PYTHONPATH", "")) if p
    )
    env["PYTHONUNBUFFERED"] = "1"
    try:
        if backend == "tiered":
            try:
                server = _redis_server_class().start(tmp_root / "redis")
            except Exception as exc:
                raise HarnessError(f"could not start redis-server: {exc}") from exc
            url = server.url(1)
            if f":{FORBIDDEN_PORT}/" in url:
                raise HarnessError(f"refusing to use the default Redis port: {url}")
            l3_dir = tmp_root / "l3"
            l3_dir.mkdir()
            env["TIERED_SUITE_REDIS_URL"] = url
            env["TIERED_SUITE_L3_DIR"] = str(l3_dir)
            print(f"L2 {url}, L3 {l3_dir}", flush=True)
        cmd = [sys.executable, "runtests.py", *runtests_args(extra)]
        print(f"backend: {backend}; running: {' '.join(cmd[1:])}", flush=True)
        lines: list[str] = []
        process = subprocess.Popen(
            cmd,
            cwd=tests_dir,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            errors="replace",
        )
        try:
            for line in process.stdout:
                sys.stdout.write(line)
                lines.append(line)
            returncode = process.wait()
        finally:
            _terminate(process)
        print("=" * 70)
        for line in summarize(lines):
            print(line)
        print(
            f"backend {backend}, Django {django.__version__}, "
            f"exit {returncode}, wall {time.monotonic() - started:.1f}s"
        )
        return returncode
    finally:
        if server is not None:
            server.stop()
        shutil.rmtree(tmp_root, ignore_errors=True)


def _sigterm(signum, frame):
    raise SystemExit(128 + signum)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0],
        epilog="Other arguments (test labels under tiered_suite, runtests.py "
        "options such as -k or --failfast) are passed to runtests.py.",
    )
    parser.add_argument(
        "--backend",
        choices=["tiered", "locmem"],
        default=os.environ.get("TIERED_SUITE_BACKEND", "tiered"),
        help="backend under test (default: $TIERED_SUITE_BACKEND or tiered)",
    )
    args, extra = parser.parse_known_args(argv)
    signal.signal(signal.SIGTERM, _sigterm)
    try:
        return run(args.backend, extra)
    except (FetchError, HarnessError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
