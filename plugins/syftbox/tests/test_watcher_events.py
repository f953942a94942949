"""What the shared folder watcher asks the kernel for: files that appear, not every look at one.

Every party on a machine watches the same SyftBox folder, and every party lists folders. When
the watcher asked inotify for everything, each listing (an open and a close of a folder) woke
every other party's watcher threads, and a file written in place woke them once per
``write()``: on two cores, that traffic was most of the time a round spent outside the
transport. The sentinel file at the end of each test is the barrier: one inotify instance
delivers events in order, so once the sentinel's event is routed every earlier one was read.
Each test runs with both event readers (ours on inotify, and watchdog's).
"""

from __future__ import annotations

import os
import struct
import threading
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from watchdog.observers.inotify_c import Inotify, InotifyConstants

from syft_flwr_syftbox import inotify
from syft_flwr_syftbox.layout import Layout, RpcLocation
from syft_flwr_syftbox.watcher import FolderWatcher, inotify_watches

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
def kernel_events(event_reader: str, monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """The mask of every event the watcher's inotify instance reads, with either reader."""
    masks: list[int] = []
    if event_reader == "inotify":
        parse = inotify.parse_events

        def parsing(data: bytes | bytearray, end: int) -> Iterator[tuple[int, int, bytes]]:
            for event in parse(data, end):
                masks.append(event[1])
                yield event

        monkeypatch.setattr(inotify, "parse_events", parsing)
        return masks
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
    assert kernel_events, "the sentinel's event was read through the recorded reader"
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
    assert kernel_events, "the sentinel's event was read through the recorded reader"
    assert not [mask for mask in kernel_events if mask & InotifyConstants.IN_MODIFY]


def test_a_folder_that_appears_with_a_request_inside_has_it_routed(  # type: ignore[no-untyped-def]
    watched, data_dir, eventually
) -> None:
    """A sync client or a peer may create a sender folder and its first request before the
    watcher has a watch on the folder: the request is found when the folder is."""
    folder, recorder = watched
    staged = data_dir / "staging" / "bob@watch.test"
    staged.mkdir(parents=True)
    request = f"{uuid.uuid4()}.request"
    (staged / request).write_bytes(b"x")
    moved_in = folder.parent / "bob@watch.test"
    staged.rename(moved_in)
    eventually(lambda: moved_in / request in recorder.changes, "the request in the moved folder")
    nested = folder.parent / "carol@watch.test"
    nested.mkdir()
    (nested / request).write_bytes(b"x")
    eventually(lambda: nested / request in recorder.changes, "the request in the new folder")


def test_a_watched_folder_renamed_within_the_tree_reports_its_new_paths(  # type: ignore[no-untyped-def]
    watched, eventually
) -> None:
    folder, recorder = watched
    _sentinel(folder, recorder, eventually)  # the folder is watched
    renamed = folder.parent / "dave@watch.test"
    folder.rename(renamed)
    eventually(lambda: renamed.is_dir(), "the rename")
    _sentinel(renamed, recorder, eventually)


class Sweeps(Recorder):
    def __init__(self) -> None:
        super().__init__()
        self.sweeps = 0

    def sweep(self) -> None:
        self.sweeps += 1


def test_events_the_kernel_dropped_make_every_listener_rescan(data_dir, eventually) -> None:  # type: ignore[no-untyped-def]
    """An inotify queue overflow loses events: each transport sweeps at once instead of at its
    next ``sweep_interval`` (an hour here)."""
    if not inotify.available():
        pytest.skip("no inotify on this platform")
    datasites = (data_dir / "datasites").resolve()
    recorder = Sweeps()
    watcher = FolderWatcher.attach(datasites, recorder)
    try:
        assert isinstance(watcher._events, inotify.TreeWatch)
        overflow = bytearray(struct.pack("iIII", -1, 0x4000, 0, 0))  # IN_Q_OVERFLOW
        watcher._events._dispatch(overflow, len(overflow))
        eventually(lambda: recorder.sweeps == 1, "the sweep after lost events")
    finally:
        watcher.detach(recorder)


def test_the_inotify_reader_is_one_thread_and_stopping_releases_its_instance(  # type: ignore[no-untyped-def]
    data_dir,
) -> None:
    """Events reach the transports from one thread (watchdog's Linux observer used three), and
    the last transport to leave gives the kernel its instance back."""
    if inotify_watches() is None or not inotify.available():
        pytest.skip("counted from Linux's /proc")
    datasites = (data_dir / "datasites").resolve()
    (datasites / "a" / "b").mkdir(parents=True)
    threads, watches = set(threading.enumerate()), inotify_watches()
    recorder = Recorder()
    watcher = FolderWatcher.attach(datasites, recorder)
    try:
        started = set(threading.enumerate()) - threads
        names = sorted(thread.name.split("-")[1] for thread in started)
        assert names == ["inotify", "sweep"]
        assert inotify_watches() == watches + 3  # datasites, a, a/b
    finally:
        watcher.detach(recorder)
    assert inotify_watches() == watches
    assert not (set(threading.enumerate()) - threads)


def test_another_partys_files_are_not_parsed(watched, eventually, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    """Every party's watcher sees every file of the shared folder; only its own are worth the
    full, validating parse of their path."""
    folder, recorder = watched
    parsed: list[Path] = []
    parse = Layout.parse

    def counting(self: Layout, path: Path | str) -> RpcLocation | None:
        parsed.append(Path(path))
        return parse(self, path)

    monkeypatch.setattr(Layout, "parse", counting)
    others = Layout(folder.parents[6]).sender_dir("bob@watch.test", APP, EP, SERVER)
    others.mkdir(parents=True)
    for _ in range(10):
        (others / f"{uuid.uuid4()}.request").write_bytes(b"x")  # to bob
    replies = Layout(folder.parents[6]).sender_dir(SERVER, APP, EP, "bob@watch.test")
    replies.mkdir(parents=True)
    for _ in range(10):
        (replies / f"{uuid.uuid4()}.response").write_bytes(b"x")  # from bob
    _sentinel(folder, recorder, eventually)
    assert parsed and {path.parent for path in parsed} == {folder}
