#!/usr/bin/env python
"""Faults under load: the testproject under gunicorn, checked by an oracle.

Run from the repository root (needs the ``bench`` extra and ``redis-server``)::

    .venv/bin/python bench/chaos.py                 # every scenario, ~2 minutes
    .venv/bin/python bench/chaos.py --quick         # shorter phases
    .venv/bin/python bench/chaos.py --only baseline,redis-kill --json out.json

For each topology it starts its own Redis with the test suite's launcher
(``tests/support/redis_servers.py``: free loopback ports, stopped by PID), an
L3 folder in a temp dir and the testproject under gunicorn (``--workers``
processes of ``--threads`` threads, 127.0.0.1 on a free port, configured by
environment variables, ``TESTPROJECT_CHAOS=1`` for the ``/chaos/`` views).
Then, scenario after scenario, the load generator (``bench/chaos_load.py``, a
process of its own: one writer, ``--readers`` readers, keep-alive HTTP) runs
for a bounded time and number of requests while a fault is injected:

* ``baseline``: none;
* ``redis-kill``: ``kill -9`` of Redis, restarted empty after ``--down`` seconds;
* ``redis-stop``: ``SIGSTOP`` of Redis, ``SIGCONT`` after ``--down`` seconds;
* ``bus-kill``: ``CLIENT KILL`` of every connection whose last command was
  ``XREAD`` (the bus listeners), every 250 ms for ``--down`` seconds;
* ``sentinel``: 1 master, 1 replica, 3 sentinels; ``kill -9`` of the master;
* ``cluster``: 3 masters with a replica each; ``kill -9`` of the master that
  holds the bus stream's slot.

Every response is checked by ``bench/chaos_oracle.py`` (bound, staleness,
recovery: see there). The process exits 1 when a scenario had a client error or
a stale read beyond the bound.
"""

from __future__ import annotations

import argparse
import contextlib
import http.client
import json
import platform
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
BENCH = Path(__file__).resolve().parent
sys.path.insert(0, str(ROOT))  # the test suite's redis-server launcher
sys.path.insert(0, str(BENCH))

import load_site  # noqa: E402
from chaos_oracle import BOUND, FRESH, Read, Verdict, Write, judge  # noqa: E402

from tests.support.redis_servers import (  # noqa: E402
    RedisCluster,
    RedisServer,
    SentinelGroup,
    find_free_port,
    wait_until,
)

LOAD = BENCH / "chaos_load.py"
BUS_SLOT_KEY = "{tiered_cache:bus}"  # the stream's key (INVALIDATION default)


# -- the site -------------------------------------------------------------------


class Site(load_site.Site):
    """The testproject under gunicorn gthread, with the ``/chaos/`` views."""

    def __init__(self, env: dict[str, str], tmp: Path, args: argparse.Namespace):
        port = find_free_port()
        argv = [sys.executable, "-m", "gunicorn", "testproject.wsgi:application"]
        argv += ["--bind", f"127.0.0.1:{port}", "--workers", str(args.workers)]
        argv += ["--worker-class", "gthread", "--threads", str(args.threads)]
        argv += ["--keep-alive", "30", "--timeout", "30", "--graceful-timeout", "5"]
        env = {"TESTPROJECT_CHAOS": "1", **env}
        super().__init__(argv, port, env, tmp / f"gunicorn-{port}.log")
        try:
            self.pids = self._wait_for_workers(args.workers)
        except BaseException:
            self.stop()
            raise

    def workers(self, tries: int = 60) -> dict[int, dict]:
        """Each worker's counters (the workers that ``tries`` connections reach)."""
        found: dict[int, dict] = {}
        for _ in range(tries):
            with contextlib.suppress(OSError, http.client.HTTPException):
                status, body = self.get("/chaos/worker")
                if status == 200:
                    facts = json.loads(body)
                    found[facts["pid"]] = facts["stats"]
        return found

    def _wait_for_workers(self, count: int) -> set[int]:
        seen: set[int] = set()

        def all_up() -> bool:
            if self.process.poll() is not None:
                raise RuntimeError(f"gunicorn exited:\n{self.tail()}")
            with contextlib.suppress(OSError, http.client.HTTPException):
                status, body = self.get("/chaos/worker", timeout=2)
                if status != 200:
                    raise RuntimeError(f"/chaos/worker: HTTP {status}\n{self.tail()}")
                seen.add(json.loads(body)["pid"])
            return len(seen) >= count

        try:
            wait_until(all_up, timeout=60, what=f"{count} gunicorn workers")
        except Exception as exc:
            raise RuntimeError(f"{exc}\n{self.tail()}") from exc
        return seen


# -- faults ---------------------------------------------------------------------

#: A fault gets the topology's servers and its length; returns when it ended.
Fault = Callable[[object, float], float]


def no_fault(servers: object, down: float) -> float:
    return time.monotonic()


def redis_kill(server: RedisServer, down: float) -> float:
    server.kill()
    time.sleep(down)
    server.restart()  # same port, no persistence: empty
    return time.monotonic()


def redis_stop(server: RedisServer, down: float) -> float:
    server.pause()
    time.sleep(down)
    server.resume()
    return time.monotonic()


def bus_kill(server: RedisServer, down: float) -> float:
    admin = server.client()
    killed = 0
    try:
        deadline = time.monotonic() + down
        while time.monotonic() < deadline:
            for client in admin.client_list():
                if client.get("cmd") == "xread":
                    with contextlib.suppress(Exception):
                        killed += admin.client_kill_filter(_id=client["id"])
            time.sleep(0.25)
    finally:
        admin.close()
    print(f"    bus-kill: {killed} bus connections killed", flush=True)
    return time.monotonic()


def sentinel_failover(group: SentinelGroup, down: float) -> float:
    old = group.current_master_addr()
    assert group.master is not None
    group.master.kill()
    killed = time.monotonic()
    wait_until(
        lambda: group.current_master_addr() != old,
        timeout=30,
        what="sentinel to promote the replica",
    )
    print(f"    sentinel: replica promoted {time.monotonic() - killed:.2f}s after kill")
    return killed


def cluster_master_kill(cluster: RedisCluster, down: float) -> float:
    client = cluster.nodes[0].client()
    try:
        slot = client.cluster("keyslot", BUS_SLOT_KEY)
        owner = next(
            int(port)
            for start, end, (_host, port, *_), *_ in client.execute_command(
                "CLUSTER", "SLOTS"
            )
            if int(start) <= slot <= int(end)
        )
    finally:
        client.close()
    victim = next(node for node in cluster.nodes if node.port == owner)
    victim.kill()
    killed = time.monotonic()
    survivor = next(node for node in cluster.nodes if node is not victim)

    def promoted() -> bool:
        c = survivor.client()
        try:
            return c.cluster("info").get("cluster_state") == "ok" and all(
                int(port) != owner
                for start, end, (_h, port, *_), *_ in c.execute_command(
                    "CLUSTER", "SLOTS"
                )
                if int(start) <= slot <= int(end)
            )
        finally:
            c.close()

    wait_until(promoted, timeout=30, what="the cluster to fail over")
    print(f"    cluster: slot {slot} failed over {time.monotonic() - killed:.2f}s")
    return killed


# -- topologies -----------------------------------------------------------------


@dataclass
class Scenario:
    name: str
    fault: Fault
    down: float
    #: The fault keeps L2 (the authority) from taking writes (see the oracle).
    authority_down: bool = True


@contextlib.contextmanager
def single(tmp: Path) -> Iterator[tuple[object, dict[str, str]]]:
    with RedisServer.start(tmp / "redis") as server:
        yield server, {"REDIS_URL": server.url(0)}


@contextlib.contextmanager
def sentinel(tmp: Path) -> Iterator[tuple[object, dict[str, str]]]:
    with SentinelGroup.start(tmp / "sentinel") as group:
        sentinels = ",".join(f"{h}:{p}" for h, p in group.sentinels)
        env = {"REDIS_URL": f"redis://{group.service_name}/0"}
        yield group, {**env, "REDIS_SENTINELS": sentinels}


@contextlib.contextmanager
def cluster(tmp: Path) -> Iterator[tuple[object, dict[str, str]]]:
    with RedisCluster.start(tmp / "cluster", masters=3, replicas=1) as nodes:
        yield nodes, {"REDIS_CLUSTER": ",".join(nodes.startup_urls)}


def topologies(args: argparse.Namespace) -> list[tuple[str, Callable, list[Scenario]]]:
    down = args.down
    plan = [
        (
            "single",
            single,
            [
                Scenario("baseline", no_fault, down, authority_down=False),
                Scenario("redis-kill", redis_kill, down),
                Scenario("redis-stop", redis_stop, down),
                Scenario("bus-kill", bus_kill, down + 2, authority_down=False),
            ],
        ),
        ("sentinel", sentinel, [Scenario("sentinel", sentinel_failover, down)]),
        ("cluster", cluster, [Scenario("cluster", cluster_master_kill, down)]),
    ]
    only = set(args.only.split(",")) if args.only else None
    unknown = (only or set()) - {s.name for _, _, scenarios in plan for s in scenarios}
    if unknown:
        raise SystemExit(f"--only: no scenario named {', '.join(sorted(unknown))}")
    return [
        (name, start, [s for s in scenarios if only is None or s.name in only])
        for name, start, scenarios in plan
        if only is None or any(s.name in only for s in scenarios)
    ]


# -- running --------------------------------------------------------------------


def run_scenario(
    scenario: Scenario, servers: object, sites: list[Site], tmp: Path, args
) -> Verdict:
    out = tmp / f"load-{scenario.name}.json"
    start = time.monotonic() + 1.0  # the load process is up by then
    seconds = args.before + scenario.down + args.after
    options = {
        "--out": out,
        "--prefix": scenario.name,
        "--start": repr(start),
        "--seconds": seconds,
        "--fault-at": args.before,
        "--fault-for": scenario.down,
        "--readers": args.readers,
        "--max-requests": args.max_requests,
    }
    argv = [sys.executable, str(LOAD)] + [f"--url={site.url}" for site in sites]
    load = subprocess.Popen(argv + [f"{k}={v}" for k, v in options.items()])
    time.sleep(max(0.0, start + args.before - time.monotonic()))
    fault_start = time.monotonic()
    fault_end = scenario.fault(servers, scenario.down)
    if load.wait(timeout=seconds + 60) != 0:
        raise RuntimeError(f"the load generator failed ({load.returncode})")
    records = json.loads(out.read_text())
    writes = [Write(*w) for w in records["writes"]]
    reads = [Read(*r) for r in records["reads"]]
    verdict = judge(
        writes,
        reads,
        fault_end=None if scenario.fault is no_fault else fault_end,
        outage=(fault_start, fault_end) if scenario.authority_down else None,
        origin=start,
    )
    if args.keep:
        Path(args.keep).mkdir(parents=True, exist_ok=True)
        records["start"] = start
        records["fault"] = [fault_start, fault_end]
        (Path(args.keep) / out.name).write_text(json.dumps(records))
    if scenario.fault is not no_fault:
        verdict.examples.append(
            f"fault from {fault_start - start:.2f}s to {fault_end - start:.2f}s"
            " of the load"
        )
    return verdict


HEADER = (
    f"{'scenario':<12} {'requests':>8} {'client errors':>13} "
    f"{'stale > bound':>13} {'(from ack)':>10} {'max staleness':>13} {'recovery':>9} "
    f"{'p99 latency':>11}"
)


def row(name: str, v: Verdict) -> str:
    recovery = "-" if v.recovery is None else f"{v.recovery:.2f} s"
    if not v.recovered:
        recovery = ">" + recovery  # still bad when the load stopped
    return (
        f"{name:<12} {v.requests:>8} {v.client_errors:>13} {v.stale_beyond_bound:>13} "
        f"{v.stale_beyond_from_ack:>10} {v.max_staleness * 1e3:>10.0f} ms "
        f"{recovery:>9} {v.p99_latency * 1e3:>8.1f} ms"
    )


def run_topology(
    topology: str,
    start: Callable,
    scenarios: list[Scenario],
    tmp: Path,
    args: argparse.Namespace,
    results: dict[str, dict],
    lines: list[str],
) -> None:
    """Start the servers and the sites of one topology; run its scenarios in turn."""
    print(f"{topology}: starting Redis and gunicorn", flush=True)
    with start(tmp / topology) as (servers, env), contextlib.ExitStack() as up:
        if args.no_bus:
            env["TESTPROJECT_INVALIDATION"] = "0"
        sites = []
        for machine in range(args.machines):  # one L3 folder each
            l3 = {"TESTPROJECT_L3_DIR": str(tmp / topology / f"l3-{machine}")}
            sites.append(Site({**env, **l3}, tmp, args))
            up.callback(sites[-1].stop)
        for scenario in scenarios:
            print(f"  {scenario.name} ...", flush=True)
            verdict = run_scenario(scenario, servers, sites, tmp, args)
            lines.append(row(scenario.name, verdict))
            print(HEADER + "\n" + lines[-1], flush=True)
            for note in verdict.examples:
                print(f"    e.g. {note}")
            results[scenario.name] = verdict.as_dict()
        bus = {
            pid: stats.get("bus")
            for site in sites
            for pid, stats in site.workers().items()
        }
        results[f"{topology}:workers"] = bus
        print(f"  bus counters per worker: {bus}", flush=True)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="short phases")
    parser.add_argument("--only", help="comma-separated scenario names")
    parser.add_argument("--json", help="write the results here")
    parser.add_argument(
        "--machines", type=int, default=1, help="gunicorns, each with its own L3"
    )
    parser.add_argument("--workers", type=int, default=3, help="per machine")
    parser.add_argument("--threads", type=int, default=4)
    parser.add_argument("--readers", type=int, default=4)
    parser.add_argument("--before", type=float, help="seconds of load before a fault")
    parser.add_argument("--down", type=float, help="seconds a fault lasts")
    parser.add_argument("--after", type=float, help="seconds of load after it")
    parser.add_argument("--max-requests", type=int, default=100_000)
    parser.add_argument("--keep", help="keep every request's record in this folder")
    parser.add_argument(
        "--no-bus",
        action="store_true",
        help="turn the invalidation bus off (shows that the oracle bites)",
    )
    args = parser.parse_args()
    defaults = (1.5, 2.0, 4.0) if args.quick else (3.0, 4.0, 10.0)
    for name, value in zip(("before", "down", "after"), defaults, strict=True):
        if getattr(args, name) is None:
            setattr(args, name, value)

    print(
        f"bound {BOUND:.0f} s (2 x HEARTBEAT + 1); fresh = staleness <= "
        f"{FRESH * 1e3:.0f} ms; {args.workers} gunicorn workers x {args.threads} "
        f"threads; 1 writer + {args.readers} readers",
        flush=True,
    )
    results: dict[str, dict] = {}
    lines: list[str] = []
    began = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="chaos-") as name:
        for topology, start, scenarios in topologies(args):
            run_topology(topology, start, scenarios, Path(name), args, results, lines)
    took = time.monotonic() - began
    print(f"\n{HEADER}\n" + "\n".join(lines))
    print(f"took {took:.0f} s; python {platform.python_version()}")
    if args.json:
        results["_meta"] = {"took": took, "args": vars(args), "bound": BOUND}
        Path(args.json).write_text(json.dumps(results, indent=2, default=str))
    failed = any(
        v["client_errors"] or v["stale_beyond_bound"]
        for k, v in results.items()
        if not k.startswith("_") and "client_errors" in (v or {})
    )
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
