"""One filesystem watcher and one sweep timer per datasites folder, shared by its transports.

Waking on new files is what keeps round trips short and idle CPU at zero: a reader blocks in
the kernel until something changes (on Linux our own one-thread inotify reader,
:mod:`~syft_flwr_syftbox.inotify`; elsewhere a watchdog observer, FSEvents on macOS), then this
module routes each new or changed ``.request`` to the transports serving its recipient and each
``.response`` to the transports that sent it; a new or changed part of a large one
(:mod:`~syft_flwr_syftbox.parts`) is routed as a change of its manifest, so a message waiting
for its last part is read again when that part lands. A slow sweep (every ``poll_interval``,
the core's ``SYFT_FLWR_POLL_INTERVAL``) asks each transport to rescan, which catches events
the kernel dropped and serves filesystems that have none (network mounts).

Why shared: inotify instances are a per-user kernel resource (128 by default) and each watched
tree spends one, plus a thread. A server talking to 1,000 datasites, or 100
client transports in one process as in ``bench/scale.py``, must not need one each. So
transports attach to a :class:`FolderWatcher` per datasites folder, the first one starts it
and the last one to detach stops it: a process-wide registry of shared resources, like a
connection pool, not shared state between transports.

Listeners are called from the watcher's threads and must only note what happened (enqueue,
notify), never block.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from pathlib import Path
from typing import ClassVar, Protocol

from watchdog.events import (
    DirCreatedEvent,
    DirMovedEvent,
    FileClosedEvent,
    FileCreatedEvent,
    FileMovedEvent,
    FileSystemEvent,
    FileSystemEventHandler,
)
from watchdog.observers import Observer
from watchdog.observers.api import BaseObserver

from syft_flwr.node_ids import normalise_email
from syft_flwr_syftbox import inotify
from syft_flwr_syftbox.atomic import is_temp_name
from syft_flwr_syftbox.layout import FileKind, Layout, RpcLocation
from syft_flwr_syftbox.parts import PART_SUFFIX, manifest_of

__all__ = ["FolderWatcher", "Listener", "inotify_watches"]

logger = logging.getLogger(__name__)

_EVENTS = frozenset({"created", "moved", "closed"})
_KERNEL_EVENTS = [FileCreatedEvent, FileMovedEvent, FileClosedEvent, DirCreatedEvent, DirMovedEvent]
"""What the kernel is asked for (both readers ask for the same): a file appearing (created,
renamed in) or closed after writing, and new folders (so they are watched too). Not opens,
reads or closes without writing: every party's listings open folders, so asking for those woke
every other watcher on the machine for every scan, and each woken transport's own scan woke the
others again. Not each ``write()`` either (``modified``): a file written in place ends in a
close-after-write, which is when it can be read; a large one would otherwise be routed once per
write."""
_SUFFIXES = (*(kind.value for kind in FileKind), PART_SUFFIX)


class Listener(Protocol):
    """What a transport offers the watcher."""

    @property
    def identity(self) -> str:
        """The email whose requests (as recipient) and replies (as sender) it wants."""

    @property
    def sweep_interval(self) -> float:
        """Seconds between two :meth:`sweep` calls."""

    def file_changed(self, location: RpcLocation, path: Path) -> None:
        """A request to, or a reply for, this identity (or one of its parts) was created or
        changed; ``path`` is the request's or reply's own."""

    def sweep(self) -> None:
        """Rescan for anything the events missed; do periodic cleanup."""


class FolderWatcher:
    """The watcher of one datasites folder; get one with :meth:`attach`."""

    _registry: ClassVar[dict[Path, FolderWatcher]] = {}
    _registry_lock: ClassVar = threading.Lock()

    def __init__(self, datasites: Path) -> None:
        self.datasites = datasites
        self.layout = Layout(datasites)
        self._root_length = len(os.path.join(str(datasites), ""))
        self._lock = threading.Condition()
        self._listeners: dict[str, list[Listener]] = {}
        self._due: dict[int, float] = {}
        self._events: _EventReader | None = None
        self._sweeper: threading.Thread | None = None
        self._stopping = False

    @classmethod
    def attach(cls, datasites: Path, listener: Listener) -> FolderWatcher:
        """Start delivering events under ``datasites`` to ``listener``."""
        datasites.mkdir(parents=True, exist_ok=True)
        key = datasites.resolve()
        with cls._registry_lock:
            watcher = cls._registry.get(key)
            if watcher is None:
                watcher = cls._registry[key] = FolderWatcher(key)
                watcher._start()
            watcher._add(listener)
        return watcher

    def detach(self, listener: Listener) -> None:
        """Stop delivering to ``listener``; the last one to leave stops the watcher."""
        with FolderWatcher._registry_lock:
            if not self._remove(listener):
                return
            FolderWatcher._registry.pop(self.datasites, None)
        self._stop()

    @property
    def watching(self) -> bool:
        """Whether filesystem events arrive (else only the sweep runs)."""
        return self._events is not None

    # -- listeners ------------------------------------------------------------------------

    def _add(self, listener: Listener) -> None:
        with self._lock:
            self._listeners.setdefault(normalise_email(listener.identity), []).append(listener)
            self._due[id(listener)] = time.monotonic() + listener.sweep_interval
            self._lock.notify_all()

    def _remove(self, listener: Listener) -> bool:
        """Remove ``listener``; True if no listener is left."""
        with self._lock:
            key = normalise_email(listener.identity)
            group = self._listeners.get(key, [])
            if listener in group:
                group.remove(listener)
            if not group:
                self._listeners.pop(key, None)
            self._due.pop(id(listener), None)
            return not self._listeners

    def _route(self, path_text: str) -> None:
        name = os.path.basename(path_text)
        if not name.endswith(_SUFFIXES) or is_temp_name(name):
            return
        path = manifest_of(Path(path_text)) or Path(path_text)  # a part stands for its manifest
        with self._lock:
            if not self._listeners.get(self._owner_named(path_text, path.name)):
                return  # another party's file: every party sees every file of the folder
            location = self.layout.parse(path)
            if location is None:
                return
            owner = location.recipient if location.kind is FileKind.REQUEST else location.sender
            listeners = list(self._listeners.get(normalise_email(owner), ()))
        for listener in listeners:
            try:
                listener.file_changed(location, path)
            except Exception:
                logger.exception("a syftbox transport failed to take a file event for %s", path)

    def _owner_named(self, path_text: str, name: str) -> str:
        """Whose file ``path_text`` would be (a request's recipient, a reply's sender), read
        off its components without checking them: a cheap look-up key only, the full parse
        decides."""
        components = path_text[self._root_length :].split(os.sep)
        if len(components) < 7:
            return ""
        owner = components[0] if name.endswith(FileKind.REQUEST.value) else components[-2]
        return normalise_email(owner)

    # -- threads --------------------------------------------------------------------------

    def _start(self) -> None:
        try:
            self._events = self._start_events()
        except OSError as exc:  # e.g. the inotify instance limit; the sweep still works
            logger.warning(
                "cannot watch %s (%s); falling back to polling every SYFT_FLWR_POLL_INTERVAL",
                self.datasites,
                exc,
            )
        self._sweeper = threading.Thread(
            target=self._sweep_loop, name=f"syftbox-sweep-{self.datasites.name}", daemon=True
        )
        self._sweeper.start()

    def _stop(self) -> None:
        with self._lock:
            self._stopping = True
            self._lock.notify_all()
        if self._events is not None:
            self._events.stop()
        if self._sweeper is not None and threading.current_thread() is not self._sweeper:
            self._sweeper.join()

    def _start_events(self) -> _EventReader:
        """Start reading filesystem events: our inotify reader where the platform has it.

        :raises OSError: the kernel refused (no instance or watch to be had).
        """
        if inotify.available():
            watch = inotify.TreeWatch(str(self.datasites), self._route, self._events_lost)
            watch.start()
            return watch
        return _WatchdogReader(self)

    def _events_lost(self) -> None:
        """The kernel's queue overflowed: every listener rescans now, not at its next sweep."""
        logger.warning("filesystem events under %s were lost; rescanning", self.datasites)
        with self._lock:
            for key in self._due:
                self._due[key] = 0.0
            self._lock.notify_all()

    def _sweep_loop(self) -> None:
        while True:
            with self._lock:
                while True:
                    if self._stopping:
                        return
                    now = time.monotonic()
                    due = [
                        listener
                        for group in self._listeners.values()
                        for listener in group
                        if self._due.get(id(listener), now) <= now
                    ]
                    if due:
                        for listener in due:
                            self._due[id(listener)] = now + listener.sweep_interval
                        break
                    wake = min(self._due.values(), default=now + 3600.0)
                    self._lock.wait(max(wake - now, 0.001))
            for listener in due:
                try:
                    listener.sweep()
                except Exception:
                    logger.exception("a syftbox transport's sweep failed")


def inotify_watches() -> int | None:
    """The inotify watches this process holds (``None`` where there is no ``/proc``).

    Counted from the ``inotify wd:`` lines of ``/proc/self/fdinfo`` of each inotify instance
    among the process's descriptors: what the README's limits are measured with. The watcher
    holds one per folder below the datasites folder (inotify watches a tree folder by folder),
    whatever the number of files, so the figure follows the folders, never the requests.
    """
    try:
        descriptors = os.listdir("/proc/self/fd")
    except OSError:
        return None
    watches = 0
    for fd in descriptors:
        try:
            if os.readlink(f"/proc/self/fd/{fd}") != "anon_inode:inotify":
                continue
            with open(f"/proc/self/fdinfo/{fd}") as info:
                watches += sum(1 for line in info if line.startswith("inotify wd:"))
        except OSError:
            continue  # closed meanwhile (the listing's own descriptor, a stopping observer)
    return watches


class _EventReader(Protocol):
    def stop(self) -> None: ...


class _WatchdogReader:
    """A watchdog observer routing to a :class:`FolderWatcher` (platforms without inotify)."""

    def __init__(self, watcher: FolderWatcher) -> None:
        self._observer: BaseObserver = Observer()
        self._observer.schedule(
            _Handler(watcher), str(watcher.datasites), recursive=True, event_filter=_KERNEL_EVENTS
        )
        self._observer.start()

    def stop(self) -> None:
        self._observer.stop()
        if threading.current_thread() is not self._observer:
            self._observer.join()


class _Handler(FileSystemEventHandler):
    def __init__(self, watcher: FolderWatcher) -> None:
        self._watcher = watcher

    def on_any_event(self, event: FileSystemEvent) -> None:
        if event.is_directory or event.event_type not in _EVENTS:
            return
        target = event.dest_path if event.event_type == "moved" else event.src_path
        self._watcher._route(os.fsdecode(target))
