"""Fixtures for the sqlite transport's own tests: a database per test, peer processes.

The bounded waits (``serving``, ``wait_reply``, ``later``, ``eventually``) come from the
syft-flwr pytest plugin (:mod:`syft_flwr.testing.pytest_plugin`), as they would for any
plugin published outside the syft-flwr repository; nothing waits for a fixed time hoping
something happened meanwhile.
"""

from __future__ import annotations

import sqlite3
import subprocess
import sys
from collections.abc import Callable, Iterator
from contextlib import closing
from pathlib import Path
from typing import Any

import pytest
from syft_flwr.transport import TransportSettings

from syft_flwr_sqlite import SqliteTransport

POLL_INTERVAL = 0.02

APP, ENDPOINT = "flwr/test", "messages"

PEER = Path(__file__).with_name("peer.py")
PEER_TIMEOUT = 30.0
"""Upper bound of a peer process's whole life (it stops itself well before)."""

MakeTransport = Callable[..., SqliteTransport]
Query = Callable[..., list[tuple[Any, ...]]]


@pytest.fixture
def database(tmp_path: Path) -> Path:
    """The test's database file (created by the first transport that opens it)."""
    return tmp_path / "federation.sqlite3"


@pytest.fixture
def make(database: Path) -> Iterator[MakeTransport]:
    """``make("a@x.org", max_body_size=10)``: a transport on the test's database."""
    built: list[SqliteTransport] = []

    def factory(identity: str, **options: Any) -> SqliteTransport:
        settings = TransportSettings(
            identity, {"database": str(database), **options}, poll_interval=POLL_INTERVAL
        )
        transport = SqliteTransport(settings)
        built.append(transport)
        return transport

    yield factory
    for transport in built:
        transport.close()


@pytest.fixture
def query(database: Path) -> Query:
    """``query(sql, *parameters)``: rows from the database, read on a connection of its own."""

    def run(sql: str, *parameters: Any) -> list[tuple[Any, ...]]:
        with closing(sqlite3.connect(database)) as connection:
            return connection.execute(sql, parameters).fetchall()

    return run


class Peers:
    """Other processes on the test's database, running ``tests/peer.py``."""

    def __init__(self, database: Path) -> None:
        self.database = database
        self.started: list[subprocess.Popen[str]] = []

    def start(self, *args: str) -> subprocess.Popen[str]:
        """Start ``peer.py <args>`` with ``--database`` set to the test's database."""
        command = [sys.executable, str(PEER), "--database", str(self.database), *args]
        process = subprocess.Popen(
            command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
        )
        self.started.append(process)
        return process

    def run(self, *args: str) -> list[str]:
        """Run ``peer.py <args>`` to completion; return its output lines."""
        return self.finish(self.start(*args))

    @staticmethod
    def finish(process: subprocess.Popen[str]) -> list[str]:
        """Wait (bounded) for a peer; return its output lines, failing if it failed."""
        try:
            out, err = process.communicate(timeout=PEER_TIMEOUT)
        except subprocess.TimeoutExpired:
            process.kill()
            out, err = process.communicate()
            pytest.fail(f"peer {process.args} did not finish:\n{err}")
        assert process.returncode == 0, f"peer {process.args} failed:\n{err}"
        return out.splitlines()

    def kill_all(self) -> None:
        for process in self.started:
            if process.poll() is None:
                process.kill()
                process.communicate()


@pytest.fixture
def peers(database: Path) -> Iterator[Peers]:
    """Start other processes on the test's database; any left running are killed after."""
    started = Peers(database)
    yield started
    started.kill_all()
