"""Owner approval of runs: ``approve = "manual"`` holds a new run until its owner decides.

Trusting an aggregator (:mod:`syft_flwr.authorization`) says who may ask; some data owners also
want to say *when*: each new run is held until they have looked at it. With
``[tool.syft_flwr] approve = "manual"`` on the datasite's side, the first request of a run the
owner has not decided on is held, and the run is written to
``approvals/<run_id>.pending.json`` in the datasite's workspace (aggregator, app, first and last
request, message types, the resources a resource check asked for). ``syft-flwr status`` lists it;
``syft-flwr approve RUN_ID`` or ``syft-flwr deny RUN_ID`` writes
``approvals/<run_id>.decision.json``. A held request is served as soon as the run is approved (if
its TTL has not run out by then: a round that timed out meanwhile counts as a failure on the
server, and the next round is served), and refused with :class:`~syft_flwr.errors.RunDeniedError`
when denied. The run's stop signal is never held.

The datasite process writes only pending files and the owner's command only decision files, so
the two never overwrite each other's writes; both are written atomically.
"""

from __future__ import annotations

import enum
import logging
import re
import time
from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

from syft_flwr.errors import ConfigError, WorkspaceError
from syft_flwr.files import read_json, write_json

__all__ = [
    "APPROVED",
    "DENIED",
    "ApprovalBook",
    "ApprovalMode",
    "Decision",
    "PendingRun",
]

logger = logging.getLogger(__name__)

APPROVED = "approved"
DENIED = "denied"
_DECISIONS = {APPROVED, DENIED}
_PENDING_SUFFIX = ".pending.json"
_DECISION_SUFFIX = ".decision.json"
_RUN_NAME = re.compile(r"-?\d{1,20}")


class ApprovalMode(enum.Enum):
    """``[tool.syft_flwr] approve``: whether a trusted aggregator's new runs need the owner."""

    AUTO = "auto"
    """Serve every run of a trusted aggregator (the default)."""
    MANUAL = "manual"
    """Hold each new run until ``syft-flwr approve`` (or ``deny``)."""

    @classmethod
    def parse(cls, value: object, where: str) -> ApprovalMode:
        """The mode named by ``value``.

        :raises ConfigError: it is not ``"auto"`` or ``"manual"``.
        """
        for mode in cls:
            if value == mode.value:
                return mode
        raise ConfigError(f'approve in {where} must be "auto" or "manual", got {value!r}')


@dataclass(frozen=True)
class PendingRun:
    """A run waiting for its owner's decision, as ``syft-flwr status`` shows it."""

    run_id: int
    aggregator: str
    app: str
    first_seen: float
    last_seen: float
    requests: int = 1
    message_types: tuple[str, ...] = ()
    resources: Mapping[str, Any] | None = None
    """What the run's resource check asked for, if one came."""

    def to_json(self) -> dict[str, Any]:
        """The JSON form."""
        value = asdict(self)
        value["message_types"] = list(self.message_types)
        value["resources"] = None if self.resources is None else dict(self.resources)
        return value

    @classmethod
    def from_json(cls, value: object, where: Path) -> PendingRun:
        """Parse a pending file.

        :raises WorkspaceError: it is not a pending run (names the file).
        """
        try:
            if not isinstance(value, dict):
                raise TypeError("not an object")
            run = cls(**{**value, "message_types": tuple(value.get("message_types", ()))})
            if not isinstance(run.run_id, int) or not isinstance(run.aggregator, str):
                raise TypeError("run_id must be an int and aggregator a string")
        except (TypeError, ValueError) as exc:
            raise WorkspaceError(f"{where} is not a pending run: {exc}") from exc
        return run


@dataclass(frozen=True)
class Decision:
    """The owner's decision on one run."""

    run_id: int
    decision: str
    decided_at: float = field(default_factory=time.time)

    @property
    def approved(self) -> bool:
        """Whether the run may be served."""
        return self.decision == APPROVED


class ApprovalBook:
    """Pending runs and decisions in one folder (``approvals/`` of the datasite workspace).

    :param folder: the folder (created on first write).
    :param clock: wall-clock seconds, for the pending files' times.
    """

    def __init__(self, folder: Path, *, clock: Callable[[], float] = time.time) -> None:
        self.folder = folder
        self._clock = clock

    def decision(self, run_id: int) -> Decision | None:
        """The owner's decision on ``run_id``, ``None`` while there is none.

        An unreadable decision file counts as no decision (logged): holding is the safe side.
        """
        path = self._path(run_id, _DECISION_SUFFIX)
        if not path.exists():
            return None
        try:
            value = read_json(path)
            decision = Decision(int(value["run_id"]), str(value["decision"]), value["decided_at"])
            if decision.decision not in _DECISIONS or decision.run_id != run_id:
                raise ValueError(f"decision {decision.decision!r} for run {decision.run_id}")
        except (WorkspaceError, KeyError, TypeError, ValueError) as exc:
            logger.warning("ignoring the unreadable decision file %s: %s", path, exc)
            return None
        return decision

    def decide(self, run_id: int, approve: bool) -> Decision:
        """Record the owner's decision on ``run_id`` (replacing an earlier one)."""
        decision = Decision(run_id, APPROVED if approve else DENIED, self._clock())
        write_json(self._path(run_id, _DECISION_SUFFIX), asdict(decision))
        return decision

    def note_request(
        self,
        run_id: int,
        aggregator: str,
        app: str,
        message_type: str,
        resources: Mapping[str, Any] | None = None,
    ) -> PendingRun:
        """Record that a request of the undecided run ``run_id`` is waiting."""
        now = self._clock()
        path = self._path(run_id, _PENDING_SUFFIX)
        known = self._read_pending(path)
        if known is None:
            pending = PendingRun(run_id, aggregator, app, now, now, 1, (message_type,), resources)
        else:
            types = known.message_types
            pending = replace(
                known,
                last_seen=now,
                requests=known.requests + 1,
                message_types=types if message_type in types else (*types, message_type),
                resources=resources if resources is not None else known.resources,
            )
        write_json(path, pending.to_json())
        return pending

    def pending(self) -> list[PendingRun]:
        """The runs that wait for a decision, oldest first."""
        runs = []
        for path in sorted(self.folder.glob(f"*{_PENDING_SUFFIX}")):
            run = self._read_pending(path)
            if run is not None and self.decision(run.run_id) is None:
                runs.append(run)
        return sorted(runs, key=lambda run: run.first_seen)

    def known(self, run_id: int) -> bool:
        """Whether ``run_id`` was ever seen here (pending or decided)."""
        return any(self._path(run_id, suffix).exists() for suffix in _SUFFIXES)

    def _read_pending(self, path: Path) -> PendingRun | None:
        if not path.exists():
            return None
        try:
            return PendingRun.from_json(read_json(path), path)
        except WorkspaceError as exc:
            logger.warning("ignoring the unreadable pending file %s: %s", path, exc)
            return None

    def _path(self, run_id: int, suffix: str) -> Path:
        name = str(int(run_id))
        if not _RUN_NAME.fullmatch(name):
            raise WorkspaceError(f"run id {run_id!r} cannot name an approval file")
        return self.folder / f"{name}{suffix}"


_SUFFIXES = (_PENDING_SUFFIX, _DECISION_SUFFIX)
