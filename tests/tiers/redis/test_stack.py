"""``ConnectionStack``: redis-py's pool queue, LIFO, waits only when empty."""

from __future__ import annotations

import queue
import threading

import pytest

from tiered_cache.tiers.redis.stack import ConnectionStack


def test_last_in_first_out_like_lifoqueue():
    stack = ConnectionStack(3)
    for item in (None, None, "conn"):
        stack.put_nowait(item)
    assert stack.qsize() == 3 and list(stack.queue) == [None, None, "conn"]
    assert stack.get() == "conn"  # a made connection before a placeholder
    assert stack.get(block=False) is None


def test_full_and_empty_raise_the_queue_module_exceptions():
    stack = ConnectionStack(1)
    stack.put_nowait("a")
    with pytest.raises(queue.Full):
        stack.put_nowait("b")
    assert stack.get_nowait() == "a"
    with pytest.raises(queue.Empty):
        stack.get_nowait()
    with pytest.raises(queue.Empty):
        stack.get(timeout=0.01)


def test_a_waiter_is_woken_by_a_put_not_by_its_timeout():
    stack = ConnectionStack(1)
    waiting = threading.Event()
    got: list[object] = []

    def take() -> None:
        waiting.set()
        got.append(stack.get(timeout=60))

    thread = threading.Thread(target=take)
    thread.start()
    waiting.wait(10)
    stack.put_nowait("conn")
    thread.join(10)  # a lost wakeup would keep it waiting its 60 s
    assert not thread.is_alive() and got == ["conn"]


def test_many_threads_share_few_items_without_losing_one():
    stack = ConnectionStack(3)
    for item in range(3):
        stack.put_nowait(item)
    errors: list[BaseException] = []

    def borrow() -> None:
        try:
            for _ in range(2000):
                item = stack.get(timeout=30)
                stack.put_nowait(item)
        except BaseException as exc:  # noqa: BLE001 - collected for the assert
            errors.append(exc)

    threads = [threading.Thread(target=borrow) for _ in range(16)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    assert errors == [] and not any(t.is_alive() for t in threads)
    assert sorted(stack.queue) == [0, 1, 2]
