"""The load generator of ``bench/load.py``: N keep-alive HTTP clients on loopback.

Runs in a process of its own (``bench/load.py`` starts it), so it never shares
a GIL with the server it measures. One asyncio task per client (uvloop when it
is installed) opens a connection, sends ``GET`` after ``GET`` on it and opens a
new one when the server closes it (gunicorn's sync workers close after every
response) or a request fails. 10 000 clients are 10 000 sockets: the script
raises its soft ``RLIMIT_NOFILE`` to the hard limit and says so when that is
too low.

Why not wrk: wrk counts a connection the server never accepted as nothing at
all. Here every client is accounted for at the end:

* ``served``: clients that got at least one 2xx answer; ``never_served`` the
  rest (``clients - served``);
* ``errors`` by kind: ``refused``, ``reset``, ``connect_timeout``, ``timeout``
  (no answer within ``--timeout``), ``closed`` (the server closed before
  answering), ``other``;
* ``pending_requests`` (sent, unanswered when the run ended) and
  ``pending_connects`` (a connect still waiting: a handshake the server's full
  accept queue dropped is retried by the kernel for seconds, so it shows here
  rather than as an error).

A request's latency runs from the moment the client wanted to send it: when it
had to connect first, the connect (and any wait in the accept queue) counts.
The run ends after ``--seconds`` or once ``--max-requests`` requests were sent
and answered, whichever comes first. The result is one JSON object on stdout.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import ipaddress
import json
import resource
import sys
import time
from collections import Counter
from dataclasses import dataclass, field

ERROR_KINDS = ("refused", "reset", "connect_timeout", "timeout", "closed", "other")
#: Waits between two failed connects of one client, so a refusing server is
#: not hammered in a tight loop (the kernel already retries dropped SYNs).
RETRY_DELAY = 0.05


def raise_fd_limit(needed: int) -> int:
    """Raise the soft RLIMIT_NOFILE to the hard limit; return the new soft limit."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    target = hard if hard != resource.RLIM_INFINITY else max(soft, needed)
    if soft < target:
        resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
        soft = target
    return soft


@dataclass
class Tally:
    """What the clients counted; read once, after every task ended."""

    started: float = 0.0
    latencies: list[float] = field(default_factory=list)
    statuses: Counter = field(default_factory=Counter)
    errors: Counter = field(default_factory=Counter)
    connects: int = 0
    sent: int = 0
    pending_requests: int = 0
    pending_connects: int = 0
    served: set[int] = field(default_factory=set)
    #: Set at the end of the run: an answer a task gets while it unwinds is not
    #: counted, so the counts and the pending ones describe the same moment.
    frozen: bool = False


class Budget:
    """At most ``limit`` requests in all; ``done`` is set when every one answered."""

    def __init__(self, limit: int | None) -> None:
        self.left = limit
        self.outstanding = 0
        self.closed = False
        self.done = asyncio.Event()

    def close(self) -> None:
        """Refuse every later request (the run is over)."""
        self.closed = True

    def take(self) -> bool:
        if self.closed:
            return False
        if self.left is not None:
            if self.left <= 0:
                return False
            self.left -= 1
        self.outstanding += 1
        return True

    def give_back(self) -> None:
        self.outstanding -= 1
        if self.left == 0 and self.outstanding == 0:
            self.done.set()


async def read_response(reader: asyncio.StreamReader) -> tuple[int, bool]:
    """Read one HTTP/1.x response; return its status and whether to keep the socket."""
    head = await reader.readuntil(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    version, status = lines[0].split(" ", 2)[:2]
    headers = {}
    for line in lines[1:]:
        name, sep, value = line.partition(":")
        if sep:
            headers[name.strip().lower()] = value.strip().lower()
    keep = version == "HTTP/1.1" and headers.get("connection") != "close"
    if "content-length" in headers:
        await reader.readexactly(int(headers["content-length"]))
    elif headers.get("transfer-encoding") == "chunked":
        while True:
            size = int((await reader.readuntil(b"\r\n")).split(b";")[0], 16)
            await reader.readexactly(size + 2)
            if size == 0:
                break
    else:
        await reader.read()  # the body runs to the end of the connection
        keep = False
    return int(status), keep


if sys.version_info >= (3, 11):

    async def within(seconds: float, awaitable):
        """``awaitable``'s result, or TimeoutError after ``seconds``.

        ``asyncio.timeout`` runs it in the calling task; ``wait_for`` (before
        3.12) wraps it in a task of its own, which costs more than the rest of
        a request here.
        """
        async with asyncio.timeout(seconds):
            return await awaitable

else:  # pragma: no cover - Python 3.10

    async def within(seconds: float, awaitable):
        return await asyncio.wait_for(awaitable, seconds)


class Client:
    """One simulated user: requests back to back on a kept-alive connection."""

    def __init__(self, number: int, args: argparse.Namespace, tally: Tally) -> None:
        self.number = number
        self.args = args
        self.tally = tally
        self.request = (
            f"GET {args.path} HTTP/1.1\r\nHost: {args.host}:{args.port}\r\n"
            "User-Agent: bench-load\r\n\r\n"
        ).encode()

    async def run(self, budget: Budget) -> None:
        reader = writer = None
        try:
            while True:
                wanted = time.perf_counter()
                if budget.closed:
                    return
                if writer is None:
                    try:
                        reader, writer = await self._connect()
                    except _Failed as failed:
                        self._failed(failed)
                        await asyncio.sleep(RETRY_DELAY)
                        continue
                if not budget.take():
                    return
                try:
                    keep = await self._exchange(reader, writer, wanted)
                except _Failed as failed:
                    self._failed(failed)
                    keep = False
                finally:
                    budget.give_back()
                if not keep:
                    writer.close()
                    reader = writer = None
        finally:
            if writer is not None:
                writer.close()

    def _failed(self, failed: _Failed) -> None:
        if not self.tally.frozen:
            self.tally.errors[failed.kind] += 1

    async def _connect(self):
        self.tally.pending_connects += 1
        try:
            connected = await within(
                self.args.connect_timeout,
                asyncio.open_connection(self.args.host, self.args.port),
            )
        except ConnectionRefusedError as exc:
            raise _Failed("refused") from exc
        except ConnectionResetError as exc:
            raise _Failed("reset") from exc
        except asyncio.TimeoutError as exc:
            raise _Failed("connect_timeout") from exc
        except OSError as exc:
            raise _Failed("other") from exc
        finally:
            self.tally.pending_connects -= 1
        self.tally.connects += 1
        return connected

    async def _exchange(self, reader, writer, wanted: float) -> bool:
        self.tally.pending_requests += 1
        self.tally.sent += 1
        try:
            writer.write(self.request)
            status, keep = await within(self.args.timeout, read_response(reader))
        except asyncio.TimeoutError as exc:
            raise _Failed("timeout") from exc
        except (asyncio.IncompleteReadError, BrokenPipeError) as exc:
            raise _Failed("closed") from exc
        except ConnectionResetError as exc:
            raise _Failed("reset") from exc
        except (OSError, ValueError, asyncio.LimitOverrunError) as exc:
            raise _Failed("other") from exc
        finally:
            self.tally.pending_requests -= 1
        if self.tally.frozen:
            return False
        self.tally.latencies.append(time.perf_counter() - wanted)
        self.tally.statuses[status] += 1
        if 200 <= status < 300:
            self.tally.served.add(self.number)
        return keep


class _Failed(Exception):
    def __init__(self, kind: str) -> None:
        super().__init__(kind)
        self.kind = kind


def percentile(ordered: list[float], share: float) -> float | None:
    """The nearest-rank percentile of an ascending list (None when empty)."""
    if not ordered:
        return None
    rank = max(1, int(-(-share * len(ordered) // 1)))  # ceil
    return ordered[min(rank, len(ordered)) - 1]


async def drive(args: argparse.Namespace) -> dict:
    """Run the clients for the time and request budget; return the summary."""
    tally = Tally(started=time.perf_counter())
    budget = Budget(args.max_requests)
    clients = [Client(n, args, tally) for n in range(args.clients)]
    tasks = [asyncio.ensure_future(c.run(budget)) for c in clients]
    finished = asyncio.ensure_future(budget.done.wait())
    everyone = asyncio.gather(*tasks, return_exceptions=True)
    await asyncio.wait(
        [finished, everyone], timeout=args.seconds, return_when=asyncio.FIRST_COMPLETED
    )
    elapsed = time.perf_counter() - tally.started
    tally.frozen = True
    # Counted before the cancellation unwinds them.
    pending_requests, pending_connects = tally.pending_requests, tally.pending_connects
    # Closing the budget also ends a client that swallowed its cancellation
    # (asyncio.wait_for before 3.12 may return a result it got as it was
    # cancelled, and the loop would go on).
    budget.close()
    for task in tasks:
        task.cancel()
    results = await everyone
    finished.cancel()
    crashed = [r for r in results if isinstance(r, Exception)]
    return summarize(args, tally, elapsed, pending_requests, pending_connects, crashed)


def summarize(
    args: argparse.Namespace,
    tally: Tally,
    elapsed: float,
    pending_requests: int,
    pending_connects: int,
    crashed: list[BaseException],
) -> dict:
    ordered = sorted(tally.latencies)
    ok = sum(n for status, n in tally.statuses.items() if 200 <= status < 300)
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return {
        "clients": args.clients,
        "seconds": round(elapsed, 3),
        "sent": tally.sent,
        "completed": ok,
        "non_2xx": sum(tally.statuses.values()) - ok,
        "statuses": {str(k): v for k, v in sorted(tally.statuses.items())},
        "errors": {kind: tally.errors.get(kind, 0) for kind in ERROR_KINDS},
        "connects": tally.connects,
        "served": len(tally.served),
        "never_served": args.clients - len(tally.served),
        "pending_requests": pending_requests,
        "pending_connects": pending_connects,
        "throughput": round(ok / elapsed, 1) if elapsed > 0 else 0.0,
        "p50_ms": _ms(percentile(ordered, 0.50)),
        "p95_ms": _ms(percentile(ordered, 0.95)),
        "p99_ms": _ms(percentile(ordered, 0.99)),
        "max_ms": _ms(ordered[-1] if ordered else None),
        "client_cpu_s": round(usage.ru_utime + usage.ru_stime, 3),
        "client_crashes": [repr(c) for c in crashed[:5]],
    }


def _ms(seconds: float | None) -> float | None:
    return None if seconds is None else round(seconds * 1000, 3)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--path", default="/")
    parser.add_argument("--clients", type=int, default=100)
    parser.add_argument("--seconds", type=float, default=10.0, help="run length")
    parser.add_argument("--max-requests", type=int, default=None)
    parser.add_argument("--timeout", type=float, default=10.0, help="per request")
    parser.add_argument("--connect-timeout", type=float, default=10.0)
    parser.add_argument("--no-uvloop", action="store_true")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.host != "localhost" and not ipaddress.ip_address(args.host).is_loopback:
        print("load_client: loopback only", file=sys.stderr)
        return 2
    limit = raise_fd_limit(args.clients + 64)
    if limit < args.clients + 64:
        print(f"load_client: RLIMIT_NOFILE {limit} < {args.clients} clients + 64")
        return 2
    if not args.no_uvloop:
        with contextlib.suppress(ImportError):
            import uvloop

            asyncio.set_event_loop_policy(uvloop.EventLoopPolicy())
    summary = asyncio.run(drive(args))
    json.dump(summary, sys.stdout)
    print()
    return 0


if __name__ == "__main__":
    sys.exit(main())
