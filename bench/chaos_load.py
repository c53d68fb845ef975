"""The load generator of ``bench/chaos.py``: one writer and several readers over HTTP.

Runs in a process of its own (started by ``bench/chaos.py``), so its threads
never share a GIL with the faults being injected or with the site. Every thread
keeps its own keep-alive ``http.client`` connections to the site (one per URL:
each URL is a gunicorn, i.e. a "machine"); a failed request closes its
connection and the next one opens a new one.

Keys, under a per-scenario prefix:

* *hot* keys ``h0..`` are rewritten round robin by the writer, one write every
  ``--write-interval`` seconds, versions 1, 2, 3...;
* *once* keys ``o0..`` get version 1 at the start and version 2 exactly once,
  spread over the fault window, and never again: if the message announcing that
  write is lost, no later write hides the loss (the readers keep reading them).

The one writer is sequential, so a key's version ``v + 1`` is sent only after
``v`` answered (what ``chaos_oracle`` relies on). Readers pick keys at random.
Everything is timed with ``time.monotonic()`` (one clock for every process on
the machine, so the faults' times from ``bench/chaos.py`` compare with these).
The run ends at ``--seconds`` or after ``--max-requests``; the records go to
``--out`` as JSON.
"""

from __future__ import annotations

import argparse
import http.client
import itertools
import json
import random
import sys
import threading
import time
from collections.abc import Callable
from urllib.parse import quote, urlsplit

TIMEOUT = 10.0


class Client:
    """Keep-alive connections to every site URL; reconnects after a failure."""

    def __init__(self, urls: list[str]) -> None:
        self.targets = [urlsplit(u) for u in urls]
        self.connections: dict[int, http.client.HTTPConnection] = {}

    def request(self, target: int, method: str, path: str) -> tuple[int, str, str]:
        """Return the status, the body and the X-Worker header (who answered)."""
        conn = self.connections.get(target)
        if conn is None:
            parts = self.targets[target]
            conn = http.client.HTTPConnection(
                parts.hostname, parts.port, timeout=TIMEOUT
            )
            self.connections[target] = conn
        try:
            conn.request(method, path, headers={"Content-Length": "0"})
            response = conn.getresponse()
            body = response.read().decode()
        except (OSError, http.client.HTTPException):
            conn.close()
            del self.connections[target]
            raise
        if response.will_close:
            conn.close()
            del self.connections[target]
        return response.status, body, response.getheader("X-Worker", "")


class Load:
    def __init__(self, args: argparse.Namespace) -> None:
        self.args = args
        self.urls: list[str] = args.url
        self.stop = threading.Event()
        self.crashed = False
        self.budget = itertools.count()
        self.writes: list[list] = []
        self.reads: list[list] = []
        prefix = args.prefix
        self.hot = [f"{prefix}:h{i}" for i in range(args.hot_keys)]
        self.once = [f"{prefix}:o{i}" for i in range(args.once_keys)]
        self.keys = self.hot + self.once

    def spend(self) -> bool:
        """Count one request; False once the run is over (time or count)."""
        if next(self.budget) >= self.args.max_requests:
            self.stop.set()
        return not self.stop.is_set()

    def write(self, client: Client, target: int, key: str, version: int) -> None:
        path = f"/chaos/set?key={quote(key)}&value={version}"
        sent = time.monotonic()
        error = worker = ""
        try:
            status, body, worker = client.request(target, "POST", path)
            if status != 200:
                error = f"HTTP {status}: {body[:80]}"
        except (OSError, http.client.HTTPException) as exc:
            error = repr(exc)[:120]
        answered = time.monotonic()
        self.writes.append([key, version, sent, answered, not error, error, worker])

    def writer(self) -> None:
        # Several connections per site, used in turn: each is accepted by some
        # worker, so the writes come from several processes, not just one.
        args = self.args
        client = Client(self.urls * args.write_connections)
        targets = itertools.cycle(range(len(client.targets)))
        versions = dict.fromkeys(self.keys, 0)
        start = args.start
        window = args.fault_for or 1.0
        due = [
            start + args.fault_at + window * (i + 0.5) / max(1, len(self.once))
            for i in range(len(self.once))
        ]
        for key in self.keys:  # version 1 of everything, before the fault
            versions[key] = 1
            self.write(client, next(targets), key, 1)
        hot = itertools.cycle(self.hot)
        pending = list(zip(due, self.once, strict=True))
        while self.spend():
            now = time.monotonic()
            if pending and pending[0][0] <= now:
                _, key = pending.pop(0)
            else:
                key = next(hot)
            versions[key] += 1
            self.write(client, next(targets), key, versions[key])
            self.stop.wait(args.write_interval)

    def reader(self, seed: int) -> None:
        rng, client = random.Random(seed), Client(self.urls)
        while self.spend():
            key = rng.choice(self.keys)
            target = rng.randrange(len(self.urls))
            sent = time.monotonic()
            version, error, worker = None, "", ""
            try:
                status, body, worker = client.request(
                    target, "GET", f"/chaos/get?key={quote(key)}"
                )
                if status != 200:
                    error = f"HTTP {status}: {body[:80]}"
                elif body:
                    version = int(body)
            except (OSError, http.client.HTTPException, ValueError) as exc:
                error = repr(exc)[:120]
            answered = time.monotonic()
            self.reads.append([key, sent, answered, version, error, worker])

    def guard(self, target: Callable[..., None], *args: object) -> None:
        """A thread that dies ends the run as a failure, not as a quiet one."""
        try:
            target(*args)
        except BaseException:
            self.crashed = True
            self.stop.set()
            raise

    def run(self) -> dict:
        args = self.args
        delay = args.start - time.monotonic()
        if delay > 0:
            time.sleep(delay)
        threads = [threading.Thread(target=self.guard, args=(self.writer,))]
        threads += [
            threading.Thread(target=self.guard, args=(self.reader, i))
            for i in range(args.readers)
        ]
        for thread in threads:
            thread.start()
        self.stop.wait(args.seconds)
        self.stop.set()
        for thread in threads:
            thread.join()
        return {"writes": self.writes, "reads": self.reads}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--url", action="append", required=True)
    parser.add_argument("--out", required=True)
    parser.add_argument("--prefix", default="s")
    parser.add_argument("--start", type=float, default=0.0, help="monotonic time")
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--fault-at", type=float, default=3.0)
    parser.add_argument("--fault-for", type=float, default=3.0)
    parser.add_argument("--readers", type=int, default=4)
    parser.add_argument("--hot-keys", type=int, default=16)
    parser.add_argument("--once-keys", type=int, default=16)
    parser.add_argument("--write-interval", type=float, default=0.01)
    parser.add_argument("--write-connections", type=int, default=4)
    parser.add_argument("--max-requests", type=int, default=200_000)
    args = parser.parse_args()
    if not args.start:
        args.start = time.monotonic()
    load = Load(args)
    records = load.run()
    if load.crashed:
        sys.exit("chaos_load: a load thread crashed (traceback above)")
    with open(args.out, "w") as fh:
        json.dump(records, fh)


if __name__ == "__main__":
    main()
