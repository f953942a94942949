"""A recursive inotify watch of one folder tree, read and routed on one thread (Linux).

Why not watchdog here: its Linux observer moves every event through three threads (a reader,
an emitter that turns kernel events into event objects, a dispatcher that calls handlers), and
each hop is a condition-variable wake-up and a turn at the GIL. On a round's path every party
sees every file of the shared folder, so that pipeline was most of what a serving client spent
outside its ClientApp, and each hop waited for the GIL while the process's main thread worked.
Here one thread blocks in ``poll`` on the inotify descriptor and hands each file's path straight
to a callback, which only notes it (see :mod:`~syft_flwr_syftbox.watcher`). Other platforms
keep watchdog (FSEvents, kqueue): :func:`available` says which.

What it watches is what a reader needs: files that appear (created, renamed in) or are closed
after writing, never opens, reads or single writes, and every folder of the tree, folder by
folder (one watch each, the same count watchdog holds). A folder that appears, or is renamed
into the tree, is watched and then listed, and the files already in it are reported: a sender
folder created with its first request inside must not hide that request until the next sweep.
A kernel queue overflow (events lost) is reported as such, so the caller can rescan.
"""

from __future__ import annotations

import ctypes
import errno
import io
import logging
import os
import select
import struct
import sys
import threading
from collections.abc import Callable, Iterator

__all__ = ["TreeWatch", "available", "parse_events"]

logger = logging.getLogger(__name__)

_IN_CLOSE_WRITE = 0x00000008
_IN_MOVED_TO = 0x00000080
_IN_CREATE = 0x00000100
_IN_Q_OVERFLOW = 0x00004000
_IN_IGNORED = 0x00008000
_IN_ONLYDIR = 0x01000000
_IN_DONT_FOLLOW = 0x02000000
_IN_EXCL_UNLINK = 0x04000000
_IN_ISDIR = 0x40000000
_IN_NONBLOCK = os.O_NONBLOCK
_IN_CLOEXEC = os.O_CLOEXEC

WATCH_MASK = _IN_CLOSE_WRITE | _IN_MOVED_TO | _IN_CREATE | _IN_DONT_FOLLOW | _IN_EXCL_UNLINK
"""The events each folder's watch asks for (see the module docstring); ``IN_EXCL_UNLINK``:
nothing about a file after it is unlinked."""

_EVENT = struct.Struct("iIII")  # wd, mask, cookie, len; then ``len`` bytes of NUL-padded name
_READ_SIZE = 64 * 1024
"""Bytes read at once into one reused buffer: hundreds of events (an event is 16 bytes and its
name), and no allocation per read."""


def _libc() -> ctypes.CDLL | None:
    if not sys.platform.startswith("linux"):
        return None
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        libc.inotify_init1.argtypes = [ctypes.c_int]
        libc.inotify_add_watch.argtypes = [ctypes.c_int, ctypes.c_char_p, ctypes.c_uint32]
    except (OSError, AttributeError):
        return None
    return libc


_LIBC = _libc()


def parse_events(data: bytes | bytearray, end: int) -> Iterator[tuple[int, int, bytes]]:
    """The ``(watch descriptor, mask, name)`` of each event in the first ``end`` bytes of
    ``data``, what one ``read`` of an instance gave."""
    offset = 0
    while offset < end:
        wd, mask, _cookie, size = _EVENT.unpack_from(data, offset)
        start = offset + _EVENT.size
        offset = start + size
        yield wd, mask, bytes(data[start:offset]).rstrip(b"\0")


def available() -> bool:
    """Whether this platform has inotify (else the caller uses watchdog)."""
    return _LIBC is not None


class TreeWatch:
    """The watch of one folder tree.

    :param root: the folder watched with everything below it.
    :param on_file: called from the reader thread with the path of each file that appeared or
        was closed after writing; must not block.
    :param on_overflow: called from the reader thread when the kernel dropped events.
    """

    def __init__(
        self,
        root: str,
        on_file: Callable[[str], None],
        on_overflow: Callable[[], None],
    ) -> None:
        self.root = root
        self._on_file = on_file
        self._on_overflow = on_overflow
        self._folders: dict[int, str] = {}
        self._fd = -1
        self._wake = -1  # an eventfd: what stop() writes to end the reader
        self._thread: threading.Thread | None = None
        self._full = False

    def start(self) -> None:
        """Watch the tree as it is now and start the reader thread.

        :raises OSError: no inotify instance or watch could be had (the per-user limits).
        """
        assert _LIBC is not None, "TreeWatch needs Linux inotify; check available()"
        fd = _LIBC.inotify_init1(_IN_NONBLOCK | _IN_CLOEXEC)
        if fd < 0:
            code = ctypes.get_errno()
            raise OSError(code, f"inotify_init1: {os.strerror(code)}")
        self._fd = fd
        try:
            self._add(self.root, strict=True)
            for _ in self._watch_below(self.root):
                pass  # files already there are the caller's first scan, not events
            self._wake = os.eventfd(0, os.EFD_CLOEXEC)
        except OSError:
            os.close(fd)
            self._fd = -1
            raise
        self._thread = threading.Thread(
            target=self._read_loop, name=f"syftbox-inotify-{os.path.basename(self.root)}"
        )
        self._thread.daemon = True
        self._thread.start()

    def stop(self) -> None:
        """Stop the reader, which then releases the instance and its watches; idempotent.

        Safe from a callback too: the reader then stops once the callback returns.
        """
        if self._thread is None:
            return
        os.eventfd_write(self._wake, 1)  # the only stop signal: the reader closes after it
        if self._thread is not threading.current_thread():
            self._thread.join()
        self._thread = None

    # -- watches --------------------------------------------------------------------------

    def _add(self, folder: str, *, strict: bool = False) -> bool:
        """Watch ``folder``; False if it is gone or not a folder (or, unless ``strict``, the
        watch limit is reached, logged once)."""
        assert _LIBC is not None
        wd = _LIBC.inotify_add_watch(self._fd, os.fsencode(folder), WATCH_MASK | _IN_ONLYDIR)
        if wd >= 0:
            self._folders[wd] = folder  # a folder renamed within the tree keeps its wd
            return True
        code = ctypes.get_errno()
        if code in (errno.ENOENT, errno.ENOTDIR):
            return False
        if strict:
            raise OSError(code, f"inotify_add_watch {folder}: {os.strerror(code)}")
        if not self._full:
            self._full = True
            logger.warning(
                "cannot watch %s (%s); files below it are found by the sweep",
                folder,
                os.strerror(code),
            )
        return False

    def _watch_below(self, folder: str) -> Iterator[str]:
        """Watch every folder below ``folder`` (watched already), yielding the files found.

        Each folder is watched before it is listed, so a file created in it meanwhile is an
        event or a listing entry, never neither.
        """
        try:
            with os.scandir(folder) as scan:
                entries = list(scan)
        except OSError:
            return  # gone meanwhile
        for entry in entries:
            if entry.is_dir(follow_symlinks=False):
                if self._add(entry.path):
                    yield from self._watch_below(entry.path)
            else:
                yield entry.path

    # -- reading --------------------------------------------------------------------------

    def _read_loop(self) -> None:
        poller = select.poll()
        poller.register(self._fd, select.POLLIN)
        poller.register(self._wake, select.POLLIN)
        buffer = bytearray(_READ_SIZE)
        try:
            with io.FileIO(self._fd, "r", closefd=False) as reader:
                while True:
                    if any(fd == self._wake for fd, _ in poller.poll()):
                        return
                    size = reader.readinto(buffer)  # None: nothing left (non-blocking)
                    if size:
                        self._dispatch(buffer, size)
        finally:
            os.close(self._fd)
            os.close(self._wake)
            self._fd = self._wake = -1

    def _dispatch(self, data: bytearray, size: int) -> None:
        try:
            self._route(data, size)
        except Exception:  # a callback's defect must not end the watching
            logger.exception("inotify events under %s could not be routed", self.root)

    def _route(self, data: bytearray, size: int) -> None:
        for wd, mask, name in parse_events(data, size):
            if mask & _IN_Q_OVERFLOW:
                self._on_overflow()
                continue
            if mask & _IN_IGNORED:
                self._folders.pop(wd, None)
                continue
            folder = self._folders.get(wd)
            if folder is None or not name:
                continue
            path = os.path.join(folder, os.fsdecode(name))
            if mask & _IN_ISDIR:
                if mask & (_IN_CREATE | _IN_MOVED_TO) and self._add(path):
                    for found in self._watch_below(path):
                        self._on_file(found)
            else:
                self._on_file(path)
