"""Fixtures for the memory transport tests: an isolated network per test.

The bounded waits (``serving``, ``wait_reply``, ``wait_all``, ``later``...) come from the
syft-flwr pytest plugin (:mod:`syft_flwr.testing.pytest_plugin`), shared by every test folder.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator

import pytest

from syft_flwr.transport import TransportSettings
from syft_flwr_memory import MemoryNetwork, MemoryTransport

MakeTransport = Callable[..., MemoryTransport]


@pytest.fixture
def network() -> Iterator[MemoryNetwork]:
    """A private network, closed (with every transport on it) after the test."""
    net = MemoryNetwork("test")
    yield net
    net.close()


@pytest.fixture
def make(network: MemoryNetwork) -> MakeTransport:
    """Build a transport on the test's network: ``make("a@x.org", max_body_size=10)``."""

    def factory(identity: str, **options: object) -> MemoryTransport:
        settings = TransportSettings(identity=identity, options=options)
        return MemoryTransport(settings, network=network)

    return factory
