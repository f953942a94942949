"""Fixtures for the memory transport tests: an isolated network per test, and bounded waits.

Every wait in these tests has a timeout, so a bug shows up as a failure, never as a hang.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterable, Iterator
from contextlib import AbstractContextManager, contextmanager

import pytest

from syft_flwr.transport import Reply, TransportSettings
from syft_flwr_memory import MemoryNetwork, MemoryTransport

TIMEOUT = 5.0
"""Upper bound of any single wait; a passing test never comes close."""

MakeTransport = Callable[..., MemoryTransport]
Serving = Callable[[MemoryTransport], AbstractContextManager[threading.Thread]]
WaitReply = Callable[[MemoryTransport, str], Reply]


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


@pytest.fixture
def serving() -> Serving:
    """Run a transport's ``run()`` in a thread for the duration of a ``with`` block."""

    @contextmanager
    def running(transport: MemoryTransport) -> Iterator[threading.Thread]:
        thread = threading.Thread(target=transport.run, daemon=True)
        thread.start()
        try:
            yield thread
        finally:
            transport.stop()
            thread.join(TIMEOUT)
            assert not thread.is_alive(), "run() did not return after stop()"

    return running


@pytest.fixture
def wait_reply() -> WaitReply:
    """Wait (event-driven, bounded) until a future has a reply, and return it."""

    def wait(transport: MemoryTransport, future_id: str) -> Reply:
        deadline = time.monotonic() + TIMEOUT
        while (reply := transport.poll(future_id)) is None:
            remaining = deadline - time.monotonic()
            assert remaining > 0, f"no reply for {future_id} within {TIMEOUT} s"
            transport.wait_ready([future_id], remaining)
        return reply

    return wait


@pytest.fixture
def wait_all() -> Callable[[MemoryTransport, Iterable[str]], None]:
    """Wait (event-driven, bounded) until every one of the futures has a reply."""

    def wait(transport: MemoryTransport, future_ids: Iterable[str]) -> None:
        pending = set(future_ids)
        deadline = time.monotonic() + TIMEOUT
        while pending:
            remaining = deadline - time.monotonic()
            assert remaining > 0, f"{len(pending)} replies missing after {TIMEOUT} s"
            pending -= transport.wait_ready(pending, remaining)

    return wait


@pytest.fixture
def later() -> Callable[..., float]:
    """``later(seconds=60.0)``: an ``expires_at`` that many seconds from now."""

    def expires_at(seconds: float = 60.0) -> float:
        return time.time() + seconds

    return expires_at
