"""bench/load_client.py counts what a server did to its clients, exactly.

Tiny asyncio servers in the test's own event loop (no gunicorn): one that
answers, fails and drops on a schedule it counts itself, one that serves only
its first connections and holds the rest, a port nobody listens on, and a
listening socket that never accepts (its full accept queue drops handshakes).
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
import sys
from collections import Counter
from pathlib import Path

BENCH = Path(__file__).resolve().parents[1] / "bench"
sys.path.insert(0, str(BENCH))

from load import listen_counters  # noqa: E402
from load_client import drive, parse_args, percentile  # noqa: E402
from load_profile import shares  # noqa: E402

OK = b"HTTP/1.1 200 OK\r\nContent-Length: 3\r\n\r\nok\n"
BUSY = b"HTTP/1.1 503 Busy\r\nContent-Length: 0\r\n\r\n"
CLOSE = b"HTTP/1.1 200 OK\r\nConnection: close\r\nContent-Length: 3\r\n\r\nok\n"


def run(handler, *options: str, release: asyncio.Event | None = None) -> dict:
    """Serve ``handler`` on a free loopback port and drive it with ``options``.

    ``release`` is set when the clients are done, so held handlers can end.
    """

    async def scenario() -> dict:
        server = await asyncio.start_server(handler, "127.0.0.1", 0)
        port = server.sockets[0].getsockname()[1]
        try:
            return await drive(parse_args(["--port", str(port), *options]))
        finally:
            if release is not None:
                release.set()
            server.close()
            await server.wait_closed()

    return asyncio.run(scenario())


def test_answers_failures_and_drops_are_each_counted_once():
    done = Counter()

    async def handler(reader, writer):
        # Per connection: 200, 503, 200, then the 4th request is dropped.
        try:
            for answer in (OK, BUSY, OK, None):
                await reader.readuntil(b"\r\n\r\n")
                if answer is None:
                    done["dropped"] += 1
                    return
                writer.write(answer)
                done[answer[9:12].decode()] += 1
        except asyncio.IncompleteReadError:
            pass  # the client left (its budget ran out)
        finally:
            writer.close()

    result = run(handler, "--clients", "7", "--max-requests", "400", "--seconds", "20")
    assert result["sent"] == 400
    assert result["completed"] == done["200"] > 0
    assert result["non_2xx"] == result["statuses"]["503"] == done["503"] > 0
    assert result["errors"]["closed"] == done["dropped"] > 0
    assert result["completed"] + result["non_2xx"] + done["dropped"] == 400
    assert result["served"] == 7 and result["never_served"] == 0
    assert result["pending_requests"] == result["pending_connects"] == 0
    # Each dropped connection was one connect; each client's last may be alive.
    assert done["dropped"] <= result["connects"] <= done["dropped"] + 7


def test_clients_held_without_an_answer_are_never_served_and_pending():
    accepted = []
    release = asyncio.Event()

    async def handler(reader, writer):
        number = len(accepted)
        accepted.append(writer)
        await reader.readuntil(b"\r\n\r\n")
        if number >= 3:  # after the first three connections: held
            await release.wait()
        writer.write(CLOSE)
        writer.close()

    options = ("--clients", "10", "--seconds", "1", "--timeout", "30")
    result = run(handler, *options, release=release)
    assert result["completed"] == 3
    assert result["served"] == 3 and result["never_served"] == 7
    # Every client ends waiting on a held connection (the served ones came back).
    assert result["pending_requests"] == 10
    assert sum(result["errors"].values()) == 0


def test_a_request_not_answered_in_time_is_a_timeout():
    release = asyncio.Event()

    async def handler(reader, writer):
        with contextlib.suppress(asyncio.IncompleteReadError):
            await reader.readuntil(b"\r\n\r\n")
            await release.wait()
        writer.close()

    options = ("--clients", "2", "--seconds", "1", "--timeout", "0.2")
    result = run(handler, *options, release=release)
    assert result["errors"]["timeout"] >= 2
    assert result["completed"] == 0 and result["never_served"] == 2


def test_a_port_nobody_listens_on_refuses():
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]  # closed again: nothing listens there
    args = parse_args(["--port", str(port), "--clients", "3", "--seconds", "0.3"])
    result = asyncio.run(drive(args))
    assert result["errors"]["refused"] >= 3
    assert result["served"] == 0 and result["never_served"] == 3


def test_handshakes_dropped_by_a_full_accept_queue_stay_pending():
    before = listen_counters()["ListenOverflows"]
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen(1)  # never accepted: the queue holds about 2
        port = listener.getsockname()[1]
        args = parse_args(["--port", str(port), "--clients", "12", "--seconds", "0.5"])
        result = asyncio.run(drive(args))
    assert result["served"] == 0 and result["never_served"] == 12
    assert result["pending_connects"] + result["pending_requests"] == 12
    assert result["pending_connects"] >= 8  # their SYNs were dropped
    assert listen_counters()["ListenOverflows"] > before


def test_percentile_is_nearest_rank():
    values = [float(n) for n in range(1, 101)]
    assert percentile(values, 0.50) == 50.0
    assert percentile(values, 0.99) == 99.0
    assert percentile([7.0], 0.99) == 7.0
    assert percentile([], 0.5) is None


def test_profile_shares_count_only_request_samples_by_innermost_package():
    root = str(Path(__file__).resolve().parents[1])
    site = "/x/lib/python3.11/site-packages"

    def frame(fn: str, path: str) -> str:
        return f"{fn}\x00{path}\x001"

    handle = frame("handle", f"{site}/gunicorn/workers/sync.py")
    app = frame("__call__", f"{site}/django/core/handlers/wsgi.py")
    ours = frame("get", f"{root}/tiered_cache/backend.py")
    stdlib = frame("acquire", "/usr/lib/python3.11/threading.py")
    records = [
        ([frame("run", f"{site}/gunicorn/arbiter.py")], 5.0),  # idle: ignored
        ([handle], 1.0),  # gunicorn parsing
        ([handle, app], 1.0),  # Django
        ([handle, app, ours, stdlib], 1.0),  # tiered_cache (stdlib is its own)
        ([handle, app, ours, frame("recv", f"{site}/redis/connection.py")], 1.0),
    ]
    result = shares(records)
    assert result["request_seconds"] == 4.0
    assert result["own_pct"] == 25.0 and result["under_pct"] == 50.0
    assert result["app_seconds"] == 3.0
    assert result["app_own_pct"] == round(100 / 3, 2)
    assert result["by_package_pct"] == {
        "gunicorn": 25.0,
        "django": 25.0,
        "tiered_cache": 25.0,
        "redis": 25.0,
    }
    assert result["hot_spots_pct"][0][1] == 25.0
