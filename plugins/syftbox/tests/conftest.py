"""Fixtures for the syftbox transport tests: a private SyftBox folder per test.

The bounded waits (``serving``, ``wait_reply``, ``later``, ``eventually``, ``bounded``) come
from the syft-flwr pytest plugin (:mod:`syft_flwr.testing.pytest_plugin`). The environment is
scrubbed of ``SYFTBOX_*`` variables and ``HOME`` points at the test's folder, so no test ever
reads the developer's own SyftBox configuration.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from syft_flwr.transport import TransportSettings
from syft_flwr_syftbox import SyftBoxTransport, inotify
from syft_flwr_syftbox.watcher import FolderWatcher

MakeTransport = Callable[..., SyftBoxTransport]


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
def no_filesystem_events(monkeypatch: pytest.MonkeyPatch) -> None:
    """Watchers started in this test get no filesystem events, as when the kernel refuses an
    inotify instance (the per-user limit): transports must work from their sweeps alone."""

    def refused(self: FolderWatcher) -> None:
        raise OSError(24, "inotify instance limit reached")

    monkeypatch.setattr(FolderWatcher, "_start_events", refused)


@pytest.fixture(params=["inotify", "watchdog"])
def event_reader(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> str:
    """Run the test with each filesystem event reader: our inotify reader (Linux) and the
    watchdog observer other platforms use."""
    if request.param == "inotify" and not inotify.available():
        pytest.skip("no inotify on this platform")
    if request.param == "watchdog":
        monkeypatch.setattr(inotify, "available", lambda: False)
    return str(request.param)


@pytest.fixture
def task_identity() -> Iterator[None]:
    """Set Flower's process-global task identity, which ``Message(...)`` reads, as a server."""
    from flwr.supercore.task_identity import TaskIdentity

    TaskIdentity.run_id = 7
    TaskIdentity.node_id = 1
    TaskIdentity.task_id = 1
    yield
