#!/usr/bin/env python
"""Throughput and latency of the testproject at 100 to 10 000 clients, per cache.

Run from the repository root (needs the ``bench`` extra and ``redis-server``)::

    .venv/bin/python bench/load.py                      # the whole matrix
    .venv/bin/python bench/load.py --clients 100,1000 --seconds 5 \\
        --servers gthread --backends nowork,tiered
    .venv/bin/python bench/load.py --profile            # CPU share, item 5

For each server (``--servers``: gunicorn ``sync``, gunicorn ``gthread``,
``uvicorn``; see ``load_site.py``) and backend (``--backends``) it starts the
testproject with that cache, warms it, and runs the load generator
(``load_client.py``, a process of its own) once per ``--clients`` level:

* ``none``: the slow view (50 ms) with Django's DummyCache: nothing cached;
* ``locmem``: the slow view cached by LocMemCache;
* ``redis``: cached by django-redis alone;
* ``tiered``: cached by TieredCache, L1 + L2 + L3 (the testproject's cache);
* ``nowork``: a view that does no work: the ceiling of the server.

Redis is a ``redis-server`` of its own on a free loopback port (stopped by
PID; django-redis and the tiered cache use different databases of it), L3 a
folder in a temp dir. Per cell it records the client's counts (see
``load_client.py``: throughput, p50/p95/p99, errors by kind, clients never
served, requests and connects pending at the end), the kernel's
``ListenOverflows``/``ListenDrops`` deltas (handshakes dropped by a full accept
queue; they count the whole network namespace, so other loopback traffic on
the machine adds to them) and Redis' ``INFO stats`` byte counters (L2 and bus
traffic, in Mbit/s against the 100 Mbit/s budget). Each cell is one JSON line
in ``--out``; the chart (throughput and p99 against clients, one line per
backend, one row per server) goes to ``--chart``.

``--profile`` instead serves the tiered cache with one gunicorn sync worker
under pyinstrument (``load_profile.py``) and prints the share of request time
in ``tiered_cache`` and the hot spots.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

BENCH = Path(__file__).resolve().parent
ROOT = BENCH.parent
sys.path.insert(0, str(ROOT))  # the test suite's redis-server launcher
sys.path.insert(0, str(BENCH))

import load_profile  # noqa: E402
from load_client import raise_fd_limit  # noqa: E402
from load_report import print_cell, print_profile, print_ratios, write_chart  # noqa: E402
from load_site import PATHS, SERVERS, ServerShape, Site, argv_for  # noqa: E402

from tests.support.redis_servers import RedisServer, find_free_port  # noqa: E402

BACKENDS = ("none", "locmem", "redis", "tiered", "nowork")
BUDGET_MBPS = 100.0


def cache_env(backend: str, redis_port: int, l3: Path) -> dict[str, str]:
    """The testproject's environment for ``backend`` (see its settings)."""
    if backend == "tiered":
        return {
            "REDIS_URL": f"redis://127.0.0.1:{redis_port}/2",
            "TESTPROJECT_L3_DIR": str(l3),
        }
    if backend == "redis":
        return {
            "TESTPROJECT_CACHE": "redis",
            "REDIS_URL": f"redis://127.0.0.1:{redis_port}/1",
        }
    if backend == "locmem":
        return {"TESTPROJECT_CACHE": "locmem"}
    return {"TESTPROJECT_CACHE": "none"}  # none, nowork


def view_for(server: str, backend: str) -> str:
    slow, nowork = PATHS[server]
    return nowork if backend == "nowork" else slow


def listen_counters() -> dict[str, int]:
    """TcpExt ListenOverflows and ListenDrops of this network namespace."""
    lines = Path("/proc/net/netstat").read_text().splitlines()
    for names, values in zip(lines[::2], lines[1::2], strict=False):
        if names.startswith("TcpExt:"):
            table = dict(
                zip(names.split()[1:], map(int, values.split()[1:]), strict=True)
            )
            return {k: table.get(k, 0) for k in ("ListenOverflows", "ListenDrops")}
    return {"ListenOverflows": 0, "ListenDrops": 0}


def redis_bytes(server: RedisServer) -> dict[str, int]:
    client = server.client()
    try:
        stats = client.info("stats")
    finally:
        client.close()
    return {
        "in": int(stats["total_net_input_bytes"]),
        "out": int(stats["total_net_output_bytes"]),
    }


def run_client(port: int, path: str, clients: int, args: argparse.Namespace) -> dict:
    argv = [
        sys.executable, str(BENCH / "load_client.py"), "--port", str(port),
        "--path", path, "--clients", str(clients), "--seconds", str(args.seconds),
        "--timeout", str(args.timeout), "--connect-timeout", str(args.timeout),
    ]  # fmt: skip
    if args.max_requests:
        argv += ["--max-requests", str(args.max_requests)]
    done = subprocess.run(
        argv, capture_output=True, text=True, timeout=args.seconds + 120, check=False
    )
    if done.returncode != 0:
        raise RuntimeError(f"load_client failed:\n{done.stdout}\n{done.stderr}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def measure(site: Site, redis: RedisServer, path: str, clients: int, args) -> dict:
    """One cell: the client's counts plus the kernel's and Redis' deltas."""
    listen, wire = listen_counters(), redis_bytes(redis)
    started = time.monotonic()
    result = run_client(site.port, path, clients, args)
    elapsed = time.monotonic() - started
    listen_after, wire_after = listen_counters(), redis_bytes(redis)
    result["listen_overflows"] = (
        listen_after["ListenOverflows"] - listen["ListenOverflows"]
    )
    result["listen_drops"] = listen_after["ListenDrops"] - listen["ListenDrops"]
    moved = (wire_after["in"] - wire["in"]) + (wire_after["out"] - wire["out"])
    result["redis_bytes_per_s"] = round(moved / elapsed, 1)
    result["redis_mbps"] = round(moved * 8 / elapsed / 1e6, 4)
    result["redis_budget_pct"] = round(100 * result["redis_mbps"] / BUDGET_MBPS, 3)
    return result


def run_matrix(args: argparse.Namespace, tmp: Path, redis: RedisServer) -> list[dict]:
    shape = ServerShape(
        args.workers, args.threads, args.backlog, keep_alive=args.keep_alive
    )
    cells: list[dict] = []
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    for server in args.servers:
        for backend in args.backends:
            path = view_for(server, backend)
            l3 = tmp / f"l3-{server}"
            env = cache_env(backend, redis.port, l3)
            log = Path(args.logs) / f"{server}-{backend}.log"
            log.unlink(missing_ok=True)
            print(f"\n{server} / {backend}: {path}", flush=True)
            port = find_free_port()
            with Site(argv_for(server, port, shape), port, env, log) as site:
                site.wait_ready(path, shape.workers)
                run_client(site.port, path, args.warmup_clients, _warmup(args))
                for clients in args.clients:
                    cell = measure(site, redis, path, clients, args)
                    cell.update(server=server, backend=backend, path=path)
                    cell.update(shape=shape.__dict__, machine=_machine())
                    cells.append(cell)
                    with out.open("a") as fh:
                        fh.write(json.dumps(cell) + "\n")
                    print_cell(cell, header=clients == args.clients[0])
                    time.sleep(args.pause)  # let the last connections close
    return cells


def run_profile(args: argparse.Namespace, tmp: Path, redis: RedisServer) -> dict:
    """One gunicorn sync worker under pyinstrument, serving the tiered cache."""
    shape = ServerShape(workers=1, threads=1, backlog=args.backlog)
    profile_dir = tmp / "profile"
    profile_dir.mkdir()
    env = cache_env("tiered", redis.port, tmp / "l3-profile")
    env.update(LOAD_PROFILE_DIR=str(profile_dir), LOAD_PROFILE_SKIP=str(args.skip))
    path = view_for("sync", "tiered")
    config = str(BENCH / "load_profile.py")
    log = Path(args.logs) / "profile.log"
    log.unlink(missing_ok=True)
    port = find_free_port()
    with Site(argv_for("sync", port, shape, config), port, env, log) as site:
        site.wait_ready(path, shape.workers)
        run_client(site.port, path, 4, _warmup(args))  # past LOAD_PROFILE_SKIP
        cell = run_client(site.port, path, args.profile_clients, args)
    records = load_profile.load_records(profile_dir)
    if not records:
        raise RuntimeError(f"no profile saved:\n{log.read_text()[-3000:]}")
    result = {"profile": load_profile.shares(records), "load": cell}
    result.update(server="sync", workers=1, backend="tiered", machine=_machine())
    return result


def _warmup(args: argparse.Namespace) -> argparse.Namespace:
    return argparse.Namespace(
        seconds=args.warmup, timeout=args.timeout, max_requests=None
    )


def _machine() -> dict:
    """What the cell ran on; ``load1`` (the benchmark counts in it) says how busy."""
    return {
        "python": platform.python_version(),
        "cpus": len(os.sched_getaffinity(0)),
        "load1": round(os.getloadavg()[0], 2),
    }


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    listed = lambda s: [x for x in s.split(",") if x]  # noqa: E731
    parser.add_argument(
        "--clients",
        type=lambda s: [int(x) for x in listed(s)],
        default=[100, 1000, 10000],
        help="levels, comma separated",
    )
    parser.add_argument("--seconds", type=float, default=15.0, help="per cell")
    parser.add_argument(
        "--max-requests",
        type=int,
        default=0,
        help="per cell (0: bounded by --seconds only)",
    )
    parser.add_argument("--servers", type=listed, default=list(SERVERS))
    parser.add_argument("--backends", type=listed, default=list(BACKENDS))
    parser.add_argument("--workers", type=int, default=4)
    parser.add_argument("--threads", type=int, default=32, help="gthread only")
    parser.add_argument("--backlog", type=int, default=4096)
    parser.add_argument(
        "--keep-alive",
        type=int,
        default=None,
        help="seconds (default: the server's, gunicorn 2, uvicorn 5)",
    )
    parser.add_argument(
        "--timeout",
        type=float,
        default=10.0,
        help="per request and per connect, seconds",
    )
    parser.add_argument("--warmup", type=float, default=2.0, help="seconds per site")
    parser.add_argument("--warmup-clients", type=int, default=50)
    parser.add_argument("--pause", type=float, default=2.0, help="between cells")
    parser.add_argument("--out", default=str(BENCH / "out" / "load.jsonl"))
    parser.add_argument("--chart", default=str(BENCH / "out" / "load.png"))
    parser.add_argument(
        "--logs",
        default=str(BENCH / "out" / "load-logs"),
        help="the servers' output, one file per server and backend",
    )
    parser.add_argument(
        "--profile",
        action="store_true",
        help="CPU share of tiered_cache (one sync worker)",
    )
    parser.add_argument("--profile-clients", type=int, default=4)
    parser.add_argument(
        "--skip",
        type=int,
        default=200,
        help="--profile: requests served before sampling starts",
    )
    args = parser.parse_args(argv)  # fmt: skip
    for name, known in (("servers", SERVERS), ("backends", BACKENDS)):
        unknown = set(getattr(args, name)) - set(known)
        if unknown:
            parser.error(f"--{name}: unknown {', '.join(sorted(unknown))}")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    needed = max(args.clients) + 256
    limit = raise_fd_limit(needed)  # inherited by the servers and the client
    if limit < needed:
        print(f"RLIMIT_NOFILE is {limit}: {max(args.clients)} clients need {needed}")
        return 2
    Path(args.logs).mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="bench-load-") as name:
        tmp = Path(name)
        with RedisServer.start(tmp / "redis") as redis:
            if args.profile:
                result = run_profile(args, tmp, redis)
                print_profile(result)
                Path(args.out).parent.mkdir(parents=True, exist_ok=True)
                with Path(args.out).open("a") as fh:
                    fh.write(json.dumps(result) + "\n")
                return 0
            cells = run_matrix(args, tmp, redis)
    print_ratios(cells)
    write_chart(cells, Path(args.chart))
    print(f"\n{len(cells)} cells appended to {args.out}; chart: {args.chart}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
