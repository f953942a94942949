"""Every SQL statement of the transport, behind one connection per transport instance.

The store knows rows, not policy: *when* a future counts as expired or *what* a handler's
answer becomes is decided in :mod:`syft_flwr_sqlite.transport`. Each method is one
statement, or one ``BEGIN IMMEDIATE`` transaction when several statements must see and
change the database as a unit.

Why one connection guarded by a lock rather than one connection per thread: the
transport's threads (a Flower strategy's thread pool, the serving loop) only ever hold the
connection for one short statement, SQLite lets one writer in at a time anyway, and a
single connection is trivial to close. Concurrency *between processes* is where the
database does the work: WAL mode, the busy timeout, and ``BEGIN IMMEDIATE`` (see
:meth:`Store.claim_next`).
"""

from __future__ import annotations

import sqlite3
import threading
from collections.abc import Collection, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from syft_flwr.errors import TransportError
from syft_flwr.transport import Reply, ReplyStatus, Request

from syft_flwr_sqlite.schema import connect

__all__ = ["ClaimedRow", "FutureState", "Store"]

EXPIRED_DETAIL = "no answer before the request expired"

_REQUEST_COLUMNS = (
    "id",
    "sender",
    "recipient",
    "app",
    "endpoint",
    "body",
    "created_at",
    "expires_at",
)
"""The ``requests`` columns a handler sees, named like the fields of ``Request``."""

_HEAD_COLUMNS = (
    "rowid",
    "id",
    "sender",
    "recipient",
    "app",
    "endpoint",
    "created_at",
    "expires_at",
    "typeof(body)",
    "length(body)",
)
"""What a claim reads: everything but the body itself (``length`` does not load a blob)."""


@dataclass(frozen=True)
class FutureState:
    """What the sender's side of a request looks like right now.

    :param expires_at: when the request expires (seconds since the epoch).
    :param reply: how the future was settled, ``None`` while it is open.
    """

    expires_at: float
    reply: Reply | None


@dataclass(frozen=True)
class ClaimedRow:
    """A request row this instance claimed, read without its body.

    Every value is what the file holds, typed ``object``: anyone who can write the file can put
    anything of any type in any column (SQLite checks no types), so the transport checks each
    one before it trusts it.

    :param rowid: SQLite's own row id: unlike ``id`` (which can be ``NULL`` even though it is the
        primary key), always there and unique, so the row can be found again.
    :param body_type: ``typeof(body)``; ``blob`` for every row a sender wrote.
    :param size: ``length(body)``: bytes for a blob.
    """

    rowid: int
    id: object
    sender: object
    recipient: object
    app: object
    endpoint: object
    created_at: object
    expires_at: object
    body_type: str
    size: object


class Store:
    """The database, as the operations the transport needs.

    :param path: the database file (created with the schema if new).
    :param busy_timeout: seconds a statement waits for another process's write lock.
    :raises ConfigError: the file cannot be used (see :func:`~syft_flwr_sqlite.schema.connect`).
    """

    def __init__(self, path: Path, busy_timeout: float) -> None:
        self.path = path
        self._lock = threading.Lock()
        self._connection: sqlite3.Connection | None = connect(path, busy_timeout)

    # -- sending side -----------------------------------------------------------------------

    def add(self, request: Request) -> None:
        """Queue ``request`` in its recipient's inbox; its row is also the sender's future."""
        with self._session("queue a request") as connection:
            connection.execute(
                f"INSERT INTO requests ({', '.join(_REQUEST_COLUMNS)})"
                f" VALUES ({', '.join('?' for _ in _REQUEST_COLUMNS)})",
                [getattr(request, column) for column in _REQUEST_COLUMNS],
            )

    def future(self, future_id: str, sender: str) -> FutureState | None:
        """The state of ``sender``'s future, ``None`` if it is unknown or forgotten.

        One primary-key lookup: this runs every poll interval for every open future.
        """
        with self._session("poll a future") as connection:
            row = connection.execute(
                "SELECT q.expires_at, r.status, r.body, r.detail"
                " FROM requests AS q LEFT JOIN replies AS r ON r.future_id = q.id"
                " WHERE q.id = ? AND q.sender = ? AND q.forgotten = 0",
                (future_id, sender),
            ).fetchone()
        if row is None:
            return None
        expires_at, status, body, detail = row
        reply = None if status is None else Reply(future_id, ReplyStatus(status), body, detail)
        return FutureState(expires_at, reply)

    def expire(self, future_id: str, sender: str, now: float) -> Reply | None:
        """Settle ``sender``'s future as expired unless it was settled already; return the
        reply that won (``None`` if the future is unknown, forgotten or not yet expired).

        An answer committed a moment after the sender saw none cannot replace ``EXPIRED``
        later: the reply row exists now, and ``INSERT OR IGNORE`` keeps the first one.
        """
        with self._transaction("expire a future") as connection:
            connection.execute(
                "INSERT OR IGNORE INTO replies (future_id, status, body, detail, replied_at)"
                " SELECT id, ?, x'', ?, ? FROM requests"
                " WHERE id = ? AND sender = ? AND forgotten = 0 AND expires_at <= ?",
                (ReplyStatus.EXPIRED.value, EXPIRED_DETAIL, now, future_id, sender, now),
            )
        state = self.future(future_id, sender)
        return None if state is None else state.reply

    def forget(self, future_id: str, sender: str, now: float) -> None:
        """Drop ``sender``'s future: delete its rows, or, while the request still waits to
        be delivered, mark it so that its reply is never stored.

        A queued request is not withdrawn because "send, then forget" is how a message
        that wants no answer is sent (the stop signal); the row goes once it is handled.
        """
        with self._transaction("forget a future") as connection:
            connection.execute(
                "DELETE FROM requests WHERE id = ? AND sender = ?"
                " AND (claimed_by IS NOT NULL OR expires_at <= ?)",
                (future_id, sender, now),
            )
            connection.execute(
                "UPDATE requests SET forgotten = 1 WHERE id = ? AND sender = ?",
                (future_id, sender),
            )

    # -- serving side -----------------------------------------------------------------------

    def claim_next(
        self, recipient: str, endpoints: Collection[tuple[str, str]], claimant: str, now: float
    ) -> ClaimedRow | None:
        """Take the oldest live request for one of ``endpoints`` of ``recipient``, if any.

        Claiming is what makes two instances of one datasite (two processes, or a process
        and its restarted successor) never handle the same request: ``BEGIN IMMEDIATE``
        takes the database's single write lock *before* the ``SELECT``, so between finding
        a request and marking it ``claimed_by`` this instance, nobody else can claim it.

        The body is not read here: the transport screens the row first and fetches the body
        with :meth:`take_body` only if it admits the request, so a refused body is never
        loaded. The write lock is only taken when a plain read (which never blocks anyone in
        WAL mode) saw something to claim, so idle datasites polling every interval cost the
        busy ones nothing. Requests for endpoints not in ``endpoints`` are never claimed:
        another process of the same datasite may serve them.

        :param claimant: recorded in ``claimed_by``, to tell instances apart when debugging
            and so that :meth:`take_body` reads only rows this instance claimed.
        """
        if not endpoints:
            return None
        where, parameters = _inbox(recipient, endpoints, now)
        with self._session("look for requests") as connection:
            found = connection.execute(f"SELECT 1 FROM requests WHERE {where} LIMIT 1", parameters)
            if found.fetchone() is None:
                return None
        with self._transaction("claim a request") as connection:
            row = connection.execute(
                f"SELECT {', '.join(_HEAD_COLUMNS)}"
                f" FROM requests WHERE {where} ORDER BY created_at LIMIT 1",
                parameters,
            ).fetchone()
            if row is None:  # another instance of this datasite claimed it first
                return None
            connection.execute(
                "UPDATE requests SET claimed_by = ?, claimed_at = ? WHERE rowid = ?",
                (claimant, now, row[0]),
            )
        return ClaimedRow(*row)

    def take_body(self, claimed: ClaimedRow, claimant: str) -> bytes | None:
        """The body of a row ``claimant`` claimed, dropped from the row as it is read.

        Only a row that still holds what was screened yields it (the sender, and a blob of
        exactly ``claimed.size`` bytes), so a writer that changes the row after the screen
        cannot get another sender's request, or a larger body, delivered.

        :return: ``None`` if the row changed since it was claimed.
        """
        with self._transaction("read a request body") as connection:
            row = connection.execute(
                "SELECT body FROM requests WHERE rowid = ? AND claimed_by = ? AND sender = ?"
                " AND typeof(body) = 'blob' AND length(body) = ?",
                (claimed.rowid, claimant, claimed.sender, claimed.size),
            ).fetchone()
            connection.execute("UPDATE requests SET body = NULL WHERE rowid = ?", (claimed.rowid,))
        return None if row is None else bytes(row[0])

    def drop_body(self, claimed: ClaimedRow) -> None:
        """Drop the body of a claimed row that will not be delivered: nobody reads it again."""
        with self._session("drop a request body") as connection:
            connection.execute("UPDATE requests SET body = NULL WHERE rowid = ?", (claimed.rowid,))

    def delete(self, claimed: ClaimedRow) -> None:
        """Delete a claimed row no sender's transport wrote: nobody can poll it, and the
        clean-up might never match it (its ``expires_at`` need not even be a number)."""
        with self._session("delete a malformed request") as connection:
            connection.execute("DELETE FROM requests WHERE rowid = ?", (claimed.rowid,))

    def settle(self, request_id: str, reply: Reply | None, now: float) -> None:
        """Store the answer to a claimed request (``None``: it gets none).

        The answer is dropped if the request expired meanwhile (a late answer must not
        beat ``EXPIRED``) or if the sender forgot the future; a forgotten request's row is
        deleted here, since nobody will ever ask about it.
        """
        with self._transaction("store a reply") as connection:
            if reply is not None:
                connection.execute(
                    "INSERT OR IGNORE INTO replies (future_id, status, body, detail, replied_at)"
                    " SELECT id, ?, ?, ?, ? FROM requests"
                    " WHERE id = ? AND forgotten = 0 AND expires_at > ?",
                    (reply.status.value, reply.body, reply.detail, now, request_id, now),
                )
            connection.execute("DELETE FROM requests WHERE id = ? AND forgotten = 1", (request_id,))

    # -- housekeeping -----------------------------------------------------------------------

    def cleanup(self, now: float, retention: float) -> int:
        """Delete requests (and their replies) that expired more than ``retention`` seconds
        ago, and forgotten ones that expired at all; return how many requests went."""
        with self._session("clean up old rows") as connection:
            cursor = connection.execute(
                "DELETE FROM requests WHERE expires_at < ? OR (forgotten = 1 AND expires_at <= ?)",
                (now - retention, now),
            )
            return cursor.rowcount

    def close(self) -> None:
        """Close the connection; later calls raise :class:`TransportError`. Idempotent."""
        with self._lock:
            if self._connection is not None:
                self._connection.close()
                self._connection = None

    # -- internals --------------------------------------------------------------------------

    @contextmanager
    def _session(self, action: str) -> Iterator[sqlite3.Connection]:
        """The connection, for this thread alone; SQLite errors become ``TransportError``."""
        with self._lock:
            if self._connection is None:
                raise TransportError(f"sqlite transport: cannot {action}: the transport is closed")
            try:
                yield self._connection
            except sqlite3.Error as exc:
                raise TransportError(
                    f"sqlite transport: could not {action} in {str(self.path)!r}: {exc}"
                ) from exc

    @contextmanager
    def _transaction(self, action: str) -> Iterator[sqlite3.Connection]:
        """A ``BEGIN IMMEDIATE`` transaction: committed if the block succeeds."""
        with self._session(action) as connection:
            connection.execute("BEGIN IMMEDIATE")
            try:
                yield connection
            except BaseException:
                if connection.in_transaction:  # SQLite rolls back by itself on some errors
                    connection.execute("ROLLBACK")
                raise
            connection.execute("COMMIT")


def _inbox(
    recipient: str, endpoints: Collection[tuple[str, str]], now: float
) -> tuple[str, list[Any]]:
    """The ``WHERE`` clause selecting deliverable requests; it matches the partial index
    ``requests_inbox`` (``recipient``, then ``expires_at``, unclaimed rows only)."""
    pairs = ", ".join("(?, ?)" for _ in endpoints)
    where = (
        "recipient = ? AND claimed_by IS NULL AND expires_at > ?"
        f" AND (app, endpoint) IN (VALUES {pairs})"
    )
    parameters: list[Any] = [recipient, now]
    for app, endpoint in endpoints:
        parameters += [app, endpoint]
    return where, parameters
