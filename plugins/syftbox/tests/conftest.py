"""Fixtures for the syftbox transport tests: a private SyftBox folder per test, bounded waits.

Every wait has a timeout, so a bug shows up as a failure, never as a hang. The environment is
scrubbed of ``SYFTBOX_*`` variables and ``HOME`` points at the test's folder, so no test ever
reads the developer's own SyftBox configuration.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, contextmanager
from pathlib import Path
from typing import Any

import pytest

from syft_flwr.transport import Reply, TransportSettings
from syft_flwr_syftbox import SyftBoxTransport

TIMEOUT = 10.0
"""Upper bound of any single wait; a passing test never comes close."""

MakeTransport = Callable[..., SyftBoxTransport]
Serving = Callable[[SyftBoxTransport], AbstractContextManager[threading.Thread]]
WaitReply = Callable[[SyftBoxTransport, str], Reply]
Bounded = Callable[..., Any]


@pytest.fixture(autouse=True)
def isolated_env(monkeypatch: pytest.MonkeyPatch, tmp_path_factory: pytest.TempPathFactory) -> None:
    for name in (
        "SYFTBOX_FOLDER",
        "SYFTBOX_DATA_DIR",
        "SYFTBOX_CLIENT_CONFIG_PATH",
        "SYFTBOX_EMAIL",
        "SYFT_FLWR_POLL_INTERVAL",
        "SYFT_FLWR_MSG_TIMEOUT",
        "SYFT_FLWR_ENCRYPTION_ENABLED",
        "SYFT_FLWR_KEY_DIR",
        "XDG_CONFIG_HOME",
    ):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("HOME", str(tmp_path_factory.mktemp("home")))


@pytest.fixture
def data_dir(tmp_path: Path) -> Path:
    """An empty SyftBox folder (with ``datasites/``)."""
    folder = tmp_path / "SyftBox"
    (folder / "datasites").mkdir(parents=True)
    return folder


@pytest.fixture
def make(data_dir: Path) -> Iterator[MakeTransport]:
    """``make("a@x.org", poll_interval=0.2, **options)``: a transport on the test's folder."""
    made: list[SyftBoxTransport] = []

    def factory(
        identity: str, *, poll_interval: float = 0.2, **options: object
    ) -> SyftBoxTransport:
        table = {"data_dir": str(data_dir), **options}
        settings = TransportSettings(identity=identity, options=table, poll_interval=poll_interval)
        transport = SyftBoxTransport(settings)
        made.append(transport)
        return transport

    yield factory
    for transport in made:
        transport.close()


@pytest.fixture
def serving() -> Serving:
    """Run a transport's ``run()`` in a thread for the duration of a ``with`` block."""

    @contextmanager
    def running(transport: SyftBoxTransport) -> Iterator[threading.Thread]:
        failures: list[BaseException] = []

        def run() -> None:
            try:
                transport.run()
            except BaseException as exc:
                failures.append(exc)

        thread = threading.Thread(target=run, daemon=True)
        thread.start()
        try:
            yield thread
        finally:
            transport.stop()
            thread.join(TIMEOUT)
            assert not thread.is_alive(), "run() did not return after stop()"
            assert not failures, f"run() raised {failures[0]!r}"

    return running


@pytest.fixture
def wait_reply() -> WaitReply:
    """Wait (event-driven, bounded) until a future has a reply, and return it."""

    def wait(transport: SyftBoxTransport, future_id: str) -> Reply:
        deadline = time.monotonic() + TIMEOUT
        while (reply := transport.poll(future_id)) is None:
            remaining = deadline - time.monotonic()
            assert remaining > 0, f"no reply for {future_id} within {TIMEOUT} s"
            transport.wait_ready([future_id], remaining)
        return reply

    return wait


@pytest.fixture
def later() -> Callable[..., float]:
    """``later(seconds=60.0)``: an ``expires_at`` that many seconds from now."""

    def expires_at(seconds: float = 60.0) -> float:
        return time.time() + seconds

    return expires_at


@pytest.fixture
def eventually() -> Callable[..., None]:
    """``eventually(condition, what)``: wait (bounded) for an effect no event announces,
    such as a file being removed by a sweep."""

    def wait(condition: Callable[[], object], what: str, timeout: float = TIMEOUT) -> None:
        deadline = time.monotonic() + timeout
        while not condition():
            assert time.monotonic() < deadline, f"timed out waiting for {what}"
            time.sleep(0.01)

    return wait


@pytest.fixture
def bounded() -> Bounded:
    """``bounded(function, *args)``: call it in a thread and fail, instead of hanging, if it
    has not returned within ``TIMEOUT`` (for calls a hostile file could block, such as
    opening a FIFO)."""

    def call(function: Callable[..., Any], *args: Any) -> Any:
        results: list[Any] = []
        failures: list[BaseException] = []

        def run() -> None:
            try:
                results.append(function(*args))
            except BaseException as exc:
                failures.append(exc)

        thread = threading.Thread(target=run, daemon=True)
        thread.start()
        thread.join(TIMEOUT)
        assert not thread.is_alive(), f"{function.__name__} blocked for {TIMEOUT} s"
        if failures:
            raise failures[0]
        return results[0]

    return call


@pytest.fixture
def task_identity() -> Iterator[None]:
    """Set Flower's process-global task identity, which ``Message(...)`` reads, as a server."""
    from flwr.supercore.task_identity import TaskIdentity

    TaskIdentity.run_id = 7
    TaskIdentity.node_id = 1
    TaskIdentity.task_id = 1
    yield
