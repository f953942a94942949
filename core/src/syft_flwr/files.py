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

import json
import os
import tempfile
from pathlib import Path
from typing import Any

from syft_flwr.errors import WorkspaceError, WorkspaceIOError

__all__ = ["append_json_line", "read_json", "read_json_lines", "write_atomic", "write_json"]


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
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, temp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    except OSError as exc:
        raise WorkspaceIOError(f"cannot write {path}: {exc}") from exc
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
            handle.flush()
            if fsync:
                os.fsync(handle.fileno())
        os.replace(temp, path)
        if fsync:
            _fsync_dir(path.parent)
    except OSError as exc:
        Path(temp).unlink(missing_ok=True)
        raise WorkspaceIOError(f"cannot write {path}: {exc}") from exc
    except BaseException:
        Path(temp).unlink(missing_ok=True)
        raise


def write_json(path: Path, value: Any, *, fsync: bool = True, indent: int | None = 2) -> None:
    """Write ``value`` as JSON, atomically (see :func:`write_atomic`).

    Indented for the files people read; ``indent=None`` for the ones rewritten every round,
    which only ``json`` reads back: compact JSON is encoded by the C encoder, indented JSON by
    the pure-Python one, several times slower.
    """
    text = json.dumps(value, indent=indent, sort_keys=True)
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
    line = (json.dumps(value, sort_keys=True, default=str) + "\n").encode()
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(path, os.O_RDWR | os.O_APPEND | os.O_CREAT, 0o600)
        with os.fdopen(fd, "a+b") as handle:
            # A line torn by a crash has no newline: end it, or this line would be glued to it.
            if handle.seek(0, os.SEEK_END) > 0:
                handle.seek(-1, os.SEEK_END)
                if handle.read(1) != b"\n":
                    line = b"\n" + line
            handle.write(line)
            handle.flush()
            if fsync:
                os.fsync(handle.fileno())
    except OSError as exc:
        raise WorkspaceIOError(f"cannot append to {path}: {exc}") from exc


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
