"""The contract between the resumable strategy loops and the engine that persists them."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Protocol

from flwr.app import ArrayRecord

__all__ = ["ResumePoint", "RoundKeeper"]


@dataclass(frozen=True)
class ResumePoint:
    """Where an interrupted run goes on: after ``round`` with ``model`` and ``history``."""

    round: int
    model: ArrayRecord
    history: dict[str, Any]


class RoundKeeper(Protocol):
    """What the resumable loops need: the engine implements it."""

    def resume_point(self, style: str, num_rounds: int) -> ResumePoint | None:
        """The last committed round of an interrupted run, ``None`` to start from scratch."""

    def begin_round(self, round_: int, num_rounds: int) -> None:
        """Round ``round_`` starts (messages pushed from now on belong to it)."""

    def commit_round(
        self,
        round_: int,
        num_rounds: int,
        style: str,
        model: ArrayRecord,
        history: dict[str, Any],
        round_metrics: dict[str, Any],
    ) -> None:
        """Round ``round_`` is complete: persist what resuming after it needs.

        ``history`` is JSON-safe, its parts that grow with the rounds
        :class:`~syft_flwr.server.fragments.Encoded` already (each round's entries encoded
        once, so a commit costs the same at every round).
        """
