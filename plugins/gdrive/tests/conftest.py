"""Fixtures: a fake Drive per test, transports on it as separate accounts.

The bounded waits (``serving``, ``wait_reply``, ``later``, ``eventually``) come from the
syft-flwr pytest plugin (:mod:`syft_flwr.testing.pytest_plugin`). Polling is fast
(20 ms) and retries back off in milliseconds: the fake has no quota to protect.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import pytest

from syft_flwr.transport import TransportSettings
from syft_flwr_gdrive import GDriveTransport
from syft_flwr_gdrive.testing import FakeDrive

APP, EP = "flwr/demo", "messages"

FAST: dict[str, Any] = {
    "poll_interval": 0.02,
    "max_poll_interval": 0.2,
    "discovery_interval": 0.5,
    "retry_base_delay": 0.005,
    "retry_max_delay": 0.1,
}

MakeTransport = Callable[..., GDriveTransport]


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
