"""Atomic file publication: a reader or a sync engine never sees a half-written RPC file.

Every file is written to a temporary name in the same folder, flushed to disk, and then made
visible under its final name in one step. The temporary name is chosen so that every SyftBox
sync engine ignores it:

- ``.<name>.syft.tmp.<random>.tmp`` matches ``*.syft.tmp.*`` (the Go and the Rust SyftBox
  clients' atomic-write pattern), ``*.tmp`` (their generic rule and the legacy Python client's),
  and the Rust client's orphan-temp cleanup; the leading dot keeps it out of globs such as
  syft-event's ``**/*.request``.

The final name is created with ``link(2)`` rather than ``rename(2)``: a hard link makes the
complete file appear as a *creation* of its final name, which every watcher handles (syft-event
before 0.4.3 reacts to created files only and misses renames), and it refuses to overwrite, so a
request or reply is never silently replaced. Filesystems without hard links fall back to
``rename``. With ``fsync`` (the default) the data is on disk before its name appears, as in
the SyftBox client's own atomic writes, so a crash can lose a file but never leave a name
pointing at missing data. The directory is not synced (nor does the SyftBox client sync it):
a name lost in a crash is a lost message, which the sender's TTL already turns into an error
reply, and it would cost a second flush per file.

Bodies are written with ``os.writev`` straight from the caller's buffers, so a 100 MiB model
is never joined into one more copy. Frames given as an iterator rather than a sequence (a
one-pass body, :class:`~syft_flwr.transport.FrameSource`, encrypted into one reused buffer) are
written one by one, each before the next is drawn, and drawn once: such a write is not retried.

Every step (create the temp file, link or rename it, remove it) is relative to a descriptor of
the folder (:func:`write_atomic_at`): a folder that a peer swaps for a symlink after it was
opened cannot redirect the write. :class:`~syft_flwr_syftbox.safe_fs.SafeRoot` opens that
descriptor without following symlinks; :func:`write_atomic` takes a path as given, for folders
no peer writes.
"""

from __future__ import annotations

import contextlib
import errno
import os
import secrets
from collections.abc import Iterable, Sequence
from pathlib import Path

__all__ = ["TEMP_MARKER", "Frame", "is_temp_name", "temp_name", "write_atomic", "write_atomic_at"]

TEMP_MARKER = ".syft.tmp."
_IOV_MAX = min(os.sysconf("SC_IOV_MAX") if hasattr(os, "sysconf") else 1024, 1024)
# Errors of link(2) that mean "this filesystem cannot hard-link", not "something is wrong".
_NO_LINK = {errno.EPERM, errno.ENOTSUP, errno.EOPNOTSUPP, errno.EXDEV, errno.EMLINK, errno.ENOSYS}

Frame = bytes | bytearray | memoryview


def temp_name(final_name: str) -> str:
    """A fresh temporary name for ``final_name`` that sync engines and watchers ignore."""
    return f".{final_name}{TEMP_MARKER}{secrets.token_hex(8)}.tmp"


def is_temp_name(name: str) -> bool:
    """Whether ``name`` is one of our (or SyftBox's) temporary names."""
    return TEMP_MARKER in name


def write_atomic(
    path: Path, frames: Iterable[Frame], *, replace: bool = False, fsync: bool = True
) -> None:
    """Write the concatenation of ``frames`` to ``path`` atomically (see :func:`write_atomic_at`).

    :raises FileExistsError: ``path`` exists and ``replace`` is false.
    :raises OSError: the folder is missing or not writable, the disk is full, ...
    """
    dir_fd = os.open(path.parent, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        write_atomic_at(dir_fd, path.name, frames, replace=replace, fsync=fsync)
    finally:
        os.close(dir_fd)


def write_atomic_at(
    dir_fd: int, name: str, frames: Iterable[Frame], *, replace: bool = False, fsync: bool = True
) -> None:
    """Write the concatenation of ``frames`` atomically as ``name`` in the folder ``dir_fd``.

    A sequence of frames is written with one ``writev``; any other iterable frame by frame,
    each written before the next is drawn (a reused buffer may be overwritten by the next).

    :param replace: overwrite an existing name (``rename``; a symlink there is replaced, not
        followed); otherwise the call fails with ``FileExistsError`` when anything is at
        ``name`` and leaves it untouched.
    :param fsync: flush the data to disk before the final name appears.
    :raises FileExistsError: ``name`` exists and ``replace`` is false.
    :raises OSError: the folder is not writable, the disk is full, ...
    """
    tmp = temp_name(name)
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC
    fd = os.open(tmp, flags, 0o644, dir_fd=dir_fd)
    try:
        try:
            if isinstance(frames, Sequence):
                _write_all(fd, [memoryview(frame).cast("B") for frame in frames])
            else:
                for frame in frames:  # each written before the next overwrites its buffer
                    _write_all(fd, [memoryview(frame).cast("B")])
            if fsync:
                os.fsync(fd)
        finally:
            os.close(fd)
        if replace:
            os.rename(tmp, name, src_dir_fd=dir_fd, dst_dir_fd=dir_fd)
        else:
            _publish_new(dir_fd, tmp, name)
    finally:
        _unlink_quietly(dir_fd, tmp)


def _publish_new(dir_fd: int, tmp: str, name: str) -> None:
    try:
        os.link(tmp, name, src_dir_fd=dir_fd, dst_dir_fd=dir_fd, follow_symlinks=False)
    except OSError as exc:
        if exc.errno not in _NO_LINK:
            raise
        if _exists(dir_fd, name):
            raise FileExistsError(errno.EEXIST, "file exists", name) from exc
        os.rename(tmp, name, src_dir_fd=dir_fd, dst_dir_fd=dir_fd)


def _exists(dir_fd: int, name: str) -> bool:
    try:
        os.stat(name, dir_fd=dir_fd, follow_symlinks=False)
    except FileNotFoundError:
        return False
    return True


def _write_all(fd: int, views: Sequence[memoryview]) -> None:
    """``writev`` until every byte is written (it may write less, and takes <= IOV_MAX buffers)."""
    pending = [view for view in views if len(view)]
    while pending:
        written = os.writev(fd, pending[:_IOV_MAX])
        while written and pending:
            head = pending[0]
            if written >= len(head):
                written -= len(head)
                pending.pop(0)
            else:
                pending[0] = head[written:]
                written = 0


def _unlink_quietly(dir_fd: int, name: str) -> None:
    with contextlib.suppress(FileNotFoundError):
        os.unlink(name, dir_fd=dir_fd)
