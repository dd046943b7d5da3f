"""Turns at the database handed to the API's requests in the order they arrived.

On SQLite the API lets one request at a time into the database (see
:class:`cardcenter.web.api.clients.ApiState`). A plain lock goes to
whichever thread asks for it first once it is free, queued or not (a thread
just arriving, or the one that has just let it go), so under load some
requests were passed over again and again: with 16 clients queued, the
slowest sale in a hundred waited 1.8 to 1.9 times as long as the median
one. A payment channel's request must not starve behind later ones; here
each waiting thread is handed the turn directly by the one before it, first
come, first served, and the slowest in a hundred waits about 1.2 times the
median (README, the vending API's figures).
"""

from __future__ import annotations

import threading
from collections import deque
from types import TracebackType


class FifoLock:
    """A lock whose waiting threads get it in the order they asked for it.

    Not reentrant. Use it as a context manager, as a :class:`threading.Lock`.
    """

    def __init__(self) -> None:
        self._guard = threading.Lock()
        self._waiting: deque[threading.Lock] = deque()
        self._held = False

    @property
    def waiting(self) -> int:
        """Threads waiting for the lock now."""
        with self._guard:
            return len(self._waiting)

    def acquire(self) -> None:
        """Take the lock, after every thread that asked for it earlier."""
        with self._guard:
            if not self._held:
                self._held = True
                return
            turn = threading.Lock()
            turn.acquire()
            self._waiting.append(turn)
        turn.acquire()  # released by the holder as it hands the lock over: held from here

    def release(self) -> None:
        """Hand the lock to the thread that has waited longest, or free it."""
        with self._guard:
            if not self._held:
                raise RuntimeError("release of a FifoLock that is not held")
            if self._waiting:
                self._waiting.popleft().release()
            else:
                self._held = False

    def __enter__(self) -> None:
        self.acquire()

    def __exit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.release()
