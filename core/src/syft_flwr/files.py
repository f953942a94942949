"""Crash-safe files (keys, pins, run workspaces): readers see old or new content, never half.

Two levels of durability, chosen by the caller. Every write goes to a temporary file renamed
over the target, which is atomic, so a crash of the *process* (a kill, the crash safety the
server's commit points are designed and tested for) leaves the old file or the new one. With
``fsync`` the data and the rename are also flushed to disk, so the same holds after a crash of
the *machine* (power loss): that costs two flushes per file, a few milliseconds each on a
typical disk, which is why the server's per-message and per-round files take the run's setting
(``SYFT_FLWR_FSYNC``) while keys and pins, written rarely, always flush.
"""

from __future__ import annotations

import contextlib
import io
import itertools
import json
import os
import threading
from pathlib import Path
from typing import Any

from syft_flwr.errors import WorkspaceError, WorkspaceIOError

__all__ = [
    "LineAppender",
    "append_json_line",
    "read_json",
    "read_json_lines",
    "write_atomic",
    "write_json",
]


def write_atomic(path: Path, data: bytes | bytearray | memoryview, *, fsync: bool = True) -> None:
    """Replace ``path`` with ``data`` atomically (mode 0600).

    The bytes go to a temporary file in the same directory, renamed over ``path``, so a crash
    at any point leaves either the old file or the new one: the property resume relies on.
    With ``fsync`` the file is flushed before the rename and the directory after it, so this
    also holds after a machine crash.

    :raises WorkspaceIOError: the write failed (disk full, read-only, not a folder); the old
        file, if any, is untouched.
    """
    try:
        fd, temp = _create_temp(path)
    except OSError as exc:
        raise WorkspaceIOError(f"cannot write {path}: {exc}") from exc
    try:
        try:
            _write_all(fd, data, fsync)
        finally:
            os.close(fd)
        os.replace(temp, path)
        if fsync:
            _fsync_dir(path.parent)
    except OSError as exc:
        _unlink_quietly(temp)
        raise WorkspaceIOError(f"cannot write {path}: {exc}") from exc
    except BaseException:
        _unlink_quietly(temp)
        raise


_temp_serial = itertools.count()


def _create_temp(path: Path) -> tuple[int, str]:
    """A new file (mode 0600) beside ``path`` for :func:`write_atomic`, and its name.

    Named after ``path``, the process and a counter, created with ``O_EXCL`` (a leftover of an
    earlier process with the same id is stepped over); the folder is created when missing.
    ``tempfile.mkstemp`` and a ``mkdir`` per call cost more than a small file's write, and the
    server writes several per round.
    """
    folder, prefix = os.fspath(path.parent), f".{path.name}.{os.getpid()}."
    created = False
    while True:
        temp = os.path.join(folder, f"{prefix}{next(_temp_serial)}")
        try:
            return os.open(temp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o600), temp
        except FileExistsError:
            continue
        except FileNotFoundError:
            if created:
                raise
            path.parent.mkdir(parents=True, exist_ok=True)
            created = True


def _unlink_quietly(name: str) -> None:
    with contextlib.suppress(FileNotFoundError):
        os.unlink(name)


def write_json(path: Path, value: Any, *, fsync: bool = True) -> None:
    """Write ``value`` as indented JSON, atomically (see :func:`write_atomic`).

    For small files people read: indented JSON is encoded by the pure-Python encoder, several
    times slower than compact JSON. The one large file rewritten every round, the server's
    snapshot, is joined by its store from pieces encoded once (``syft_flwr.server.fragments``).
    """
    text = json.dumps(value, indent=2, sort_keys=True)
    write_atomic(path, (text + "\n").encode(), fsync=fsync)


def read_json(path: Path) -> Any:
    """Read a JSON file written by :func:`write_json`.

    :raises WorkspaceError: the file is missing or is not JSON (names the file).
    """
    try:
        return json.loads(path.read_bytes())
    except FileNotFoundError:
        raise WorkspaceError(f"{path} is missing") from None
    except (OSError, ValueError) as exc:
        raise WorkspaceError(f"{path} is unreadable: {exc}") from exc


def append_json_line(path: Path, value: Any, *, fsync: bool = False) -> None:
    """Append one JSON document as a line; a torn last line is skipped by readers.

    The line survives a crash of the process once this returns; with ``fsync`` it is also
    flushed to disk (a crash of the machine).

    :raises WorkspaceIOError: the write failed (disk full, read-only, not a folder).
    """
    try:
        fd, torn = _open_for_append(path)
        try:
            _write_all(fd, (b"\n" if torn else b"") + _json_line(value), fsync)
        finally:
            os.close(fd)
    except OSError as exc:
        raise WorkspaceIOError(f"cannot append to {path}: {exc}") from exc


class LineAppender:
    """Appends JSON lines to one file through a descriptor kept open between lines.

    :func:`append_json_line` opens, checks and closes the file for every line (over 100 us);
    a file that gains several lines per message (a run's ``events.jsonl``) keeps its
    descriptor instead. A torn last line is looked for when the file is opened (only a crash
    tears one, and it ends the process holding the descriptor); each line is then one
    ``write`` on an ``O_APPEND`` descriptor, durable against a crash of the process once
    :meth:`append` returns, as with :func:`append_json_line`. Thread-safe; :meth:`close` is
    idempotent and a later line opens the file again.
    """

    def __init__(self, path: Path, *, fsync: bool = False) -> None:
        self.path = path
        self.fsync = fsync
        self._file: io.FileIO | None = None  # closed by the collector if never closed here
        self._lock = threading.Lock()

    def append(self, value: Any) -> None:
        """Append ``value`` as one line.

        :raises WorkspaceIOError: the write failed (disk full, read-only, not a folder); the
            descriptor is closed, so the next line checks the file again.
        """
        line = _json_line(value)
        with self._lock:
            try:
                if self._file is None:
                    fd, torn = _open_for_append(self.path)
                    self._file = io.FileIO(fd, "a")
                    if torn:
                        line = b"\n" + line
                _write_all(self._file.fileno(), line, self.fsync)
            except OSError as exc:
                self._close()
                raise WorkspaceIOError(f"cannot append to {self.path}: {exc}") from exc

    def close(self) -> None:
        """Release the descriptor."""
        with self._lock:
            self._close()

    def _close(self) -> None:
        file, self._file = self._file, None
        if file is not None:
            file.close()


def _json_line(value: Any) -> bytes:
    return (json.dumps(value, sort_keys=True, default=str) + "\n").encode()


def _open_for_append(path: Path) -> tuple[int, bool]:
    """A descriptor appending to ``path`` (created 0600), and whether its last line is torn:
    a line torn by a crash has no newline, and the next one must not be glued to it."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_RDWR | os.O_APPEND | os.O_CREAT | os.O_CLOEXEC, 0o600)
    try:
        size = os.fstat(fd).st_size
        return fd, size > 0 and os.pread(fd, 1, size - 1) != b"\n"
    except BaseException:
        os.close(fd)
        raise


def _write_all(fd: int, data: bytes | bytearray | memoryview, fsync: bool) -> None:
    view = memoryview(data).cast("B")
    while view:
        view = view[os.write(fd, view) :]
    if fsync:
        os.fsync(fd)


def read_json_lines(path: Path) -> list[Any]:
    """Every complete JSON line of ``path`` (none if it does not exist)."""
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        return []
    values = []
    for line in text.splitlines():
        try:
            values.append(json.loads(line))
        except ValueError:
            continue  # a line torn by a crash mid-append
    return values


def _fsync_dir(directory: Path) -> None:
    fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
