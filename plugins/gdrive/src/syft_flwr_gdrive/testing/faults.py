"""Fault injection for the fake Drive: the errors a real Drive throws at a busy client.

A :class:`FaultPlan` decides, per API request, whether to answer normally or with one of the
faults below. Decisions come from a seeded RNG, and ``max_consecutive`` caps how many requests
of one account fail in a row, so a client with a bounded retry budget is guaranteed to get
through: a fault storm test then proves "nothing lost" without depending on luck.
One-off faults queued with :meth:`FaultPlan.queue` fire first, for targeted tests.
"""

from __future__ import annotations

import enum
import random
import threading
from collections import deque
from dataclasses import dataclass, field

__all__ = ["Fault", "FaultPlan"]


class Fault(enum.Enum):
    """What the fake does instead of answering normally."""

    RATE_LIMIT = "rateLimitExceeded"
    """403 with reason ``rateLimitExceeded``."""
    USER_RATE_LIMIT = "userRateLimitExceeded"
    """403 with reason ``userRateLimitExceeded``."""
    TOO_MANY_REQUESTS = "429"
    """429 with a ``Retry-After`` header."""
    SERVER_ERROR = "500"
    """500 ``backendError``."""
    UNAVAILABLE = "503"
    """503 ``backendError``."""
    DROP_BEFORE = "drop_before"
    """Close the connection without reading the request's effect into the store."""
    DROP_AFTER = "drop_after"
    """Apply the request, then close the connection without answering."""


@dataclass
class FaultPlan:
    """Which requests fail, and how.

    :param rate: probability that a request (of the ``kinds`` matched) fails.
    :param faults: the faults to draw from, uniformly.
    :param retry_after: the ``Retry-After`` value sent with 429 (fractions allowed here so tests
        stay fast; a real server sends whole seconds).
    :param max_consecutive: at most this many requests of one account fail in a row.
    :param kinds: API request kinds to affect (see the server's kind names); all if empty.
    :param seed: RNG seed.
    """

    rate: float = 0.0
    faults: tuple[Fault, ...] = tuple(Fault)
    retry_after: str = "0.05"
    max_consecutive: int = 2
    kinds: frozenset[str] = frozenset()
    seed: int = 0
    _rng: random.Random = field(init=False, repr=False)
    _streak: dict[str, int] = field(init=False, repr=False, default_factory=dict)
    _queued: deque[tuple[Fault, str | None]] = field(init=False, repr=False, default_factory=deque)
    _lock: threading.Lock = field(init=False, repr=False, default_factory=threading.Lock)
    injected: list[tuple[str, str, Fault]] = field(init=False, default_factory=list)
    """Every fault served, as ``(account, kind, fault)``."""

    def __post_init__(self) -> None:
        self._rng = random.Random(self.seed)

    def queue(self, fault: Fault, count: int = 1, *, kind: str | None = None) -> None:
        """Serve ``fault`` to the next ``count`` requests (of ``kind``, if given)."""
        with self._lock:
            self._queued.extend([(fault, kind)] * count)

    def decide(self, account: str, kind: str) -> Fault | None:
        """The fault for this request, or ``None`` to answer normally."""
        with self._lock:
            for index, (fault, wanted) in enumerate(self._queued):
                if wanted is None or wanted == kind:
                    del self._queued[index]
                    self.injected.append((account, kind, fault))
                    return fault
            if self.rate <= 0 or (self.kinds and kind not in self.kinds):
                return None
            streak = self._streak.get(account, 0)
            if streak >= self.max_consecutive or self._rng.random() >= self.rate:
                self._streak[account] = 0
                return None
            self._streak[account] = streak + 1
            fault = self._rng.choice(self.faults)
            self.injected.append((account, kind, fault))
            return fault
