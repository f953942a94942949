"""Fault injection for the in-process wire: drop, duplicate and delay requests.

Real transports lose files, deliver them twice after a sync conflict and deliver them late.
The memory transport reproduces those faults on purpose, either randomly from a seeded
:class:`FaultPlan` (so a flaky-network test is repeatable) or one request at a time with
:meth:`FaultInjector.drop_next` / :meth:`FaultInjector.duplicate_next` (so a unit test does not
depend on probabilities at all).
"""

from __future__ import annotations

import random
import threading
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from syft_flwr.errors import ConfigError

__all__ = ["Fate", "FaultInjector", "FaultPlan"]

_OPTION_KEYS = {"drop", "duplicate", "delay", "seed"}


@dataclass(frozen=True)
class FaultPlan:
    """Random faults applied to every request sent over a network.

    :param drop_rate: probability in ``[0, 1]`` that a request silently vanishes.
    :param duplicate_rate: probability in ``[0, 1]`` that a request is delivered twice.
    :param delay_seconds: ``(low, high)``: each request is delivered after a delay drawn
        uniformly from this range.
    :param seed: seed of the plan's random generator; ``None`` for a non-repeatable run.
    """

    drop_rate: float = 0.0
    duplicate_rate: float = 0.0
    delay_seconds: tuple[float, float] = (0.0, 0.0)
    seed: int | None = None

    def __post_init__(self) -> None:
        for name in ("drop_rate", "duplicate_rate"):
            rate = getattr(self, name)
            if not 0.0 <= rate <= 1.0:
                raise ConfigError(f"fault plan {name}={rate!r} must be between 0 and 1")
        low, high = self.delay_seconds
        if not 0.0 <= low <= high:
            raise ConfigError(
                f"fault plan delay_seconds={self.delay_seconds!r} must be (low, high) "
                "with 0 <= low <= high"
            )

    @classmethod
    def from_options(cls, raw: Mapping[str, Any]) -> FaultPlan:
        """Build a plan from the ``faults`` option table.

        The table uses short keys because it is written by hand in ``pyproject.toml``:
        ``{drop = 0.1, duplicate = 0.1, delay = [0.0, 0.05], seed = 1}``; ``delay`` may
        also be a single number for a fixed delay.

        :raises ConfigError: an unknown key or a value out of range.
        """
        unknown = set(raw) - _OPTION_KEYS
        if unknown:
            raise ConfigError(
                f"unknown fault option(s) {sorted(unknown)}; expected {sorted(_OPTION_KEYS)}"
            )
        delay = raw.get("delay", 0.0)
        try:
            low, high = (delay, delay) if isinstance(delay, int | float) else delay
            return cls(
                drop_rate=float(raw.get("drop", 0.0)),
                duplicate_rate=float(raw.get("duplicate", 0.0)),
                delay_seconds=(float(low), float(high)),
                seed=None if raw.get("seed") is None else int(raw["seed"]),
            )
        except (TypeError, ValueError) as exc:
            raise ConfigError(f"invalid fault options {dict(raw)!r}: {exc}") from exc


@dataclass(frozen=True)
class Fate:
    """What the wire does with one request.

    :param copies: how many times it is delivered (0 = dropped, 2 = duplicated).
    :param delay: seconds before delivery.
    """

    copies: int = 1
    delay: float = 0.0


class FaultInjector:
    """Decides each request's :class:`Fate`; thread-safe.

    One-off faults queued with :meth:`drop_next` and :meth:`duplicate_next` are used first,
    then the random plan. Replacing the plan reseeds the generator.
    """

    def __init__(self, plan: FaultPlan | None = None) -> None:
        self._lock = threading.Lock()
        self._plan = plan
        self._rng = random.Random(plan.seed if plan else None)
        self._drops = 0
        self._duplicates = 0

    @property
    def plan(self) -> FaultPlan | None:
        """The random plan in force, or ``None`` for a perfect wire."""
        return self._plan

    @plan.setter
    def plan(self, plan: FaultPlan | None) -> None:
        with self._lock:
            self._plan = plan
            self._rng = random.Random(plan.seed if plan else None)

    def drop_next(self, count: int = 1) -> None:
        """Drop the next ``count`` requests, whatever the plan says."""
        with self._lock:
            self._drops += _positive(count)

    def duplicate_next(self, count: int = 1) -> None:
        """Deliver each of the next ``count`` requests twice."""
        with self._lock:
            self._duplicates += _positive(count)

    def fate(self) -> Fate:
        """Decide the fate of the request being sent now."""
        with self._lock:
            if self._drops:
                self._drops -= 1
                return Fate(copies=0)
            if self._duplicates:
                self._duplicates -= 1
                return Fate(copies=2)
            plan = self._plan
            if plan is None:
                return Fate()
            # Always draw three numbers so that one plan and seed give one sequence of fates.
            drop, duplicate, spread = self._rng.random(), self._rng.random(), self._rng.random()
        low, high = plan.delay_seconds
        if drop < plan.drop_rate:
            return Fate(copies=0)
        copies = 2 if duplicate < plan.duplicate_rate else 1
        return Fate(copies=copies, delay=low + spread * (high - low))


def _positive(count: int) -> int:
    if count < 1:
        raise ValueError(f"count must be at least 1, got {count}")
    return count
