"""When to poll next: often while something is expected, less and less often while idle.

Drive cannot notify, so the transport lists its inboxes periodically. While replies are awaited,
or right after something arrived, it polls every ``base`` seconds; each empty poll after that
doubles the interval up to ``maximum``; any activity (a send, an arrival, a serving loop
starting) brings it straight back to ``base``. A listing that failed even after the retry budget
backs off the same way, so a Drive outage is not hammered.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field

__all__ = ["PollSchedule", "PollStats"]


@dataclass
class PollStats:
    """What the poller did, for logs and for tests counting API requests."""

    polls: int = 0
    """Poll cycles that listed the inboxes."""
    list_requests: int = 0
    """``files.list`` requests those polls made (more than one only for paging or huge
    numbers of folders)."""
    folders_listed: int = 0
    """Sum over polls of the queries one request per folder would have needed instead: each
    folder listed, plus the search for new peers when the poll included it."""


@dataclass
class PollSchedule:
    """The adaptive poll interval (times are ``time.monotonic()`` seconds)."""

    base: float
    maximum: float
    interval: float = field(init=False)
    next_due: float = field(init=False, default=0.0)

    def __post_init__(self) -> None:
        self.interval = self.base

    def poke(self, now: float | None = None, *, immediately: bool = False) -> None:
        """Something happened: poll at ``base`` pace again (or right away)."""
        now = time.monotonic() if now is None else now
        self.interval = self.base
        self.next_due = min(self.next_due, now if immediately else now + self.base)

    def polled(self, busy: bool, now: float | None = None) -> None:
        """A poll finished; ``busy`` if replies are awaited or something arrived."""
        now = time.monotonic() if now is None else now
        self.interval = self.base if busy else min(self.interval * 2, self.maximum)
        self.next_due = now + self.interval

    def failed(self, now: float | None = None) -> None:
        """A poll failed for good: back off as if idle."""
        self.polled(False, now)

    def wait_time(self, now: float | None = None) -> float:
        """Seconds until the next poll is due (0 if it is)."""
        now = time.monotonic() if now is None else now
        return max(0.0, self.next_due - now)
