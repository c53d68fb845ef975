"""How long other processes keep reading a replaced value (the invalidation bus).

One writer process sets ``k`` to 0, 1, 2... every 20 ms; four reader processes
read ``k`` as fast as they can through L1 + L2 (a redis-server of our own, bus
on). For each version ``v``, its *staleness* is how long after ``set(v + 1)``
returned any reader still read ``v`` (0 when none did). The scenarios run the
same traffic on a healthy server, while the bus connections are killed every
100 ms (``CLIENT KILL TYPE normal``), and across a restart that loses the data.

Keys written once: there a later write would hide a lost announcement (the
next version's message drops the copy anyway). So the writer sets 300 keys
to 1, the readers copy them into L1, then the writer sets each key to 2 *once*,
one every 10 ms, while the same faults run (and one more: only the
connections blocked in ``XREAD``, the listeners', are killed every 100 ms). A
key's staleness is how long after its ``set(2)`` returned any reader still
read 1; a lost message would show as the whole rest of the run (over 4 s). A
set that did not reach Redis (its connection killed in flight, or skipped by
an open breaker) is left out of the percentiles and counted in ``L2 missed``:
L2 still holds 1 then, which is the outage journal's case, not the bus's.

Run from the repository root: ``python bench/coherence.py [--seconds 4]``.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))  # the test suite's redis-server launcher

from tests.support.redis_servers import RedisServer  # noqa: E402

WORKER = ROOT / "tests" / "coherence_worker.py"
READERS = 4
ONCE_KEYS = 300
ONCE_PAUSE = 1.0  # s between the first and the second writes
ONCE_TAIL = 4.0  # s the readers go on reading after the last write


def run(server: RedisServer, out: Path, seconds: float, fault) -> list[float]:
    env = {**os.environ, "PYTHONPATH": str(ROOT), "REDIS_URL": server.url(3)}
    out.mkdir()
    readers = [
        subprocess.Popen(
            [sys.executable, str(WORKER), "read", str(out / f"r{i}"), str(seconds + 1)],
            env=env,
        )
        for i in range(READERS)
    ]
    time.sleep(0.5)  # readers start and warm their L1s
    stop = threading.Event()
    injector = threading.Thread(target=fault, args=(server, stop), daemon=True)
    injector.start()
    subprocess.run(
        [sys.executable, str(WORKER), "write", str(out / "w"), str(seconds)],
        env=env,
        check=True,
    )
    stop.set()
    injector.join()
    for reader in readers:
        reader.wait(timeout=60)
    written = {
        int(v): float(t) for v, t in (line.split() for line in (out / "w").open())
    }
    worst: dict[int, float] = {v: 0.0 for v in written if v + 1 in written}
    for i in range(READERS):
        for line in (out / f"r{i}").open():
            at, version = line.split()
            v = int(version)
            if v in worst:
                worst[v] = max(worst[v], float(at) - written[v + 1])
    return sorted(worst.values())


def run_once(server: RedisServer, out: Path, fault) -> tuple[list[float], list[float]]:
    """Keys written once; return the staleness of those L2 took, and the rest."""
    env = {**os.environ, "PYTHONPATH": str(ROOT), "REDIS_URL": server.url(3)}
    out.mkdir()
    seconds = 0.5 + ONCE_PAUSE + ONCE_KEYS * 0.012 + ONCE_TAIL
    readers = [
        subprocess.Popen(
            [sys.executable, str(WORKER), "read-once", str(out / f"r{i}")]
            + [str(seconds), str(ONCE_KEYS)],
            env=env,
        )
        for i in range(READERS)
    ]
    time.sleep(0.5)
    stop = threading.Event()
    injector = threading.Thread(target=fault, args=(server, stop), daemon=True)
    injector.start()
    subprocess.run(
        [sys.executable, str(WORKER), "write-once", str(out / "w")]
        + [str(ONCE_PAUSE), str(ONCE_KEYS)],
        env=env,
        check=True,
    )
    stop.set()
    injector.join()
    for reader in readers:
        reader.wait(timeout=60)
    written = {}
    for line in (out / "w").open():
        key, at, reached = line.split()
        written[key] = (float(at), reached == "1")
    worst = dict.fromkeys(written, 0.0)
    for i in range(READERS):
        for line in (out / f"r{i}").open():
            key, at = line.split()
            if key in written:
                worst[key] = max(worst[key], float(at) - written[key][0])
    took = sorted(v for k, v in worst.items() if written[k][1])
    missed = sorted(v for k, v in worst.items() if not written[k][1])
    return took, missed


def healthy(server: RedisServer, stop: threading.Event) -> None:
    stop.wait()


def kill_bus_connections(server: RedisServer, stop: threading.Event) -> None:
    admin = server.client(0)
    while not stop.wait(0.1):
        admin.client_kill_filter(_type="normal", skipme=True)


def kill_listeners(server: RedisServer, stop: threading.Event) -> None:
    """Kill only the connections blocked in ``XREAD``: the listeners' own."""
    admin = server.client(0)
    while not stop.wait(0.1):
        for client in admin.client_list(_type="normal"):
            if client.get("cmd") == "xread":
                admin.client_kill_filter(_id=client["id"])


def restart_empty(
    server: RedisServer, stop: threading.Event, after: float = 1.0
) -> None:
    if not stop.wait(after):
        server.restart()
    stop.wait()


def kill_restart_empty(server: RedisServer, stop: threading.Event) -> None:
    """SIGKILL (a crash) in the middle of the second writes, then start empty."""
    if not stop.wait(0.5 + ONCE_PAUSE + ONCE_KEYS * 0.006):
        server.kill()
        server.restart()
    stop.wait()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=4.0)
    args = parser.parse_args()
    print(f"load average before: {os.getloadavg()}")
    print(
        f"{'scenario':<34} {'n':>5} {'p50 ms':>8} {'p99 ms':>8} {'max ms':>8}"
        f"  {'L2 missed (max ms)':>18}"
    )
    with tempfile.TemporaryDirectory() as tmp:
        for name, fault, once in (
            ("healthy", healthy, False),
            ("CLIENT KILL every 100 ms", kill_bus_connections, False),
            ("restart, data lost", restart_empty, False),
            ("once: healthy", healthy, True),
            ("once: CLIENT KILL every 100 ms", kill_bus_connections, True),
            ("once: kill XREAD conns /100 ms", kill_listeners, True),
            ("once: SIGKILL, restart empty", kill_restart_empty, True),
        ):
            folder = Path(tmp) / name.replace(" ", "_").replace(":", "").replace(
                ",", ""
            )
            missed: list[float] = []
            with RedisServer.start(folder) as server:
                if once:
                    values, missed = run_once(server, folder / "out", fault)
                else:
                    values = run(server, folder / "out", args.seconds, fault)
            p99 = values[min(len(values) - 1, int(len(values) * 0.99))]
            extra = f"{len(missed)} ({max(missed) * 1e3:.0f})" if missed else "0"
            print(
                f"{name:<34} {len(values):>5} {statistics.median(values) * 1e3:>8.1f} "
                f"{p99 * 1e3:>8.1f} {values[-1] * 1e3:>8.1f}  {extra:>18}"
            )
    print(f"load average after: {os.getloadavg()}")


if __name__ == "__main__":
    main()
