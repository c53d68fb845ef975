"""One process of the stampede acceptance test (``tests/test_stampede.py``).

Run as ``python -m tests.support.stampede_worker REDIS_URL KEY_PREFIX COUNT_FILE
THREADS WORK_SECONDS``. It configures Django with one TieredCache over
``[L1, L2 at REDIS_URL]``, starts THREADS threads that each hold their own
backend instance (as Django gives one per thread) and wait for one event, and
prints ``ready``. When a line arrives on stdin, every thread calls
``get_or_set`` on the same cold key, whose computation appends a line to
COUNT_FILE (pid, seconds since the start signal) and takes WORK_SECONDS.
Then it prints one JSON line: this process's results (value right or wrong,
seconds from the start signal to the caller's answer, so time spent waiting
for the CPU counts too) and the L2 counters.

``run_processes`` starts several such processes, releases them together and
collects their reports: the acceptance test and ``bench/stampede.py`` share it.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import time
import uuid
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]

KEY = "stampede-acceptance"
VALUE = {"answer": 42, "rows": list(range(10))}


def main(url: str, prefix: str, count_file: str, threads: int, work: float) -> None:
    import django
    from django.conf import settings

    settings.configure(
        SECRET_KEY="tiered-cache-tests-only",  # as tests/settings.py: shared records
        CACHES={
            "default": {
                "BACKEND": "tiered_cache.TieredCache",
                "KEY_PREFIX": prefix,
                "OPTIONS": {
                    "TIERS": [
                        {"NAME": "l1", "BACKEND": "tiered_cache.tiers.MemoryTier"},
                        {
                            "NAME": "l2",
                            "BACKEND": "django_redis.cache.RedisCache",
                            "LOCATION": url,
                        },
                    ]
                },
            }
        },
    )
    django.setup()
    from django.core.cache import caches

    caches["default"].get("warm-up")  # build the chain, open one connection

    def compute() -> dict:
        with open(count_file, "a") as fh:
            fh.write(f"{os.getpid()} {time.perf_counter() - started[0]:.3f}\n")
        time.sleep(work)  # the expensive computation being protected
        return VALUE

    go = threading.Event()
    started: list[float] = []  # when the start signal came (before any caller ran)
    results: list[tuple[bool, float, str]] = []
    lock = threading.Lock()

    def caller() -> None:
        cache = caches["default"]  # this thread's own backend instance
        go.wait()
        try:
            value = cache.get_or_set(KEY, compute, 60)
            outcome = (value == VALUE, time.perf_counter() - started[0], "")
        except Exception as exc:  # reported, not raised: the parent judges
            outcome = (False, time.perf_counter() - started[0], repr(exc))
        with lock:
            results.append(outcome)

    workers = [threading.Thread(target=caller) for _ in range(threads)]
    for worker in workers:
        worker.start()
    print("ready", flush=True)
    sys.stdin.readline()
    started.append(time.perf_counter())
    go.set()
    for worker in workers:
        worker.join()
    stats = caches["default"].stats()["l2"]
    print(json.dumps({"pid": os.getpid(), "results": results, "l2": stats}))


@dataclass
class Outcome:
    """What one acceptance run gave, over every process."""

    results: list[tuple[bool, float, str]]  # (right value, seconds, error)
    computations: int
    per_process_slowest: list[float]
    leases_granted: list[int]

    @property
    def slowest(self) -> float:
        return max(took for _, took, _ in self.results)

    @property
    def errors(self) -> list[str]:
        return [error for ok, _, error in self.results if not ok]


def run_processes(
    redis_url: str,
    workdir: Path,
    *,
    processes: int = 4,
    threads: int = 50,
    work: float = 0.3,
) -> Outcome:
    """Run ``processes`` workers of ``threads`` callers each on one cold key."""
    count_file = workdir / f"computations-{uuid.uuid4().hex[:8]}"
    count_file.touch()
    env = {k: v for k, v in os.environ.items() if k != "DJANGO_SETTINGS_MODULE"}
    prefix = f"acceptance-{uuid.uuid4().hex[:8]}"
    argv = [
        sys.executable,
        *("-m", "tests.support.stampede_worker"),
        *(redis_url, prefix, str(count_file), str(threads), str(work)),
    ]
    workers = [
        subprocess.Popen(
            argv,
            cwd=ROOT,
            env=env,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for _ in range(processes)
    ]
    try:
        for worker in workers:
            line = worker.stdout.readline()  # "" if it died: stderr says why
            if line.strip() != "ready":
                raise RuntimeError(worker.communicate(timeout=30)[1])
        for worker in workers:
            worker.stdin.write("go\n")
            worker.stdin.flush()
        reports = []
        for worker in workers:
            out, err = worker.communicate(timeout=60)
            if worker.returncode != 0:
                raise RuntimeError(err)
            reports.append(json.loads(out.strip().splitlines()[-1]))
    finally:
        for worker in workers:
            if worker.poll() is None:
                worker.kill()
                worker.wait()
    return Outcome(
        results=[tuple(r) for report in reports for r in report["results"]],
        computations=len(count_file.read_text().splitlines()),
        per_process_slowest=[
            max(took for _, took, _ in report["results"]) for report in reports
        ],
        leases_granted=[report["l2"]["leases"] for report in reports],
    )


if __name__ == "__main__":
    url, prefix, count_file, threads, work = sys.argv[1:6]
    main(url, prefix, count_file, int(threads), float(work))
