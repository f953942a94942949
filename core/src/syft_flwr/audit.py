"""The audit trail of a datasite: one line per request it accepted, held or refused.

A data owner must be able to answer "who asked my datasite for what, and what did it do?" long
after a run, also for requests it refused (that is where an attack shows). So every request a
datasite's gate decides on is appended to ``audit.jsonl`` in the datasite's workspace
(:class:`~syft_flwr.client.workspace.DatasiteWorkspace`), as one JSON object per line::

    {"time": 1767225600.1, "datasite": "alice@hospital-a.org", "sender": "mallory@evil.org",
     "endpoint": "messages", "request_id": "...", "run_id": null, "message_type": null,
     "group_id": null, "body_size": 1832, "outcome": "refused",
     "reason": "mallory@evil.org is not a trusted aggregator"}

``outcome`` is one of :data:`OUTCOMES`. ``run_id``/``message_type`` are ``null`` for requests
refused before they were opened: a stranger's bytes are never decrypted or decoded.

The file is bounded: past ``max_bytes`` it is rotated to ``audit.jsonl.1`` (older ones shift up
to ``backups``), so an attacker flooding a datasite can fill at most ``(backups + 1) * max_bytes``
of its disk, and loses the oldest lines first. Lines are appended with one ``write`` each (whole
lines, ``O_APPEND``); a line torn by a crash is ended before the next one is written, and
skipped by :func:`read_audit`. Appends are not
fsynced: the trail may lose its last lines in a power failure, never its order or its shape.
"""

from __future__ import annotations

import json
import logging
import os
import threading
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Final

from syft_flwr.errors import WorkspaceError
from syft_flwr.files import read_json_lines

__all__ = [
    "ACCEPTED",
    "DEFAULT_AUDIT_BACKUPS",
    "DEFAULT_AUDIT_MAX_BYTES",
    "DROPPED",
    "HELD",
    "OUTCOMES",
    "REFUSED",
    "AuditRecord",
    "AuditTrail",
    "read_audit",
]

logger = logging.getLogger(__name__)

ACCEPTED: Final = "accepted"
"""Handed to the ``ClientApp`` or an aux handler (or, for a stop signal, obeyed)."""
REFUSED: Final = "refused"
"""Answered with a refusal: an untrusted sender, a denied run, a request that cannot be opened."""
DROPPED: Final = "dropped"
"""Not answered: a duplicate, an expired request, a stale stop signal."""
HELD: Final = "held"
"""Waiting for the owner's ``syft-flwr approve`` (``approve = "manual"``)."""
OUTCOMES: Final = (ACCEPTED, REFUSED, DROPPED, HELD)

DEFAULT_AUDIT_MAX_BYTES: Final = 8 * 1024 * 1024
DEFAULT_AUDIT_BACKUPS: Final = 3
_MAX_REASON: Final = 500


@dataclass(frozen=True)
class AuditRecord:
    """One decision about one request.

    :param datasite: the datasite that decided (this process's identity).
    :param sender: who sent the request, as the transport established it.
    :param endpoint: where it arrived (``messages``, ``aux``).
    :param request_id: the transport's request id.
    :param outcome: one of :data:`OUTCOMES`.
    :param reason: why, for anything but a plain acceptance.
    :param run_id: the run the message belongs to, once it was opened.
    :param message_type: the Flower message type (``train``, ``system``, ...), once opened.
    :param group_id: the Flower group id (``aux``, ``final``, a round number), once opened.
    :param body_size: the request body's size in bytes, when known.
    :param time: when the decision was taken (seconds since the epoch).
    """

    datasite: str
    sender: str
    endpoint: str
    request_id: str
    outcome: str
    reason: str = ""
    run_id: int | None = None
    message_type: str | None = None
    group_id: str | None = None
    body_size: int | None = None
    time: float = field(default_factory=time.time)

    def to_json(self) -> dict[str, Any]:
        """The JSON form (a reason longer than 500 characters is cut)."""
        value = asdict(self)
        value["reason"] = self.reason[:_MAX_REASON]
        return value


class AuditTrail:
    """Appends :class:`AuditRecord` lines to one bounded, rotated file. Thread-safe.

    :param path: the ``audit.jsonl`` file (its folder is created on first write).
    :param max_bytes: rotate once the file would grow past this size.
    :param backups: how many rotated files to keep.
    """

    def __init__(
        self,
        path: Path,
        *,
        max_bytes: int = DEFAULT_AUDIT_MAX_BYTES,
        backups: int = DEFAULT_AUDIT_BACKUPS,
    ) -> None:
        if max_bytes <= 0 or backups < 0:
            raise ValueError("max_bytes must be positive and backups non-negative")
        self.path = path
        self.max_bytes = max_bytes
        self.backups = backups
        self._lock = threading.Lock()
        self._failed = False

    def record(self, record: AuditRecord) -> None:
        """Append ``record``; a failure to write is logged once and never raised.

        Serving must not stop because the audit disk is full: the decision stands, and the
        owner learns from the log that the trail has a gap.
        """
        line = (json.dumps(record.to_json(), sort_keys=True) + "\n").encode("utf-8")
        with self._lock:
            try:
                self._append(line)
            except OSError as exc:
                if not self._failed:
                    logger.error("cannot write the audit trail %s: %s", self.path, exc)
                self._failed = True
            else:
                self._failed = False

    def _append(self, line: bytes) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        try:
            size = self.path.stat().st_size
        except FileNotFoundError:
            size = 0
        if size and size + len(line) > self.max_bytes:
            self._rotate()
            size = 0
        fd = os.open(self.path, os.O_RDWR | os.O_APPEND | os.O_CREAT | os.O_CLOEXEC, 0o600)
        try:
            if size and os.pread(fd, 1, size - 1) != b"\n":
                line = b"\n" + line  # end a line torn by a crash, or this one is lost with it
            os.write(fd, line)
        finally:
            os.close(fd)

    def _rotate(self) -> None:
        if self.backups == 0:
            self.path.unlink(missing_ok=True)
            return
        for index in range(self.backups - 1, 0, -1):
            older = _rotated(self.path, index)
            if older.exists():
                os.replace(older, _rotated(self.path, index + 1))
        os.replace(self.path, _rotated(self.path, 1))


def _rotated(path: Path, index: int) -> Path:
    return path.with_name(f"{path.name}.{index}")


def read_audit(path: Path, backups: int = DEFAULT_AUDIT_BACKUPS) -> list[dict[str, Any]]:
    """Every line of the trail at ``path``, rotated files included, oldest first.

    :raises WorkspaceError: a file of the trail exists but cannot be read.
    """
    records: list[dict[str, Any]] = []
    for candidate in [*(_rotated(path, i) for i in range(backups, 0, -1)), path]:
        try:
            lines = read_json_lines(candidate)
        except (OSError, UnicodeDecodeError) as exc:
            raise WorkspaceError(f"cannot read the audit trail {candidate}: {exc}") from exc
        records.extend(line for line in lines if isinstance(line, dict))
    return records
