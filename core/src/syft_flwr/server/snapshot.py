"""State snapshots: what a run needs to go on after its server process dies.

A round becomes committed in one step: ``state/snapshot.json`` is renamed into place naming
the round, the model file, the strategy's history and the metrics line of every committed
round. Before that the model (an ``ArrayRecord`` in the wire codec's format,
``state/model-<round>.sfwm``) is written under its own name; after it, everything else is
derived from the snapshot and rewritten idempotently (``metrics.jsonl``, the ``round`` of
``run.json``, older model files removed, the round's journal dropped). A kill at any instant
therefore leaves either the previous round committed (and an unreferenced model file, removed
later) or this one, never a half. The metrics history is JSON; ``bytes`` metric values
(possible in legacy Flower metrics) are tagged so they survive the round trip.

The snapshot grows with the rounds, but a commit's Python work does not: each round's metrics
line is encoded once, when its round is committed, and the loops hand over their history with
each round's entries encoded once too (:mod:`syft_flwr.server.fragments`); the file's text is
joined from those fragments, and is exactly what ``json.dumps(..., sort_keys=True)`` writes
for the same snapshot.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

from flwr.app import ArrayRecord, Metadata, RecordDict

from syft_flwr.errors import WireFormatError, WorkspaceError
from syft_flwr.files import read_json, write_atomic
from syft_flwr.kill_points import kill_point
from syft_flwr.message_factory import message_with_metadata
from syft_flwr.server.fragments import RoundEntries, dumps
from syft_flwr.server.workspace import RunWorkspace
from syft_flwr.wire import decode_message, encode_message

__all__ = ["RunSnapshot", "SnapshotStore", "from_json_value", "to_json_value"]

SNAPSHOT_VERSION = 1
_MODEL_KEY = "model"
_BYTES_TAG = "$bytes"


@dataclass(frozen=True)
class RunSnapshot:
    """The content of ``state/snapshot.json``.

    :param round: the last committed round; 0 is the initial model.
    :param style: ``"message"`` or ``"legacy"``: which resume loop wrote it.
    :param history: the metrics history so far, in the style's JSON form (with parts
        :class:`~syft_flwr.server.fragments.Encoded` already in a snapshot saved by the loops).
    :param metrics: the metrics line of every committed round, oldest first (what
        ``metrics.jsonl`` is derived from).
    :param complete: written by versions that marked a finished run here (read only).
    """

    run_id: int
    round: int
    num_rounds: int
    style: str
    history: dict[str, Any]
    model_file: str
    metrics: tuple[dict[str, Any], ...] = ()
    complete: bool = False
    created_at: float = 0.0

    def to_json(self) -> dict[str, Any]:
        """The JSON form."""
        return {
            "version": SNAPSHOT_VERSION,
            "run_id": self.run_id,
            "round": self.round,
            "num_rounds": self.num_rounds,
            "style": self.style,
            "history": self.history,
            "model_file": self.model_file,
            "metrics": list(self.metrics),
            "complete": self.complete,
            "created_at": self.created_at,
        }


class SnapshotStore:
    """Reads and writes the snapshots of one run."""

    def __init__(self, run: RunWorkspace) -> None:
        self.run = run
        # The metrics lines of the committed rounds, encoded: a run's rounds are committed by
        # one store, so each save adds its round's line instead of encoding every round's
        # again (or reading the file back). ``None`` until a save needs them: then they come
        # from the snapshot this store last loaded (``_known``), else from the file.
        self._lines: RoundEntries | None = None
        self._loaded: RunSnapshot | None = None
        self._known = False
        # The model files there can be besides the committed one: those this store wrote since
        # its last prune, and the one that prune kept; ``None`` before the first prune.
        self._models: set[str] | None = None

    def save(
        self,
        round_: int,
        num_rounds: int,
        style: str,
        model: ArrayRecord,
        history: dict[str, Any],
        metrics_line: dict[str, Any] | None = None,
    ) -> RunSnapshot:
        """Commit round ``round_``: the model file, then the snapshot naming it (the commit
        point), carrying the metrics of every committed round with ``metrics_line`` last.

        Committing a round again (a resumed run) replaces its metrics line, never adds one, and
        drops those of later rounds. ``history`` is JSON-safe; its grown parts should be
        :class:`~syft_flwr.server.fragments.Encoded` already (the loops' are).
        """
        lines = self._committed_lines()
        name = f"model-{round_}.sfwm"
        write_atomic(
            self.run.state_dir / name, encode_model(model, self.run.run_id), fsync=self.run.fsync
        )
        if self._models is not None:
            self._models.add(name)
        kill_point("round.model_written")
        try:
            lines.put(round_, {"round": round_, **(metrics_line or {})})
            snapshot = RunSnapshot(
                self.run.run_id,
                round_,
                num_rounds,
                style,
                history,
                name,
                metrics=lines.values(),
                created_at=time.time(),
            )
            text = dumps({**snapshot.to_json(), "metrics": lines.encoded()}, end=b"\n")
            write_atomic(self.run.snapshot_file, text, fsync=self.run.fsync)
        except BaseException:
            # not committed: the next save starts from the file again
            self._lines, self._known = None, False
            raise
        kill_point("round.committed")
        return snapshot

    def _committed_lines(self) -> RoundEntries:
        if self._lines is None:
            previous = self._loaded if self._known else self.load()
            self._lines = RoundEntries()
            for line in previous.metrics if previous is not None else ():
                self._lines.put(line["round"], line)
        return self._lines

    def prune_models(self, snapshot: RunSnapshot) -> None:
        """Remove model files the committed snapshot does not name (derived, idempotent).

        The first prune of a store lists the state folder (a kill may have left any model file
        behind); a later one removes only the files this store wrote or kept since, so a
        round's commit does not list a folder.
        """
        if self._models is None:
            stale = list(self.run.state_dir.glob("model-*.sfwm"))
        else:
            stale = [self.run.state_dir / name for name in self._models]
        for old in stale:
            if old.name != snapshot.model_file:
                old.unlink(missing_ok=True)
        self._models = {snapshot.model_file}

    def load(self) -> RunSnapshot | None:
        """The last committed snapshot, ``None`` if the run committed none.

        :raises WorkspaceError: the snapshot is damaged or from another run.
        """
        self._lines = None  # the file is what counts from here
        if not self.run.snapshot_file.exists():
            self._loaded, self._known = None, True
            return None
        value = read_json(self.run.snapshot_file)
        where = self.run.snapshot_file
        try:
            if value.get("version") != SNAPSHOT_VERSION:
                raise ValueError(f"unsupported version {value.get('version')!r}")
            snapshot = RunSnapshot(
                run_id=int(value["run_id"]),
                round=int(value["round"]),
                num_rounds=int(value["num_rounds"]),
                style=str(value["style"]),
                history=dict(value["history"]),
                model_file=str(value["model_file"]),
                metrics=tuple(dict(m) for m in value.get("metrics", ())),
                complete=bool(value.get("complete", False)),
                created_at=float(value["created_at"]),
            )
        except (AttributeError, KeyError, TypeError, ValueError) as exc:
            raise WorkspaceError(f"{where} is not a valid snapshot: {exc}") from exc
        if snapshot.run_id != self.run.run_id:
            raise WorkspaceError(f"{where} belongs to run {snapshot.run_id}, not {self.run.run_id}")
        if "/" in snapshot.model_file or snapshot.model_file.startswith("."):
            raise WorkspaceError(f"{where} names an unsafe model file {snapshot.model_file!r}")
        self._loaded, self._known = snapshot, True
        return snapshot

    def model(self, snapshot: RunSnapshot) -> ArrayRecord:
        """The model a snapshot names.

        :raises WorkspaceError: the file is missing or damaged.
        """
        path = self.run.state_dir / snapshot.model_file
        try:
            return decode_model(path.read_bytes())
        except (OSError, WireFormatError) as exc:
            raise WorkspaceError(f"the snapshot model {path} is unusable: {exc}") from exc

    def write_final_model(self, snapshot: RunSnapshot) -> None:
        """Keep the committed model as ``final_model.sfwm`` (derived, idempotent).

        :raises WorkspaceError: the snapshot's model file is missing.
        """
        path = self.run.state_dir / snapshot.model_file
        try:
            data = path.read_bytes()
        except OSError as exc:
            raise WorkspaceError(f"the snapshot model {path} is unusable: {exc}") from exc
        write_atomic(self.run.final_model_file, data, fsync=self.run.fsync)


def encode_model(model: ArrayRecord, run_id: int) -> bytes:
    """An ``ArrayRecord`` in the wire codec's format (no copies of the array bytes)."""
    metadata = Metadata(
        run_id=run_id,
        message_id="",
        src_node_id=0,
        dst_node_id=0,
        reply_to_message_id="",
        group_id="snapshot",
        created_at=time.time(),
        ttl=1.0,
        message_type="system",
    )
    message = message_with_metadata(metadata, content=RecordDict({_MODEL_KEY: model}))
    return encode_message(message)


def decode_model(data: bytes) -> ArrayRecord:
    """The ``ArrayRecord`` in bytes written by :func:`encode_model`.

    :raises WireFormatError: the bytes are not such a file.
    """
    message = decode_message(data)
    if not message.has_content() or _MODEL_KEY not in message.content.array_records:
        raise WireFormatError("the file holds no model ArrayRecord")
    return message.content.array_records[_MODEL_KEY]


def to_json_value(value: Any) -> Any:
    """Make a metrics value JSON-safe (bytes are tagged, tuples become lists)."""
    if isinstance(value, bytes):
        return {_BYTES_TAG: value.hex()}
    if isinstance(value, dict):
        return {str(k): to_json_value(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [to_json_value(v) for v in value]
    return value


def from_json_value(value: Any) -> Any:
    """Undo :func:`to_json_value` (lists stay lists)."""
    if isinstance(value, dict):
        if set(value) == {_BYTES_TAG}:
            return bytes.fromhex(value[_BYTES_TAG])
        return {k: from_json_value(v) for k, v in value.items()}
    if isinstance(value, list):
        return [from_json_value(v) for v in value]
    return value
