"""The database layout, and how every connection to it is opened.

Two tables, one row per message:

- ``requests``: one row per request, written by the sender. The row *is* the sender's
  future: its ``id`` is the future id, and it stays until the sender forgets the future or
  the clean-up removes it, which is why futures survive a restart of either side. A
  serving instance *claims* a row by setting ``claimed_by``, reading everything but the
  body; the body is read once the request is admitted, and dropped then (or when it is
  refused) because nobody reads it again.
- ``replies``: at most one row per request (``future_id`` is the primary key), written by
  whoever settles the future first: the recipient's answer or refusal, or the sender's
  poll that found the request expired. ``INSERT OR IGNORE`` makes "first settlement wins"
  a property of the schema instead of a race in the code.

Every connection runs in WAL mode (readers never block the writer, so idle polls cost
nothing to the processes doing work), with ``synchronous=NORMAL`` (durable across process
crashes, which is what a restart needs) and foreign keys on (deleting a request deletes
its reply).
"""

from __future__ import annotations

import sqlite3
import time
from pathlib import Path

from syft_flwr.errors import ConfigError, TransportError

__all__ = ["SCHEMA_VERSION", "connect"]

SCHEMA_VERSION = 1
"""Stored in ``PRAGMA user_version``; a database with another version is refused."""

_WAL_RETRY_DELAY = 0.01

_STATEMENTS = (
    """
    CREATE TABLE requests (
        id          TEXT PRIMARY KEY,  -- the future id (uuid4 hex)
        sender      TEXT NOT NULL,     -- the sending transport's identity, never from the body
        recipient   TEXT NOT NULL,
        app         TEXT NOT NULL,
        endpoint    TEXT NOT NULL,
        body        BLOB,              -- NULL once read or refused
        created_at  REAL NOT NULL,     -- seconds since the epoch, like expires_at
        expires_at  REAL NOT NULL,
        claimed_by  TEXT,              -- the serving instance that took it; NULL while queued
        claimed_at  REAL,
        forgotten   INTEGER NOT NULL DEFAULT 0  -- 1: the sender dropped the future
    )
    """,
    # The inbox: only unclaimed requests are in this index, so an idle poll reads nothing
    # but the requests that could still be delivered.
    "CREATE INDEX requests_inbox ON requests (recipient, expires_at) WHERE claimed_by IS NULL",
    # The clean-up deletes by expiry.
    "CREATE INDEX requests_expiry ON requests (expires_at)",
    """
    CREATE TABLE replies (
        future_id   TEXT PRIMARY KEY REFERENCES requests (id) ON DELETE CASCADE,
        status      TEXT NOT NULL CHECK (status IN ('ok', 'expired', 'rejected')),
        body        BLOB NOT NULL,
        detail      TEXT NOT NULL,
        replied_at  REAL NOT NULL
    )
    """,
    f"PRAGMA user_version = {SCHEMA_VERSION}",
)
"""The schema, one statement at a time: ``executescript`` would commit the transaction that
keeps two processes from creating it at once."""


def connect(path: Path, busy_timeout: float) -> sqlite3.Connection:
    """Open ``path`` (creating the schema if the file is new) and return the connection.

    The connection is in autocommit mode (``isolation_level=None``): the store opens
    every transaction itself with ``BEGIN IMMEDIATE``, so it is always explicit which
    statements run under the write lock. ``busy_timeout`` makes a statement wait for
    another process's write lock instead of failing at once.

    :raises ConfigError: the file is not a SQLite database, cannot run in WAL mode, or
        holds another schema version.
    :raises TransportError: another connection kept the database locked too long.
    """
    try:
        connection = sqlite3.connect(
            path, timeout=busy_timeout, isolation_level=None, check_same_thread=False
        )
    except sqlite3.Error as exc:
        raise ConfigError(f"sqlite transport: cannot open database {str(path)!r}: {exc}") from exc
    try:
        _configure(connection, path, busy_timeout)
        _create_or_check(connection, path)
    except sqlite3.Error as exc:
        connection.close()
        if getattr(exc, "sqlite_errorcode", None) == sqlite3.SQLITE_BUSY:
            raise TransportError(
                f"sqlite transport: database {str(path)!r} stayed locked by another "
                f"connection for more than busy_timeout={busy_timeout} s"
            ) from exc
        raise ConfigError(f"sqlite transport: cannot use database {str(path)!r}: {exc}") from exc
    except BaseException:
        connection.close()
        raise
    return connection


def _configure(connection: sqlite3.Connection, path: Path, busy_timeout: float) -> None:
    mode = _enable_wal(connection, busy_timeout)
    if mode != "wal":
        # WAL needs shared memory between the processes, so it is refused on e.g. network
        # file systems; the rollback journal would work but lock readers out on every write.
        raise ConfigError(
            f"sqlite transport: {str(path)!r} cannot use WAL mode (got {mode!r}); keep the "
            "database on a local disk"
        )
    connection.execute("PRAGMA synchronous = NORMAL")
    connection.execute("PRAGMA foreign_keys = ON")


def _enable_wal(connection: sqlite3.Connection, busy_timeout: float) -> str:
    """Switch the file to WAL mode (a no-op once any connection did) and return the mode.

    Switching a new file needs an exclusive lock, and when several processes open a new
    file at once SQLite reports the conflict as "database is locked" at once instead of
    waiting ``busy_timeout``; so the waiting is done here.
    """
    deadline = time.monotonic() + busy_timeout
    while True:
        try:
            (mode,) = connection.execute("PRAGMA journal_mode = WAL").fetchone()
            return str(mode)
        except sqlite3.OperationalError as exc:
            if exc.sqlite_errorcode != sqlite3.SQLITE_BUSY or time.monotonic() >= deadline:
                raise
            time.sleep(_WAL_RETRY_DELAY)


def _create_or_check(connection: sqlite3.Connection, path: Path) -> None:
    # Under the write lock, so two processes opening a new file cannot both create tables.
    connection.execute("BEGIN IMMEDIATE")
    try:
        (version,) = connection.execute("PRAGMA user_version").fetchone()
        if version == 0:
            for statement in _STATEMENTS:
                connection.execute(statement)
        elif version != SCHEMA_VERSION:
            raise ConfigError(
                f"sqlite transport: {str(path)!r} has schema version {version}, this "
                f"syft-flwr-sqlite uses {SCHEMA_VERSION}; point 'database' at a new file"
            )
        connection.execute("COMMIT")
    except BaseException:
        connection.execute("ROLLBACK")
        raise
