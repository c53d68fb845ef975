"""A child forked while another thread holds a lock must not inherit it locked."""

from __future__ import annotations

import os
import signal
import threading

import pytest

from tests.matrix import L1

RECORDING_L2 = {"NAME": "l2", "BACKEND": "tests.doubles.RecordingTier"}

pytestmark = [
    pytest.mark.skipif(not hasattr(os, "fork"), reason="needs fork()"),
    # Python >= 3.12 warns about fork() with threads: that is the point here.
    pytest.mark.filterwarnings("ignore:This process .* is multi-threaded"),
]


def run_in_child(body) -> int:
    """Fork, run ``body`` in the child (killed after 5 s if it hangs), return rc."""
    pid = os.fork()
    if pid == 0:  # pragma: no cover - runs in the child, reported via exit code
        signal.alarm(5)
        try:
            body()
        except BaseException:
            os._exit(2)
        os._exit(0)
    _, status = os.waitpid(pid, 0)
    return os.waitstatus_to_exitcode(status)


def test_child_writes_although_a_parent_thread_held_the_locks(make_cache):
    cache = make_cache([L1, RECORDING_L2])
    cache.set("k", "parent")
    l1 = cache.tier("l1")
    breaker = cache._chain.by_name["l2"].breaker
    held = threading.Event()
    release = threading.Event()

    def hold():
        with l1._lock, breaker._lock:
            held.set()
            release.wait(10)

    holder = threading.Thread(target=hold)
    holder.start()
    held.wait(5)
    try:

        def child():
            cache.set("k", "child")  # would hang on an inherited held lock
            breaker.record_failure()
            assert cache.get("k") == "child"

        assert run_in_child(child) == 0  # -14 (SIGALRM) if it hung
    finally:
        release.set()
        holder.join()
    assert cache.get("k") == "parent"  # the child's write stayed in the child
