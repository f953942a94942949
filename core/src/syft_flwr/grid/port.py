"""The grid's one port: how the party driving a grid observes and journals its traffic.

A plain grid (the reference API's ``SyftGrid(...)``, the aux grid) has no port and only routes.
The server engine plugs itself in as the port of its strategy grid
(``SyftGrid(..., port=engine)``), so the grid depends on this small contract instead of on the
engine, its journal and its liveness tracker, and nobody sets attributes on the grid from
outside. The grid asks the port for:

- the round in progress (:attr:`GridPort.epoch`): messages of one round get ids derived from
  it, and journal entries are claimed within it;
- a journal (:attr:`GridPort.journal`), when the run persists over a transport whose futures
  survive a restart: every message is recorded once handed to the transport and every reply
  once collected, so a resumed round claims them instead of sending again;
- a liveness tracker (:attr:`GridPort.liveness`): a datasite already lost when a message goes
  out is waited for only ``lost_after`` seconds;

and tells it what happened: every lifecycle event the grid fires (:meth:`GridPort.observe`)
and, before the reply is journaled, each real answer of a datasite
(:meth:`GridPort.answered`), so "which datasites answered this run" survives any crash.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol, runtime_checkable

from flwr.app import Message

from syft_flwr.events import LifecycleEvent

__all__ = ["GridPort", "Journal", "JournalEntry", "Liveness"]


@dataclass(frozen=True)
class JournalEntry:
    """One message the grid sent in a not yet committed round."""

    message_id: str
    epoch: int
    datasite: str
    message_type: str
    group_id: str
    future_id: str
    created_at: float
    ttl: float
    expires_at: float
    envelope_id: bytes
    collected: bool = False


class Journal(Protocol):
    """Where the messages of the round in progress and their collected replies are kept."""

    def record(self, entry: JournalEntry) -> None:
        """Remember a message just handed to the transport."""

    def collected(self, message_id: str, envelope: bytes | bytearray | memoryview) -> None:
        """Store the reply the strategy got for ``message_id``, as the envelope it came in."""

    def claim(
        self, epoch: int, datasite: str, message_type: str, group_id: str
    ) -> JournalEntry | None:
        """The oldest unclaimed entry of ``epoch`` matching a message pushed again, if any."""

    def stored_reply(self, message_id: str) -> Message:
        """The reply stored for a collected entry."""


class Liveness(Protocol):
    """Which datasites answer, and how long a lost one is waited for."""

    lost_after: float
    """Seconds a lost datasite is waited for."""

    def is_lost(self, datasite: str) -> bool:
        """Whether ``datasite`` is lost now."""

    def sent(self, datasite: str) -> None:
        """A request went out to ``datasite``."""

    def answered(self, datasite: str) -> None:
        """``datasite`` answered (a reply or a refusal: it is alive)."""

    def check(self) -> list[str]:
        """Mark datasites lost whose requests waited too long; return them."""

    def next_check_in(self) -> float:
        """Seconds until :meth:`check` may find something new."""


@runtime_checkable
class GridPort(Protocol):
    """What a grid needs from the party that drives it (the server engine implements it)."""

    @property
    def epoch(self) -> int:
        """The round in progress (0 before the first)."""

    @property
    def journal(self) -> Journal | None:
        """The journal of the round in progress, ``None`` when the run does not persist."""

    @property
    def liveness(self) -> Liveness | None:
        """The liveness tracker, ``None`` to wait for every datasite the whole TTL."""

    def observe(self, event: LifecycleEvent) -> None:
        """The grid fired ``event`` (after the plugins got it); must not raise."""

    def answered(self, datasite: str) -> None:
        """``datasite`` really answered a message; called before the reply is journaled."""
