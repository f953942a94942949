"""The replay store: message ids already accepted, kept on disk until they expire.

An envelope is only recorded after it authenticated, so a stranger cannot fill the store; it is
kept until its own expiry (after which :class:`~syft_flwr.crypto.errors.ExpiredError` rejects it
anyway) and pruned then. SQLite makes "seen" survive a restart: a message captured before a
crash is still refused after it. The database runs in WAL mode with ``synchronous=NORMAL``: a
commit survives a crash of the process (the threat here) without an fsync per message; only a
power loss can forget the last few ids.
"""

from __future__ import annotations

import sqlite3
import threading
import time
from pathlib import Path

from syft_flwr.crypto.errors import ReplayError

__all__ = ["ReplayStore"]

_SCHEMA = """
CREATE TABLE IF NOT EXISTS seen (
    sender TEXT NOT NULL,
    message_id BLOB NOT NULL,
    expires REAL NOT NULL,
    PRIMARY KEY (sender, message_id)
)
"""


class ReplayStore:
    """Persistent set of ``(sender, message id)`` pairs, each with its expiry.

    :param path: the SQLite file (created with its parent directory); ``":memory:"`` for tests.
    """

    def __init__(self, path: Path | str) -> None:
        if str(path) != ":memory:":
            Path(path).parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        self._db = sqlite3.connect(str(path), timeout=30.0, check_same_thread=False)
        self._lock = threading.Lock()
        with self._lock, self._db:
            if str(path) != ":memory:":
                self._db.execute("PRAGMA journal_mode=WAL")
            self._db.execute("PRAGMA synchronous=NORMAL")
            self._db.execute(_SCHEMA)

    def check_and_record(
        self, sender: str, message_id: bytes, expires: float, now: float | None = None
    ) -> None:
        """Record ``message_id`` from ``sender``; prune expired entries.

        :raises ReplayError: it was recorded before and has not expired.
        """
        moment = time.time() if now is None else now
        with self._lock, self._db:
            self._db.execute("DELETE FROM seen WHERE expires < ?", (moment,))
            try:
                self._db.execute(
                    "INSERT INTO seen (sender, message_id, expires) VALUES (?, ?, ?)",
                    (sender, message_id, expires),
                )
            except sqlite3.IntegrityError:
                raise ReplayError(
                    f"message {message_id.hex()} from {sender} was already accepted (replay)"
                ) from None

    def __len__(self) -> int:
        with self._lock:
            row = self._db.execute("SELECT COUNT(*) FROM seen").fetchone()
        return int(row[0])

    def close(self) -> None:
        """Close the database. Idempotent."""
        with self._lock:
            self._db.close()
