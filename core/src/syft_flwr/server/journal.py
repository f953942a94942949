"""The future journal: the messages of the round in progress, kept across a server crash.

``SyftGrid`` records every message it hands to a persistent transport (its future id, where it
went, which round) and, once the reply is collected, the reply itself. When a crashed server
resumes a round, the grid *claims* the journal entry matching each message the strategy pushes
again (same round, datasite, message type and group): a collected one is answered from the
stored reply, an outstanding one by polling its old future, so replies clients sent while the
server was down are used and no client repeats work. Entries are dropped once their round is
committed to a snapshot.

Collected replies are stored after they were opened (sealed replies cannot be opened twice:
the replay store remembers them), as the envelope bytes the grid decoded them from, so nothing
is encoded a second time; the journal directory holds plaintext messages of one round and lives
in the server's private workspace with mode 0600. A reply of at most
:data:`INLINE_REPLY_BYTES` is stored in the database, in the transaction that marks its entry
collected (one write per message, no file to create and later remove); a larger one is a file
under ``replies/``, renamed into place before that transaction.

Durable as the run's workspace is (:class:`~syft_flwr.server.workspace.RunWorkspace`): against
a crash of the process by default (SQLite's WAL with ``synchronous=NORMAL``, reply files
renamed into place), and with ``fsync`` also against a crash of the machine
(``synchronous=FULL``, flushed files), which costs a disk flush or two per message.
"""

from __future__ import annotations

import contextlib
import os
import sqlite3
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from flwr.app import Message

from syft_flwr.errors import WireFormatError, WorkspaceError, WorkspaceIOError
from syft_flwr.files import write_atomic
from syft_flwr.grid.port import JournalEntry
from syft_flwr.wire import decode_message

__all__ = ["INLINE_REPLY_BYTES", "FutureJournal", "JournalEntry"]

INLINE_REPLY_BYTES = 256 * 1024
"""The largest reply stored in the database itself; larger ones (models) are files."""

_SCHEMA = """
CREATE TABLE IF NOT EXISTS entries (
    message_id TEXT PRIMARY KEY,
    epoch INTEGER NOT NULL,
    datasite TEXT NOT NULL,
    message_type TEXT NOT NULL,
    group_id TEXT NOT NULL,
    future_id TEXT NOT NULL,
    created_at REAL NOT NULL,
    ttl REAL NOT NULL,
    expires_at REAL NOT NULL,
    envelope_id BLOB NOT NULL,
    collected INTEGER NOT NULL DEFAULT 0,
    seq INTEGER NOT NULL
);
CREATE INDEX IF NOT EXISTS entries_by_kind
    ON entries (epoch, datasite, message_type, group_id, seq);
CREATE TABLE IF NOT EXISTS replies (
    message_id TEXT PRIMARY KEY,
    envelope BLOB NOT NULL
);
"""
# The server claims an entry for every message it pushes: without the index each claim would
# read every entry of the round, and a round of n messages n^2 rows.


class FutureJournal:
    """A SQLite database of entries and small collected replies, plus one file per large
    collected reply, under ``directory``.

    Thread-safe: legacy strategies push from a thread pool.

    :param fsync: flush every commit to disk (machine-crash durability).
    """

    def __init__(self, directory: Path, *, fsync: bool = False) -> None:
        self.directory = directory
        self.fsync = fsync
        self._replies = directory / "replies"
        try:
            self._replies.mkdir(parents=True, exist_ok=True, mode=0o700)
            # it holds plaintext replies: private from the start (its -wal and -shm files
            # take its mode)
            os.close(os.open(directory / "journal.sqlite", os.O_CREAT | os.O_RDWR, 0o600))
            self._db = sqlite3.connect(
                directory / "journal.sqlite", check_same_thread=False, isolation_level=None
            )
            self._db.execute("PRAGMA journal_mode=WAL")
            self._db.execute(f"PRAGMA synchronous={'FULL' if fsync else 'NORMAL'}")
            self._db.executescript(_SCHEMA)
        except (OSError, sqlite3.Error) as exc:
            raise WorkspaceIOError(f"cannot open the future journal in {directory}: {exc}") from exc
        self._lock = threading.Lock()
        self._claimed: set[str] = set()
        self._seq = self._next_seq()

    def record(self, entry: JournalEntry) -> None:
        """Remember a message just handed to the transport.

        :raises WorkspaceIOError: the journal cannot be written (disk full, read-only).
        """
        with self._lock, self._writing():
            self._seq += 1
            self._db.execute(
                "INSERT OR REPLACE INTO entries VALUES (?,?,?,?,?,?,?,?,?,?,?,?)",
                (
                    entry.message_id,
                    entry.epoch,
                    entry.datasite,
                    entry.message_type,
                    entry.group_id,
                    entry.future_id,
                    entry.created_at,
                    entry.ttl,
                    entry.expires_at,
                    entry.envelope_id,
                    int(entry.collected),
                    self._seq,
                ),
            )
            self._claimed.add(entry.message_id)

    def collected(self, message_id: str, envelope: bytes | bytearray | memoryview) -> None:
        """Store the reply the strategy got for ``message_id`` (before it is used).

        :param envelope: the reply's wire envelope, as the grid opened it (not re-encoded).
        :raises WorkspaceIOError: the file cannot be written.
        """
        path = self._reply_path(message_id)
        inline = len(envelope) <= INLINE_REPLY_BYTES
        if not inline:
            write_atomic(path, envelope, fsync=self.fsync)
        with self._lock, self._writing(), self._transaction():
            if inline:
                self._db.execute(
                    "INSERT OR REPLACE INTO replies VALUES (?, ?)", (message_id, bytes(envelope))
                )
            else:
                self._db.execute("DELETE FROM replies WHERE message_id = ?", (message_id,))
            self._db.execute("UPDATE entries SET collected = 1 WHERE message_id = ?", (message_id,))

    def claim(
        self, epoch: int, datasite: str, message_type: str, group_id: str
    ) -> JournalEntry | None:
        """The oldest unclaimed entry of ``epoch`` matching a message pushed again, if any."""
        with self._lock:
            rows = self._db.execute(
                "SELECT * FROM entries WHERE epoch = ? AND datasite = ? AND message_type = ? "
                "AND group_id = ? ORDER BY seq",
                (epoch, datasite, message_type, group_id),
            ).fetchall()
            for row in rows:
                if row[0] not in self._claimed:
                    self._claimed.add(row[0])
                    return _entry(row)
        return None

    def stored_reply(self, message_id: str) -> Message:
        """The reply stored for a collected entry.

        :raises WorkspaceError: the file is missing or damaged.
        """
        path = self._reply_path(message_id)
        with self._lock:
            row = self._db.execute(
                "SELECT envelope FROM replies WHERE message_id = ?", (message_id,)
            ).fetchone()
        where = f"{self.directory / 'journal.sqlite'} ({message_id})" if row else str(path)
        try:
            return decode_message(row[0] if row else path.read_bytes())
        except (OSError, WireFormatError) as exc:
            raise WorkspaceError(f"the stored reply {where} is unusable: {exc}") from exc

    def entries(self) -> list[JournalEntry]:
        """Every entry, oldest first."""
        with self._lock:
            rows = self._db.execute("SELECT * FROM entries ORDER BY seq").fetchall()
        return [_entry(row) for row in rows]

    def drop_through(self, epoch: int) -> list[JournalEntry]:
        """Remove the entries of rounds up to ``epoch`` (committed); return the removed ones."""
        with self._lock, self._writing(), self._transaction():
            rows = self._db.execute(
                "SELECT * FROM entries WHERE epoch <= ? ORDER BY seq", (epoch,)
            ).fetchall()
            inline = {
                message_id
                for (message_id,) in self._db.execute(
                    "SELECT message_id FROM replies WHERE message_id IN "
                    "(SELECT message_id FROM entries WHERE epoch <= ?)",
                    (epoch,),
                )
            }
            self._db.execute(
                "DELETE FROM replies WHERE message_id IN "
                "(SELECT message_id FROM entries WHERE epoch <= ?)",
                (epoch,),
            )
            self._db.execute("DELETE FROM entries WHERE epoch <= ?", (epoch,))
        dropped = [_entry(row) for row in rows]
        for entry in dropped:
            if entry.message_id not in inline:  # a file, or a kill left one uncollected
                self._reply_path(entry.message_id).unlink(missing_ok=True)
        return dropped

    @contextlib.contextmanager
    def _transaction(self) -> Iterator[None]:
        """The statements inside as one transaction (the connection autocommits otherwise)."""
        self._db.execute("BEGIN IMMEDIATE")
        try:
            yield
            self._db.execute("COMMIT")
        except BaseException:
            with contextlib.suppress(sqlite3.Error):
                self._db.execute("ROLLBACK")
            raise

    @contextlib.contextmanager
    def _writing(self) -> Iterator[None]:
        try:
            yield
        except sqlite3.Error as exc:
            raise WorkspaceIOError(
                f"cannot write the future journal in {self.directory}: {exc}"
            ) from exc

    def close(self) -> None:
        """Close the database. Idempotent."""
        with self._lock:
            self._db.close()

    def _reply_path(self, message_id: str) -> Path:
        if not message_id.isalnum():
            raise WorkspaceError(f"refusing an unsafe message id {message_id!r} as a file name")
        return self._replies / f"{message_id}.sfwm"

    def _next_seq(self) -> int:
        (value,) = self._db.execute("SELECT COALESCE(MAX(seq), 0) FROM entries").fetchone()
        return int(value)


def _entry(row: tuple[Any, ...]) -> JournalEntry:
    (message_id, epoch, datasite, message_type, group_id, future_id, created_at, ttl, expires_at,
     envelope_id, collected, _seq) = row  # fmt: skip
    return JournalEntry(
        str(message_id),
        int(epoch),
        str(datasite),
        str(message_type),
        str(group_id),
        str(future_id),
        float(created_at),
        float(ttl),
        float(expires_at),
        bytes(envelope_id),
        bool(collected),
    )
