"""Fixtures: a fake Drive per test, transports on it as separate accounts, bounded waits.

Every wait has a timeout, so a bug shows up as a failure, never as a hang. Polling is fast
(20 ms) and retries back off in milliseconds: the fake has no quota to protect.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, contextmanager
from typing import Any

import pytest

from syft_flwr.transport import Reply, TransportSettings
from syft_flwr_gdrive import GDriveTransport
from syft_flwr_gdrive.testing import FakeDrive

TIMEOUT = 10.0
"""Upper bound of any single wait; a passing test never comes close."""

APP, EP = "flwr/demo", "messages"

FAST: dict[str, Any] = {
    "poll_interval": 0.02,
    "max_poll_interval": 0.2,
    "discovery_interval": 0.5,
    "retry_base_delay": 0.005,
    "retry_max_delay": 0.1,
}

MakeTransport = Callable[..., GDriveTransport]
Serving = Callable[[GDriveTransport], AbstractContextManager[threading.Thread]]
WaitReply = Callable[[GDriveTransport, str], Reply]


@pytest.fixture(autouse=True)
def private_keys(tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch) -> None:
    """Key material of encrypted runs goes to a temporary folder, never the real home."""
    monkeypatch.setenv("SYFT_FLWR_KEY_DIR", str(tmp_path_factory.mktemp("keys")))


@pytest.fixture
def drive() -> Iterator[FakeDrive]:
    """A fresh fake Drive, stopped after the test."""
    with FakeDrive() as fake:
        yield fake


@pytest.fixture
def make(drive: FakeDrive) -> Iterator[MakeTransport]:
    """``make("a@x.org", **options)``: a transport acting as its own (new) account."""
    made: list[GDriveTransport] = []

    def factory(identity: str, **options: Any) -> GDriveTransport:
        account = drive.add_account(identity)
        table = {"api_root": drive.url, "access_token": account.token, **FAST, **options}
        transport = GDriveTransport(TransportSettings(identity, table))
        made.append(transport)
        return transport

    yield factory
    for transport in made:
        transport.close()


@pytest.fixture
def serving() -> Serving:
    """Run a transport's ``run()`` in a thread for the duration of a ``with`` block."""

    @contextmanager
    def running(transport: GDriveTransport) -> Iterator[threading.Thread]:
        errors: list[BaseException] = []

        def run() -> None:
            try:
                transport.run()
            except BaseException as exc:  # surfaced below, not lost with the thread
                errors.append(exc)

        thread = threading.Thread(target=run, daemon=True)
        thread.start()
        try:
            yield thread
        finally:
            transport.stop()
            thread.join(TIMEOUT)
            assert not thread.is_alive(), "run() did not return after stop()"
            assert not errors, errors

    return running


@pytest.fixture
def wait_reply() -> WaitReply:
    """Wait (bounded) until a future has a reply, and return it."""

    def wait(transport: GDriveTransport, future_id: str) -> Reply:
        deadline = time.monotonic() + TIMEOUT
        while (reply := transport.poll(future_id)) is None:
            remaining = deadline - time.monotonic()
            assert remaining > 0, f"no reply for {future_id} within {TIMEOUT} s"
            transport.wait_ready([future_id], remaining)
        return reply

    return wait


def later(seconds: float = 60.0) -> float:
    """An ``expires_at`` that many seconds from now."""
    return time.time() + seconds


def eventually(check: Callable[[], bool], what: str, timeout: float = TIMEOUT) -> None:
    """Wait (bounded) until ``check()`` holds."""
    deadline = time.monotonic() + timeout
    while not check():
        assert time.monotonic() < deadline, f"{what} did not happen within {timeout} s"
        time.sleep(0.01)
