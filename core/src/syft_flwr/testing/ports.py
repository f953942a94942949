"""A grid port without a server engine, for tests of what a grid does with its port."""

from __future__ import annotations

from dataclasses import dataclass, field

from syft_flwr.events import LifecycleEvent
from syft_flwr.grid.port import Journal, Liveness

__all__ = ["RecordingPort"]


@dataclass
class RecordingPort:
    """A :class:`~syft_flwr.grid.port.GridPort` that holds what it is given (a journal, the
    round, a liveness tracker) and records what the grid tells it.

    :param journal: the journal the grid writes to, if any.
    :param epoch: the round in progress; set it to move the grid to another round.
    :param liveness: a liveness tracker, if any.
    """

    journal: Journal | None = None
    epoch: int = 0
    liveness: Liveness | None = None
    events: list[LifecycleEvent] = field(default_factory=list)
    """Every lifecycle event the grid fired, in order."""
    answers: list[str] = field(default_factory=list)
    """Every datasite the grid reported as answering, in order (repeats included)."""

    def observe(self, event: LifecycleEvent) -> None:
        self.events.append(event)

    def answered(self, datasite: str) -> None:
        self.answers.append(datasite)
