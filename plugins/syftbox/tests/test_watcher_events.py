"""What the shared folder watcher asks the kernel for: files that appear, not every look at one.

Every party on a machine watches the same SyftBox folder, and every party lists folders. When
the watcher asked inotify for everything, each listing (an open and a close of a folder) woke
every other party's watcher threads, and a file written in place woke them once per
``write()``: on two cores, that traffic was most of the time a round spent outside the
transport. The sentinel file at the end of each test is the barrier: one inotify instance
delivers events in order, so once the sentinel's event is routed every earlier one was read.
"""

from __future__ import annotations

import os
import uuid
from pathlib import Path

import pytest
from watchdog.observers.inotify_c import Inotify, InotifyConstants

from syft_flwr_syftbox.layout import Layout, RpcLocation
from syft_flwr_syftbox.watcher import FolderWatcher

SERVER, ALICE = "server@watch.test", "alice@watch.test"
APP, EP = "flwr/watch", "messages"
LOOKS = InotifyConstants.IN_OPEN | InotifyConstants.IN_CLOSE_NOWRITE | InotifyConstants.IN_ACCESS


class Recorder:
    identity = ALICE
    sweep_interval = 3600.0

    def __init__(self) -> None:
        self.changes: list[Path] = []

    def file_changed(self, where: RpcLocation, path: Path) -> None:
        self.changes.append(path)

    def sweep(self) -> None:
        pass


@pytest.fixture
def kernel_events(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """The mask of every event the watcher's inotify instance reads."""
    masks: list[int] = []
    read = Inotify.read_events

    def recording(self: Inotify, *args: object, **kwargs: object) -> list:  # type: ignore[type-arg]
        events = read(self, *args, **kwargs)  # type: ignore[arg-type]
        masks.extend(event.mask for event in events)
        return events

    monkeypatch.setattr(Inotify, "read_events", recording)
    return masks


@pytest.fixture
def watched(data_dir: Path, kernel_events: list[int]):  # type: ignore[no-untyped-def]
    datasites = (data_dir / "datasites").resolve()
    folder = Layout(datasites).sender_dir(ALICE, APP, EP, SERVER)
    folder.mkdir(parents=True)
    recorder = Recorder()
    watcher = FolderWatcher.attach(datasites, recorder)
    yield folder, recorder
    watcher.detach(recorder)


def _sentinel(folder: Path, recorder: Recorder, eventually) -> None:  # type: ignore[no-untyped-def]
    name = f"{uuid.uuid4()}.request"
    (folder / name).write_bytes(b"x")
    eventually(lambda: folder / name in recorder.changes, "the sentinel's event")


def test_listing_watched_folders_reads_no_event(watched, kernel_events, eventually) -> None:  # type: ignore[no-untyped-def]
    folder, recorder = watched
    for _ in range(20):
        for parent in (folder, *list(folder.parents)[:6]):
            with os.scandir(parent) as scan:
                list(scan)
    _sentinel(folder, recorder, eventually)
    looks = [mask for mask in kernel_events if mask & LOOKS]
    assert looks == [], f"{len(looks)} events read for folders being listed or files read"


def test_a_file_written_in_place_is_routed_once_not_per_write(  # type: ignore[no-untyped-def]
    watched, kernel_events, eventually
) -> None:
    folder, recorder = watched
    target = folder / f"{uuid.uuid4()}.request"
    with open(target, "wb", buffering=0) as handle:
        for _ in range(200):
            handle.write(b"x" * 512)
    _sentinel(folder, recorder, eventually)
    assert recorder.changes.count(target) <= 2  # created, then closed after writing
    assert not [mask for mask in kernel_events if mask & InotifyConstants.IN_MODIFY]
