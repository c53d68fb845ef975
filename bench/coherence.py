"""How long other processes keep reading a replaced value (the invalidation bus).

One writer process sets ``k`` to 0, 1, 2... every 20 ms; four reader processes
read ``k`` as fast as they can through L1 + L2 (a redis-server of our own, bus
on). For each version ``v``, its *staleness* is how long after ``set(v + 1)``
returned any reader still read ``v`` (0 when none did). The scenarios run the
same traffic on a healthy server, while the bus connections are killed every
100 ms (``CLIENT KILL TYPE normal``), and across a restart that loses the data.

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


def healthy(server: RedisServer, stop: threading.Event) -> None:
    stop.wait()


def kill_bus_connections(server: RedisServer, stop: threading.Event) -> None:
    admin = server.client(0)
    while not stop.wait(0.1):
        admin.client_kill_filter(_type="normal", skipme=True)


def restart_empty(server: RedisServer, stop: threading.Event) -> None:
    if not stop.wait(1.0):
        server.restart()
    stop.wait()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=4.0)
    args = parser.parse_args()
    print(f"{'scenario':<28} {'versions':>8} {'p50 ms':>8} {'p99 ms':>8} {'max ms':>8}")
    with tempfile.TemporaryDirectory() as tmp:
        for name, fault in (
            ("healthy", healthy),
            ("CLIENT KILL every 100 ms", kill_bus_connections),
            ("restart, data lost", restart_empty),
        ):
            with RedisServer.start(Path(tmp) / name.replace(" ", "_")) as server:
                values = run(server, Path(tmp) / f"{name[:7]}-out", args.seconds, fault)
            p99 = values[min(len(values) - 1, int(len(values) * 0.99))]
            print(
                f"{name:<28} {len(values):>8} {statistics.median(values) * 1e3:>8.1f} "
                f"{p99 * 1e3:>8.1f} {values[-1] * 1e3:>8.1f}"
            )


if __name__ == "__main__":
    main()
