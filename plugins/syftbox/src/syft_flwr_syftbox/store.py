"""Durable transport state in sqlite: the futures this identity sent, the requests it served.

Kept in ``<data_dir>/.syft-flwr/<identity>/state.sqlite3`` (beside ``datasites/``, so never
synced). Two tables:

- ``futures``: one row per request sent and not yet collected, with where its reply will
  appear and when it expires. A server that restarts (a new process, the same identity and
  data dir) finds them and can still collect replies to what it sent before. A future the
  caller no longer wants (``forget`` before a reply) stays as *forgotten* until its reply
  arrives or it expires, so the files it left behind are cleaned up.
- ``served``: one row per request handed to a handler, until it expires. A request file seen
  again (a duplicating sync engine, a rescan after restart, a second watcher event) is never
  delivered to the application twice: delivery is at most once, the sender's TTL covers loss.

WAL mode and ``synchronous=NORMAL`` keep a commit to a few tens of microseconds, durable
against a crash of the process (not of the machine, which costs an fsync per message).
One connection per transport, serialised by a lock: sqlite connections are not thread-safe.
"""

from __future__ import annotations

import sqlite3
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from syft_flwr.errors import MediumError, TransportError

__all__ = ["FutureRecord", "StateStore"]

_SCHEMA = """
CREATE TABLE IF NOT EXISTS futures (
    id TEXT PRIMARY KEY,
    recipient TEXT NOT NULL,
    app TEXT NOT NULL,
    endpoint TEXT NOT NULL,
    expires REAL NOT NULL,
    forgotten INTEGER NOT NULL DEFAULT 0
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS served (
    sender TEXT NOT NULL,
    id TEXT NOT NULL,
    expires REAL NOT NULL,
    PRIMARY KEY (sender, id)
) WITHOUT ROWID;
"""


@dataclass(frozen=True)
class FutureRecord:
    """A request this identity sent: where its reply appears, and when it stops mattering."""

    id: str
    recipient: str
    app: str
    endpoint: str
    expires: float
    forgotten: bool = False


class StateStore:
    """The sqlite file of one identity; every method is thread-safe."""

    def __init__(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        try:
            self._db = sqlite3.connect(path, check_same_thread=False, isolation_level=None)
            self._db.execute("PRAGMA journal_mode=WAL")
            self._db.execute("PRAGMA synchronous=NORMAL")
            self._db.execute("PRAGMA busy_timeout=10000")
            self._db.executescript(_SCHEMA)
        except sqlite3.Error as exc:
            raise TransportError(f"cannot open the futures database {path}: {exc}") from exc
        self._lock = threading.Lock()
        self.path = path

    def add_future(self, record: FutureRecord) -> None:
        """Record a request about to be written."""
        self._run(
            "INSERT OR REPLACE INTO futures VALUES (?, ?, ?, ?, ?, ?)",
            (
                record.id,
                record.recipient,
                record.app,
                record.endpoint,
                record.expires,
                int(record.forgotten),
            ),
        )

    def future(self, future_id: str) -> FutureRecord | None:
        """The recorded future ``future_id``, or ``None``."""
        rows = self._query("SELECT * FROM futures WHERE id = ?", (future_id,))
        return _record(rows[0]) if rows else None

    def forget_future(self, future_id: str) -> None:
        """Mark a future as no longer wanted (its files are cleaned up later)."""
        self._run("UPDATE futures SET forgotten = 1 WHERE id = ?", (future_id,))

    def delete_future(self, future_id: str) -> None:
        """Drop a future's row."""
        self._run("DELETE FROM futures WHERE id = ?", (future_id,))

    def futures(self, *, forgotten: bool | None = None) -> list[FutureRecord]:
        """All futures, or only the forgotten (or only the wanted) ones."""
        if forgotten is None:
            rows = self._query("SELECT * FROM futures", ())
        else:
            rows = self._query("SELECT * FROM futures WHERE forgotten = ?", (int(forgotten),))
        return [_record(row) for row in rows]

    def mark_served(self, sender: str, request_id: str, expires: float) -> bool:
        """Record that a request goes to its handler; False if it already went once."""
        with self._lock:
            try:
                cursor = self._db.execute(
                    "INSERT OR IGNORE INTO served VALUES (?, ?, ?)", (sender, request_id, expires)
                )
            except sqlite3.Error as exc:
                raise MediumError(f"futures database {self.path}: {exc}") from exc
            return cursor.rowcount == 1

    def prune_served(self, expired_before: float) -> list[tuple[str, str]]:
        """Forget served requests that expired before the given time; return them."""
        rows = self._query("SELECT sender, id FROM served WHERE expires < ?", (expired_before,))
        self._run("DELETE FROM served WHERE expires < ?", (expired_before,))
        return [(str(row[0]), str(row[1])) for row in rows]

    def close(self) -> None:
        """Close the connection; idempotent."""
        with self._lock:
            self._db.close()

    def _run(self, sql: str, params: tuple[object, ...]) -> None:
        with self._lock:
            try:
                self._db.execute(sql, params)
            except sqlite3.Error as exc:
                raise MediumError(f"futures database {self.path}: {exc}") from exc

    def _query(self, sql: str, params: tuple[object, ...]) -> list[tuple[object, ...]]:
        with self._lock:
            try:
                return self._db.execute(sql, params).fetchall()
            except sqlite3.Error as exc:
                raise MediumError(f"futures database {self.path}: {exc}") from exc


def _record(row: tuple[Any, ...]) -> FutureRecord:
    future_id, recipient, app, endpoint, expires, forgotten = row
    return FutureRecord(
        str(future_id), str(recipient), str(app), str(endpoint), float(expires), bool(forgotten)
    )
