"""CPU share of the cache in a request (issue 10, item 5): gunicorn hooks and analysis.

``bench/load.py --profile`` serves the testproject with one gunicorn sync
worker and passes this file as gunicorn's ``--config``: the hooks below start
pyinstrument in the worker after ``LOAD_PROFILE_SKIP`` requests (so start-up
and the first, computing, miss stay out), stop it when the worker exits and
save the session to ``LOAD_PROFILE_DIR``. A sync worker runs every request in
its main thread, which is the thread pyinstrument samples.

:func:`shares` reads the samples back. A sample counts for a request when its
stack holds gunicorn's ``handle`` (parse, application, write: what a request
costs the worker), and goes to the *package* of its innermost frame outside
the standard library (``tiered_cache``, ``django``, ``redis``, ``diskcache``,
``gunicorn``...): what tiered_cache's own code costs, apart from the work of
the libraries its tiers call. ``under`` is the share with a ``tiered_cache``
frame anywhere on the stack (its own code and everything it calls: Redis round
trips, SQLite). The ``app_`` shares are the same over the samples inside
Django's WSGI handler only (without gunicorn's parsing, writing and waiting on
the client's socket). pyinstrument samples wall time: on a busy machine, or
where a request waits on a socket, time is not CPU; the profiler's own cost
also lands in the frames it interrupts.
"""

from __future__ import annotations

import os
from collections import Counter
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
#: The frame that marks a sample as request work: gunicorn's sync worker.
REQUEST_ROOT = ("handle", os.path.join("gunicorn", "workers", "sync.py"))
#: The frame that marks the application's part of it: Django's WSGI handler.
APP_ROOT = ("__call__", os.path.join("django", "core", "handlers", "wsgi.py"))
INTERVAL = 0.0005  # seconds between samples

_state: dict = {"seen": 0, "profiler": None}


# -- gunicorn hooks (this file is gunicorn's --config) --------------------------


def pre_request(worker, req) -> None:
    _state["seen"] += 1
    if _state["profiler"] is None and _state["seen"] > int(
        os.environ.get("LOAD_PROFILE_SKIP", "200")
    ):
        from pyinstrument import Profiler

        _state["profiler"] = Profiler(interval=INTERVAL)
        _state["profiler"].start()


def worker_exit(server, worker) -> None:
    profiler = _state["profiler"]
    if profiler is not None:
        session = profiler.stop()
        out = Path(os.environ["LOAD_PROFILE_DIR"]) / f"worker-{os.getpid()}.json"
        session.save(out)


# -- analysis --------------------------------------------------------------------


def frame_parts(frame_info: str) -> tuple[str, str, str]:
    """(function, file, line) of one pyinstrument frame identifier."""
    identifier = frame_info.partition("\x01")[0]
    function, _, rest = identifier.partition("\x00")
    path, _, line = rest.partition("\x00")
    return function, path, line


def package_of(path: str) -> str | None:
    """The top-level package a file belongs to; None for the standard library."""
    marker = f"site-packages{os.sep}"
    if marker in path:
        top = path.split(marker, 1)[1].split(os.sep, 1)[0]
        return top.removesuffix(".py")
    root = f"{ROOT}{os.sep}"
    if path.startswith(root):
        return path[len(root) :].split(os.sep, 1)[0].removesuffix(".py")
    return None


def shares(records, package: str = "tiered_cache", top: int = 12) -> dict:
    """Break the request samples of ``records`` ((stack, seconds) pairs) down."""
    total = under = app = app_own = app_under = 0.0
    by_package: Counter = Counter()
    hot: Counter = Counter()
    for stack, seconds in records:
        frames = [frame_parts(f) for f in stack]
        start = _find(frames, REQUEST_ROOT)
        if start is None:
            continue  # the worker between requests
        request = frames[start:]
        total += seconds
        packages = [package_of(path) for _, path, _ in request]
        if package in packages:
            under += seconds
        innermost = next(
            (i for i in range(len(request) - 1, -1, -1) if packages[i]), None
        )
        owner = packages[innermost] if innermost is not None else "stdlib"
        by_package[owner] += seconds
        if _find(request, APP_ROOT) is not None:
            app += seconds
            app_own += seconds if owner == package else 0.0
            app_under += seconds if package in packages else 0.0
        if owner == package:
            fn, path, line = request[innermost]
            hot[f"{fn} ({os.path.relpath(path, ROOT)}:{line})"] += seconds
    share = (lambda s: round(100 * s / total, 2)) if total else (lambda s: None)
    of_app = (lambda s: round(100 * s / app, 2)) if app else (lambda s: None)
    return {
        "request_seconds": round(total, 3),
        "own_pct": share(by_package.get(package, 0.0)),
        "under_pct": share(under),
        "app_seconds": round(app, 3),
        "app_own_pct": of_app(app_own),
        "app_under_pct": of_app(app_under),
        "by_package_pct": {k: share(v) for k, v in by_package.most_common()},
        "hot_spots_pct": [(name, share(s)) for name, s in hot.most_common(top)],
    }


def _find(frames: list[tuple[str, str, str]], root: tuple[str, str]) -> int | None:
    """Index of the outermost frame that is ``root`` (function, file suffix)."""
    return next(
        (
            i
            for i, (fn, path, _) in enumerate(frames)
            if fn == root[0] and path.endswith(root[1])
        ),
        None,
    )


def load_records(directory: Path) -> list:
    """Every saved session's (stack, seconds) records in ``directory``."""
    from pyinstrument.session import Session

    records: list = []
    for path in sorted(directory.glob("worker-*.json")):
        records += Session.load(path).frame_records
    return records
