"""One timer thread per network for expiries and delayed deliveries.

A thread (or ``threading.Timer``) per message would not survive a 1,000-client round, and a
polling loop would add latency and burn CPU. A heap ordered by due time, one thread that sleeps
on a condition until the earliest entry is due, and callbacks run outside the lock scale to any
number of pending timers. The thread starts on demand and exits when the heap is empty, so an
idle network (say, one per test) costs no thread.
"""

from __future__ import annotations

import heapq
import itertools
import logging
import threading
import time
from collections.abc import Callable

__all__ = ["Scheduler"]

logger = logging.getLogger(__name__)

_Entry = tuple[float, int, Callable[[], None]]


class Scheduler:
    """Runs callbacks at wall-clock times, in due order, on one background thread."""

    def __init__(self, name: str) -> None:
        self._name = name
        self._cond = threading.Condition()
        self._heap: list[_Entry] = []
        self._counter = itertools.count()
        self._thread: threading.Thread | None = None
        self._generation = 0

    def call_at(self, when: float, callback: Callable[[], None]) -> None:
        """Run ``callback`` once ``time.time()`` reaches ``when`` (at once if it has).

        The due time is converted to the monotonic clock here, so a wall-clock jump does not
        fire or hold back timers already scheduled.
        """
        due = time.monotonic() + (when - time.time())
        with self._cond:
            seq = next(self._counter)
            heapq.heappush(self._heap, (due, seq, callback))
            if self._thread is None:
                self._thread = threading.Thread(
                    target=self._loop,
                    args=(self._generation,),
                    name=f"syft-flwr-memory-timers-{self._name}",
                    daemon=True,
                )
                self._thread.start()
            elif self._heap[0][1] == seq:
                # The new entry is due first: the sleeping thread must shorten its wait.
                self._cond.notify_all()

    def cancel_all(self) -> None:
        """Drop every pending callback; the thread exits without running them."""
        with self._cond:
            self._heap.clear()
            self._generation += 1
            self._thread = None
            self._cond.notify_all()

    def _loop(self, generation: int) -> None:
        while True:
            with self._cond:
                while True:
                    if generation != self._generation:
                        return
                    if not self._heap:
                        self._thread = None
                        return
                    remaining = self._heap[0][0] - time.monotonic()
                    if remaining <= 0:
                        callback = heapq.heappop(self._heap)[2]
                        break
                    # A far-future due time (a TTL of years) exceeds what a lock wait accepts.
                    self._cond.wait(min(remaining, threading.TIMEOUT_MAX))
            try:
                callback()
            except Exception:
                logger.exception("memory network %s: a timer callback raised", self._name)
