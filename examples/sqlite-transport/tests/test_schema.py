"""The database file: its layout, its settings, and which indexes the hot queries use."""

from __future__ import annotations

import sqlite3
import threading
from contextlib import closing
from pathlib import Path

import pytest
from syft_flwr.errors import ConfigError

from syft_flwr_sqlite import schema, store
from syft_flwr_sqlite.schema import SCHEMA_VERSION, connect
from syft_flwr_sqlite.store import Store

APP, ENDPOINT = "flwr/test", "messages"


def test_a_new_file_gets_the_schema_in_wal_mode(database: Path, query) -> None:
    connect(database, busy_timeout=1.0).close()
    tables = {name for (name,) in query("SELECT name FROM sqlite_master WHERE type = 'table'")}
    assert tables == {"requests", "replies"}
    indexes = {name for (name,) in query("SELECT name FROM sqlite_master WHERE type = 'index'")}
    assert {"requests_inbox", "requests_expiry"} <= indexes
    assert query("PRAGMA user_version") == [(SCHEMA_VERSION,)]
    assert query("PRAGMA journal_mode") == [("wal",)]


def test_reopening_keeps_the_rows(make, query, later) -> None:
    make("a@x.org").send("b@x.org", APP, ENDPOINT, b"kept", later())
    make("b@x.org")  # a second open of the existing file
    assert query("SELECT sender, recipient, body FROM requests") == [
        ("a@x.org", "b@x.org", b"kept")
    ]


def test_every_connection_enforces_foreign_keys(database: Path) -> None:
    with closing(connect(database, busy_timeout=1.0)) as connection:
        assert connection.execute("PRAGMA foreign_keys").fetchone() == (1,)
        with pytest.raises(sqlite3.IntegrityError):
            connection.execute("INSERT INTO replies VALUES ('no-such-request', 'ok', x'', '', 0)")


def test_many_processes_can_create_a_new_file_at_once(tmp_path: Path) -> None:
    # Threads with a connection each contend for the file exactly like processes do.
    for attempt in range(10):
        assert open_at_once(tmp_path / f"new-{attempt}.sqlite3", connections=6) == []


def open_at_once(path: Path, connections: int) -> list[BaseException]:
    """Open ``path`` from ``connections`` threads released together; return their errors."""
    barrier = threading.Barrier(connections)
    errors: list[BaseException] = []

    def open_new() -> None:
        barrier.wait()
        try:
            connect(path, busy_timeout=5.0).close()
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=open_new) for _ in range(connections)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(10.0)
    return errors


def test_another_schema_version_is_refused(database: Path) -> None:
    with closing(sqlite3.connect(database)) as connection:
        connection.execute(f"PRAGMA user_version = {SCHEMA_VERSION + 1}")
    with pytest.raises(ConfigError, match="schema version"):
        connect(database, busy_timeout=1.0)


def test_a_file_that_is_not_a_database_is_refused(database: Path) -> None:
    database.write_bytes(b"certainly not SQLite " * 100)
    with pytest.raises(ConfigError, match="cannot use database"):
        connect(database, busy_timeout=1.0)


def test_the_hot_queries_use_indexes(database: Path, monkeypatch, later) -> None:
    """Polling runs every interval for every open future and every idle datasite: none of
    its queries may scan a table."""
    statements: list[str] = []

    def traced(path: Path, busy_timeout: float) -> sqlite3.Connection:
        connection = schema.connect(path, busy_timeout)
        connection.set_trace_callback(statements.append)
        return connection

    monkeypatch.setattr(store, "connect", traced)
    db = Store(database, busy_timeout=1.0)
    db.claim_next("b@x.org", [(APP, ENDPOINT)], "test", 0.0)  # an idle poll of the inbox
    db.future("0" * 32, "a@x.org")  # a sender's poll
    db.close()
    assert len(statements) == 2
    with closing(sqlite3.connect(database)) as connection:
        for statement in statements:
            plan = " / ".join(
                row[-1] for row in connection.execute(f"EXPLAIN QUERY PLAN {statement}")
            )
            assert "SCAN requests" not in plan and "SCAN replies" not in plan, (statement, plan)
            assert "USING" in plan, (statement, plan)
