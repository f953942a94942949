"""Client liveness: which datasites stopped answering, and when they come back.

A datasite is *lost* once a request to it has been outstanding for ``lost_after`` seconds
with no answer from it in that time. The round in which that happens still waits up to its
own timeout; a message sent to a datasite that is already lost is waited for only
``lost_after`` seconds (``SyftGrid``), so a dead client costs each later round the grace
period rather than the whole timeout, and a restarted one that answers within it is back in
that very round. Its first answer (and its first answer ever) makes it *active*. Transitions
are reported to a callback, which the engine turns into ``client_lost``/``client_joined``
events.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass

from syft_flwr.errors import ConfigError

__all__ = ["DEFAULT_LOST_AFTER", "ClientState", "LivenessTracker"]

DEFAULT_LOST_AFTER = 300.0
"""Seconds a request may stay unanswered before its datasite counts as lost."""


@dataclass
class ClientState:
    """What the server knows about one datasite's liveness."""

    last_seen: float | None = None
    """When it last answered anything, ``None`` if never in this process."""
    waiting_since: float | None = None
    """When the oldest request it has not answered since was sent."""
    lost: bool = False


class LivenessTracker:
    """Thread-safe per-datasite liveness state.

    :param datasites: the datasites to track.
    :param lost_after: grace period in seconds.
    :param on_change: called as ``on_change(datasite, lost, reason)`` on every transition,
        outside the tracker's lock.
    :param clock: the time source (injectable for tests).
    :raises ConfigError: ``lost_after`` is not positive.
    """

    def __init__(
        self,
        datasites: Iterable[str],
        lost_after: float = DEFAULT_LOST_AFTER,
        on_change: Callable[[str, bool, str], None] | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        if not lost_after > 0:
            raise ConfigError(f"lost_after must be a positive number of seconds, got {lost_after}")
        self.lost_after = lost_after
        self._states = {datasite: ClientState() for datasite in datasites}
        self._on_change = on_change
        self._clock = clock
        self._lock = threading.Lock()

    def sent(self, datasite: str) -> None:
        """A request to ``datasite`` went out."""
        with self._lock:
            state = self._states.get(datasite)
            if state is not None and state.waiting_since is None:
                state.waiting_since = self._clock()

    def answered(self, datasite: str) -> None:
        """``datasite`` answered (any reply it really sent, error replies included)."""
        with self._lock:
            state = self._states.get(datasite)
            if state is None:
                return
            first = state.last_seen is None
            rejoined = state.lost
            state.last_seen = self._clock()
            state.waiting_since = None
            state.lost = False
        if rejoined or first:
            self._changed(datasite, False, "answered again" if rejoined else "first answer")

    def check(self) -> list[str]:
        """Mark datasites lost whose oldest unanswered request is older than the grace period.

        :return: the datasites newly marked lost.
        """
        now = self._clock()
        newly_lost = []
        with self._lock:
            for datasite, state in self._states.items():
                if state.lost or state.waiting_since is None:
                    continue
                if now - state.waiting_since >= self.lost_after:
                    state.lost = True
                    newly_lost.append(datasite)
        for datasite in newly_lost:
            self._changed(
                datasite, True, f"no answer for {self.lost_after:g} s to an outstanding request"
            )
        return newly_lost

    def is_lost(self, datasite: str) -> bool:
        """Whether ``datasite`` is currently lost."""
        with self._lock:
            state = self._states.get(datasite)
            return state is not None and state.lost

    def state(self, datasite: str) -> ClientState:
        """A copy of what is known about ``datasite``."""
        with self._lock:
            state = self._states[datasite]
            return ClientState(state.last_seen, state.waiting_since, state.lost)

    def next_check_in(self) -> float:
        """Seconds until the earliest datasite could become lost (``inf`` if none is waited on)."""
        now = self._clock()
        with self._lock:
            pending = [
                s.waiting_since + self.lost_after - now
                for s in self._states.values()
                if s.waiting_since is not None and not s.lost
            ]
        return max(0.0, min(pending)) if pending else float("inf")

    def _changed(self, datasite: str, lost: bool, reason: str) -> None:
        if self._on_change is not None:
            self._on_change(datasite, lost, reason)
