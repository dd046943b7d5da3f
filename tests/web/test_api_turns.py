"""The API's turns at the database go first come, first served (cardcenter.web.api.turns).

A payment channel waiting for its sale must not be passed over by requests
that came after it; and two requests must never be in the database at once.
"""

from __future__ import annotations

import threading
import time

import pytest

from cardcenter.web.api.turns import FifoLock

WAIT = 10.0


def wait_until(condition: object, what: str) -> None:
    deadline = time.monotonic() + WAIT
    while not condition():  # type: ignore[operator]
        if time.monotonic() > deadline:
            pytest.fail(f"timed out waiting for {what}")
        time.sleep(0.001)


def test_waiting_threads_get_the_lock_in_the_order_they_asked() -> None:
    lock = FifoLock()
    order: list[int] = []
    threads = []
    lock.acquire()
    for n in range(24):

        def take(n: int = n) -> None:
            with lock:
                order.append(n)

        thread = threading.Thread(target=take)
        thread.start()
        threads.append(thread)
        # the next thread asks only once this one is queued
        wait_until(lambda n=n: lock.waiting == n + 1, f"thread {n} to queue")
    lock.release()
    for thread in threads:
        thread.join(WAIT)
    assert order == list(range(24))


def test_a_thread_arriving_as_the_lock_is_released_does_not_go_first() -> None:
    """The unfairness a plain lock has: whoever asks at the release takes it, queue or not.

    Here the releasing thread asks again at once; a waiting thread was
    queued before it, so it must go first.
    """
    lock = FifoLock()
    order: list[str] = []
    lock.acquire()

    def waiter() -> None:
        with lock:
            order.append("waiting thread")

    thread = threading.Thread(target=waiter)
    thread.start()
    wait_until(lambda: lock.waiting == 1, "the thread to queue")
    lock.release()
    with lock:
        order.append("arriving thread")
    thread.join(WAIT)
    assert order == ["waiting thread", "arriving thread"]


def test_only_one_holder_at_a_time() -> None:
    lock = FifoLock()
    inside = 0
    most = 0
    count = threading.Lock()

    def work() -> None:
        nonlocal inside, most
        for _ in range(200):
            with lock:
                with count:
                    inside += 1
                    most = max(most, inside)
                time.sleep(0)
                with count:
                    inside -= 1

    threads = [threading.Thread(target=work) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(WAIT)
    assert most == 1 and inside == 0 and lock.waiting == 0


def test_released_on_an_error_and_free_again() -> None:
    lock = FifoLock()
    with pytest.raises(ValueError), lock:
        raise ValueError("refused")
    taken = threading.Event()

    def take() -> None:
        with lock:
            taken.set()

    thread = threading.Thread(target=take)
    thread.start()
    assert taken.wait(WAIT)
    thread.join(WAIT)


def test_releasing_a_lock_not_held_is_refused() -> None:
    with pytest.raises(RuntimeError, match="not held"):
        FifoLock().release()
