"""The workspace: one folder per run with everything needed to inspect or resume it.

Layout (``<root>`` is ``SYFT_FLWR_WORKSPACE``, else ``[tool.syft_flwr] workspace`` relative to
the project, else ``<project>/.syft_flwr``)::

    <root>/runs/<run_id>/
        run.json               run id, app, datasites, transport, status, last completed round
        config/pyproject.toml  the project configuration the run started with
        events.jsonl           every engine event, one JSON object per line
        metrics.jsonl          one line per completed round: the metrics of that round
        clients.json           what the server knows about each datasite
        answered.jsonl         each datasite's first answer since the last committed round
        stopped.jsonl          while finishing: each datasite sent its stop signal
        state/snapshot.json    the last committed round: what resume starts from
        state/model-<r>.sfwm   the model after round r (the file snapshot.json names)
        state/journal.sqlite   messages of the round in progress and its small replies
                               (see server.journal)
        state/replies/         the large replies collected in the round in progress
        final_model.sfwm       the final model, once the run finished

``status`` in ``run.json`` is the run's phase:

- ``running`` while the server works on it (and stays so if the process is killed: that is
  what makes it resumable), ``interrupted`` when it stopped on a fault (the medium or the
  workspace failed): both are resumed by the next start;
- ``finishing`` once its outcome is known and stop signals are being sent: ``outcome`` says
  ``finished`` or ``failed`` and ``stop_pending`` lists the datasites not told yet; the next
  start only sends those and ends the run;
- ``finished`` or ``failed`` at the end, or ``abandoned`` when a fresh run replaced an
  interrupted one. A run in one of these is never resumed.

Files are written atomically and readable only by their owner, durable against a crash of the
server process; with ``fsync`` (``SYFT_FLWR_FSYNC=true``) also against a crash of the machine,
at two disk flushes per file (see :mod:`syft_flwr.files`). ``metrics.jsonl`` and the
``round`` of ``run.json`` are derived from the committed snapshot (``state/snapshot.json``, the
one commit point of a round) and written from it (``metrics.jsonl`` gains the round's line,
rewritten whole only by a restarted server), so they never show an uncommitted round.
A datasite's first answer is committed as one line of ``answered.jsonl``, and while finishing
each stop signal sent as one line of ``stopped.jsonl`` (a rewrite of ``run.json``, which lists
every datasite, per datasite would cost n^2 for n datasites); ``run.json`` takes the answers
in at the next committed round, and its ``stop_pending`` is emptied once the run ends.
"""

from __future__ import annotations

import json
import shutil
import time
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

from syft_flwr.errors import WorkspaceError, WorkspaceIOError
from syft_flwr.files import (
    LineAppender,
    append_json_line,
    read_json,
    read_json_lines,
    write_atomic,
    write_json,
)

__all__ = [
    "ABANDONED",
    "DONE",
    "FAILED",
    "FINISHED",
    "FINISHING",
    "INTERRUPTED",
    "RESUMABLE",
    "RUNNING",
    "RunInfo",
    "RunWorkspace",
    "Workspace",
]

RUNNING = "running"
INTERRUPTED = "interrupted"
FINISHING = "finishing"
FINISHED = "finished"
FAILED = "failed"
ABANDONED = "abandoned"
RESUMABLE = frozenset({RUNNING, INTERRUPTED})
"""Statuses of a run the next start resumes (``finishing`` is completed instead)."""
DONE = frozenset({FINISHED, FAILED, ABANDONED})
"""Statuses of a run that is over."""
_STATUSES = RESUMABLE | DONE | {FINISHING}


@dataclass(frozen=True)
class RunInfo:
    """The contents of ``run.json``."""

    run_id: int
    app_name: str
    datasites: tuple[str, ...]
    transport: str
    status: str = RUNNING
    started_at: float = field(default_factory=time.time)
    updated_at: float = field(default_factory=time.time)
    finished_at: float | None = None
    error: str | None = None
    round: int | None = None
    """The last committed round (0 = initial model), ``None`` before any."""
    num_rounds: int | None = None
    style: str | None = None
    """``"message"`` (``Strategy.start``) or ``"legacy"`` (``server_fn``), once known."""
    resumed: int = 0
    """How many times the run was resumed after an interruption."""
    outcome: str | None = None
    """``finished`` or ``failed``, once known (from ``finishing`` on)."""
    stop_pending: tuple[str, ...] = ()
    """While ``finishing``: the datasites that have not been sent the stop signal yet."""
    answered: tuple[str, ...] = ()
    """The datasites that answered at least one message, up to the last committed round."""

    def to_json(self) -> dict[str, Any]:
        """The JSON form."""
        value = asdict(self)
        value["datasites"] = list(self.datasites)
        value["stop_pending"] = list(self.stop_pending)
        value["answered"] = list(self.answered)
        return value

    @classmethod
    def from_json(cls, value: object, where: Path) -> RunInfo:
        """Parse ``run.json``.

        :raises WorkspaceError: a field is missing or of the wrong type (names the file).
        """
        try:
            if not isinstance(value, dict):
                raise TypeError("not an object")
            info = cls(
                **{
                    **value,
                    "datasites": tuple(value["datasites"]),
                    "stop_pending": tuple(value.get("stop_pending", ())),
                    "answered": tuple(value.get("answered", ())),
                }
            )
            if not isinstance(info.run_id, int) or info.status not in _STATUSES:
                raise ValueError(f"bad run_id or status {info.status!r}")
        except (TypeError, KeyError, ValueError) as exc:
            raise WorkspaceError(f"{where} is not a valid run description: {exc}") from exc
        return info


class RunWorkspace:
    """The folder of one run.

    :param fsync: flush every file of the run to disk (machine-crash durability).
    """

    def __init__(self, path: Path, *, fsync: bool = False) -> None:
        self.path = path
        self.fsync = fsync
        self.state_dir = path / "state"
        self.run_file = path / "run.json"
        self.events_file = path / "events.jsonl"
        self.metrics_file = path / "metrics.jsonl"
        self.clients_file = path / "clients.json"
        self.answered_file = path / "answered.jsonl"
        self.stopped_file = path / "stopped.jsonl"
        self.snapshot_file = self.state_dir / "snapshot.json"
        self.final_model_file = path / "final_model.sfwm"
        self._events = LineAppender(self.events_file, fsync=fsync)
        # the lines this object last left in metrics.jsonl; None: unknown, rewrite it whole
        self._metrics_written: tuple[Mapping[str, Any], ...] | None = None

    @property
    def run_id(self) -> int:
        """The run id (the folder's name)."""
        return int(self.path.name)

    def info(self) -> RunInfo:
        """What ``run.json`` says."""
        return RunInfo.from_json(read_json(self.run_file), self.run_file)

    def write_info(self, info: RunInfo) -> None:
        """Replace ``run.json``."""
        write_json(self.run_file, replace(info, updated_at=time.time()).to_json(), fsync=self.fsync)

    def update(self, **changes: Any) -> RunInfo:
        """Change some fields of ``run.json``; return the new info."""
        info = replace(self.info(), **changes)
        self.write_info(info)
        return info

    def snapshot_config(self, source: Path | None) -> None:
        """Keep a copy of the project configuration the run started with."""
        if source is not None and source.is_file():
            write_atomic(self.path / "config" / source.name, source.read_bytes(), fsync=self.fsync)

    def append_event(self, event: Mapping[str, Any]) -> None:
        """Add one line to ``events.jsonl`` (through a descriptor kept open until
        :meth:`close`: a run records several events per message)."""
        self._events.append(dict(event))

    def close(self) -> None:
        """Release the descriptor of ``events.jsonl`` (idempotent; a later event reopens it)."""
        self._events.close()

    def events(self) -> list[dict[str, Any]]:
        """Every recorded event."""
        return read_json_lines(self.events_file)

    def note_answered(self, datasite: str) -> None:
        """Commit that ``datasite`` answered: one line appended, whatever the run's size."""
        append_json_line(self.answered_file, datasite, fsync=self.fsync)

    def answered(self) -> set[str]:
        """The datasites that answered: ``run.json``'s (up to the last committed round) and
        those noted since."""
        noted = {line for line in read_json_lines(self.answered_file) if isinstance(line, str)}
        return set(self.info().answered) | noted

    def note_stopped(self, datasite: str) -> None:
        """Commit that ``datasite`` was sent its stop signal: one line appended."""
        append_json_line(self.stopped_file, datasite, fsync=self.fsync)

    def stop_pending(self) -> tuple[str, ...]:
        """The datasites still due their stop signal: ``run.json``'s less those noted."""
        noted = set(read_json_lines(self.stopped_file))
        return tuple(datasite for datasite in self.info().stop_pending if datasite not in noted)

    def write_metrics(self, metrics: Sequence[Mapping[str, Any]]) -> None:
        """Make ``metrics.jsonl`` one line per committed round (derived, idempotent).

        The first write of this object replaces the file; a later one whose ``metrics`` begin
        with what it wrote before appends only the new lines, so committing round n writes
        one line, not n. A line torn by a kill is skipped by readers, and the restarted
        server's first write replaces the file again.

        The lines are kept as given, not copied (the committed snapshot's, never changed in
        place): comparing the same objects again is a pointer check per line, in C, where
        copying them would be Python work per committed round at every commit.
        """
        lines = tuple(metrics)
        done, self._metrics_written = self._metrics_written, None
        if done is not None and lines[: len(done)] == done:
            for line in lines[len(done) :]:
                append_json_line(self.metrics_file, dict(line), fsync=self.fsync)
        else:
            text = "".join(json.dumps(dict(m), sort_keys=True, default=str) + "\n" for m in lines)
            write_atomic(self.metrics_file, text.encode(), fsync=self.fsync)
        self._metrics_written = lines

    def metrics(self) -> list[dict[str, Any]]:
        """The metrics history, one entry per committed round."""
        return read_json_lines(self.metrics_file)

    def write_clients(self, clients: Mapping[str, Any]) -> None:
        """Replace ``clients.json``."""
        write_json(self.clients_file, dict(clients), fsync=self.fsync)

    def clients(self) -> dict[str, Any]:
        """What ``clients.json`` says (empty before the first write)."""
        if not self.clients_file.exists():
            return {}
        value = read_json(self.clients_file)
        return value if isinstance(value, dict) else {}


class Workspace:
    """All runs of one project, under ``root``.

    :param fsync: the runs' files are flushed to disk (see :class:`RunWorkspace`).
    """

    def __init__(self, root: Path, *, fsync: bool = False) -> None:
        self.root = root
        self.fsync = fsync
        self.runs_dir = root / "runs"

    def create_run(self, info: RunInfo, config_source: Path | None = None) -> RunWorkspace:
        """Make the folder of a new run and write its ``run.json``.

        :raises WorkspaceError: a run with that id exists already.
        :raises WorkspaceIOError: the folder cannot be made (disk full, read-only).
        """
        run = RunWorkspace(self.runs_dir / str(info.run_id), fsync=self.fsync)
        try:
            run.path.mkdir(parents=True, mode=0o700)
            run.state_dir.mkdir(mode=0o700)
        except FileExistsError:
            raise WorkspaceError(f"a run {info.run_id} exists already in {self.runs_dir}") from None
        except OSError as exc:
            raise WorkspaceIOError(f"cannot create a run folder in {self.runs_dir}: {exc}") from exc
        run.write_info(info)
        run.snapshot_config(config_source)
        return run

    def runs(self) -> list[RunWorkspace]:
        """Every run folder, oldest first (by start time)."""
        if not self.runs_dir.is_dir():
            return []
        found = []
        for path in self.runs_dir.iterdir():
            if path.name.isdigit() and (path / "run.json").is_file():
                run = RunWorkspace(path, fsync=self.fsync)
                try:
                    found.append((run.info().started_at, run))
                except WorkspaceError:
                    continue  # a folder a crash left before run.json was complete
        return [run for _, run in sorted(found, key=lambda item: item[0])]

    def latest(self) -> RunWorkspace | None:
        """The most recently started run."""
        runs = self.runs()
        return runs[-1] if runs else None

    def latest_of(self, app_name: str) -> RunWorkspace | None:
        """The most recently started run of ``app_name``."""
        for run in reversed(self.runs()):
            if run.info().app_name == app_name:
                return run
        return None

    def interrupted(self, app_name: str) -> RunWorkspace | None:
        """The latest run of ``app_name`` that is ``running`` or ``interrupted``: one to resume."""
        for run in reversed(self.runs()):
            info = run.info()
            if info.app_name == app_name and info.status in RESUMABLE:
                return run
        return None

    def remove(self, run: RunWorkspace) -> None:
        """Delete a run's folder."""
        shutil.rmtree(run.path, ignore_errors=True)
