"""The one door to paths below the datasites folder: nothing there is followed, nothing blocks.

Every SyftBox user can write its own sender folder in every other datasite, and sync clients
copy whatever a peer put there. So an RPC path may hold a symlink (to a folder, to
``/etc/passwd``, to itself), a FIFO (an ``open`` that never returns), a directory, or sit in a
sender folder that is a symlink out of the datasites tree. Everything the transport reads,
writes, lists or removes below the datasites folder goes through a :class:`SafeRoot`:

- folders are walked from the root one component at a time with
  ``O_DIRECTORY | O_NOFOLLOW`` descriptors (and created the same way), so no folder below the
  root can be a symlink; on Linux, ``openat2(2)`` does the same walk in one call first
  (:mod:`~syft_flwr_syftbox.beneath`), and the walk runs only where it could not. The root
  itself is resolved once, when the transport starts: the user may have made it a symlink, a
  peer cannot;
- files are opened with ``O_NOFOLLOW | O_NONBLOCK`` relative to their folder's descriptor
  and kept only if ``fstat`` says *regular file*: a FIFO opens at once and is refused, and so
  are devices, sockets and directories;
- files are created, linked, renamed and removed relative to the folder's descriptor
  (:func:`~syft_flwr_syftbox.atomic.write_atomic_at`), so a folder swapped for a symlink
  between a check and a write cannot redirect the write;
- listings use ``scandir`` on the descriptor and never follow a symlink.

Refusals are :class:`~syft_flwr.errors.UnsafeFileError`, whose message names the path and
what is there; an absent path stays :class:`FileNotFoundError`.
"""

from __future__ import annotations

import contextlib
import errno
import os
import shutil
import stat
import threading
from collections import OrderedDict
from collections.abc import Callable, Hashable, Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

from syft_flwr.errors import UnsafeFileError
from syft_flwr_syftbox.atomic import Frame, write_atomic_at
from syft_flwr_syftbox.beneath import open_folder_beneath

__all__ = ["Entry", "FirstTime", "SafeRoot", "describe", "open_regular", "unsafe"]

_DIR_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC
_FILE_FLAGS = os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC
# What open(2) says when the object is there but is not what was asked for: a symlink
# (ELOOP; ENOTDIR with O_DIRECTORY), a non-folder on the way (ENOTDIR), a folder where a
# file is written (EISDIR), a socket (ENXIO).
_NOT_WHAT_WAS_ASKED = {errno.ELOOP, errno.ENOTDIR, errno.EISDIR, errno.ENXIO}
_A_FILE = "a regular file"
_A_FOLDER = "a folder"


def describe(mode: int) -> str:
    """What kind of object an ``st_mode`` is, for messages ("a symlink", "a FIFO", ...)."""
    kinds = [
        (stat.S_ISLNK, "a symlink"),
        (stat.S_ISDIR, _A_FOLDER),
        (stat.S_ISREG, _A_FILE),
        (stat.S_ISFIFO, "a FIFO"),
        (stat.S_ISSOCK, "a socket"),
        (stat.S_ISCHR, "a character device"),
        (stat.S_ISBLK, "a block device"),
    ]
    return next((name for test, name in kinds if test(mode)), "an object of unknown type")


def unsafe(path: Path | str, mode: int, wanted: str) -> UnsafeFileError:
    """The refusal of the object at ``path`` (of ``mode``) where ``wanted`` was expected.

    One wording for every way the object is met (opened, walked through, listed), so a
    caller that reports each refusal once per message reports each object once.
    """
    return UnsafeFileError(f"{path} is {describe(mode)}, not {wanted}; it is not followed")


@contextmanager
def open_regular(path: Path | str) -> Iterator[tuple[BinaryIO, os.stat_result]]:
    """Open a regular file for reading, and its ``fstat``, without following a symlink.

    Non-blocking, so a FIFO opens at once and is then refused like any other non-file. Only
    the last component is checked; below the datasites folder use :meth:`SafeRoot.open_file`.

    :raises FileNotFoundError: there is nothing at ``path``.
    :raises UnsafeFileError: ``path`` is a symlink, FIFO, device, socket or directory.
    """
    with _open_regular(str(path), None, path) as opened:
        yield opened


@contextmanager
def _open_regular(
    name: str, dir_fd: int | None, shown: Path | str
) -> Iterator[tuple[BinaryIO, os.stat_result]]:
    try:
        fd = os.open(name, _FILE_FLAGS, dir_fd=dir_fd)
    except OSError as exc:
        refusal = _refusal(exc, name, dir_fd, shown, _A_FILE)
        if refusal is None:
            raise
        raise refusal from exc
    try:
        info = os.fstat(fd)
        if not stat.S_ISREG(info.st_mode):
            raise unsafe(shown, info.st_mode, _A_FILE)
        handle = os.fdopen(fd, "rb")
    except BaseException:
        os.close(fd)
        raise
    with handle:
        yield handle, info


@dataclass(frozen=True)
class Entry:
    """One name in a folder, as it is (never what a symlink points to).

    :param mode: the file type bits of its ``st_mode`` (``stat.S_IFMT``).
    """

    path: Path
    mode: int

    @property
    def is_file(self) -> bool:
        return stat.S_ISREG(self.mode)

    @property
    def is_folder(self) -> bool:
        return stat.S_ISDIR(self.mode)

    @property
    def is_symlink(self) -> bool:
        return stat.S_ISLNK(self.mode)

    def refusal(self, *, folder: bool) -> UnsafeFileError:
        """Why this entry is skipped where a folder (or else a regular file) was expected."""
        return unsafe(self.path, self.mode, _A_FOLDER if folder else _A_FILE)


class SafeRoot:
    """Filesystem operations below ``root`` that never follow a symlink below it.

    :param root: the datasites folder, already resolved (absolute, no symlink in it).
    """

    def __init__(self, root: Path) -> None:
        self.root = root

    @contextmanager
    def folder(self, path: Path, *, create: bool = False) -> Iterator[int]:
        """A descriptor of the folder at ``path``, reached without following a symlink.

        :param create: create missing folders on the way (``mkdir -p``), also never
            following a symlink.
        :raises FileNotFoundError: a folder is missing and ``create`` is false.
        :raises UnsafeFileError: ``path`` is outside the root, or something on the way is a
            symlink or not a folder.
        """
        fd = os.open(self.root, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
        try:
            parts = self._parts(path)
            reached = open_folder_beneath(fd, parts)
            if reached is not None:  # the kernel's walk, same rule (see beneath)
                os.close(fd)
                fd = reached
                parts = ()
            walked = self.root
            for name in parts:
                walked = walked / name
                child = _child_folder(fd, name, walked, create)
                os.close(fd)
                fd = child
            yield fd
        finally:
            os.close(fd)

    @contextmanager
    def open_file(self, path: Path) -> Iterator[tuple[BinaryIO, os.stat_result]]:
        """:func:`open_regular` for ``path``, its folder reached by :meth:`folder`."""
        with self.folder(path.parent) as fd, _open_regular(path.name, fd, path) as opened:
            yield opened

    def lstat(self, path: Path) -> os.stat_result:
        """The object at ``path`` itself (a symlink is reported, not followed).

        :raises FileNotFoundError: there is nothing at ``path``.
        :raises UnsafeFileError: a folder on the way is a symlink or not a folder.
        """
        with self.folder(path.parent) as fd:
            return os.stat(path.name, dir_fd=fd, follow_symlinks=False)

    def exists(self, path: Path) -> bool:
        """Whether anything (a dangling symlink too) is at ``path``; False if unreachable
        (below a symlink, or a folder on the way cannot be searched)."""
        try:
            self.lstat(path)
        except (OSError, UnsafeFileError):
            return False
        return True

    def entries(self, folder: Path) -> list[Entry]:
        """The names in ``folder`` with their own types, without following any symlink.

        :raises FileNotFoundError: ``folder`` does not exist.
        :raises UnsafeFileError: ``folder`` is, or lies below, a symlink or non-folder.
        """
        with self.folder(folder) as fd, os.scandir(fd) as scan:
            found = []
            for entry in scan:
                try:
                    found.append(Entry(folder / entry.name, _type_of(entry)))
                except FileNotFoundError:
                    continue  # removed while listing
            return found

    def makedirs(self, folder: Path) -> None:
        """``mkdir -p`` of ``folder``, never following a symlink on the way."""
        with self.folder(folder, create=True):
            pass

    def write_atomic(
        self,
        path: Path,
        frames: Iterable[Frame],
        *,
        replace: bool = False,
        fsync: bool = True,
        create: bool = False,
    ) -> None:
        """:func:`~syft_flwr_syftbox.atomic.write_atomic_at` into the folder of ``path``.

        :param create: create the folder (and its missing parents) first.
        :raises FileExistsError: ``path`` exists and ``replace`` is false.
        :raises UnsafeFileError: the folder is, or lies below, a symlink or non-folder.
        """
        with self.folder(path.parent, create=create) as fd:
            write_atomic_at(fd, path.name, frames, replace=replace, fsync=fsync)

    def rename_new(self, source: Path, target: Path) -> None:
        """Rename the regular file ``source`` to ``target`` in the same folder, which must
        not exist (nothing is overwritten; the check and the rename are not one step, so
        only for folders no other local process writes names into).

        :raises FileNotFoundError: ``source`` is gone.
        :raises FileExistsError: something is at ``target``.
        :raises UnsafeFileError: ``source`` is not a regular file, the two are in different
            folders, or the folder is, or lies below, a symlink.
        """
        if source.parent != target.parent:
            raise UnsafeFileError(f"{source} and {target} are not in one folder")
        with self.folder(source.parent) as fd:
            mode = os.stat(source.name, dir_fd=fd, follow_symlinks=False).st_mode
            if not stat.S_ISREG(mode):
                raise unsafe(source, mode, _A_FILE)
            try:
                os.stat(target.name, dir_fd=fd, follow_symlinks=False)
            except FileNotFoundError:
                os.rename(source.name, target.name, src_dir_fd=fd, dst_dir_fd=fd)
            else:
                raise FileExistsError(f"{target} exists")

    def unlink(self, path: Path) -> None:
        """Remove the name ``path`` (a symlink itself, never its target); absent is fine.

        :raises IsADirectoryError: ``path`` is a folder (see :meth:`remove`).
        """
        try:
            with self.folder(path.parent) as fd:
                os.unlink(path.name, dir_fd=fd)
        except FileNotFoundError:
            pass

    def remove(self, path: Path) -> None:
        """Remove whatever is at ``path``: a folder with everything in it, or any other name.

        A folder's tree is removed by descriptor (``shutil.rmtree`` with ``dir_fd``, which
        does not follow symlinks inside it); absent is fine.
        """
        try:
            with self.folder(path.parent) as fd:
                mode = os.stat(path.name, dir_fd=fd, follow_symlinks=False).st_mode
                if stat.S_ISDIR(mode):
                    shutil.rmtree(path.name, dir_fd=fd)
                else:
                    os.unlink(path.name, dir_fd=fd)
        except FileNotFoundError:
            pass

    def unlink_and_find(
        self, folder: Path, names: Sequence[str], wanted: Callable[[str], bool]
    ) -> tuple[list[tuple[Path, OSError]], list[Path]]:
        """Unlink ``names`` from ``folder`` in order, then list what is left there that
        ``wanted`` accepts, through one descriptor of the folder: a finished exchange's
        request and reply go, and their parts are found, with one walk to their folder instead
        of one per name. Absent names are fine.

        :return: the names that could not be unlinked, each with its error (the others
            went), and the paths of the wanted names left.
        :raises FileNotFoundError: ``folder`` does not exist.
        :raises UnsafeFileError: ``folder`` is, or lies below, a symlink or non-folder.
        """
        failed: list[tuple[Path, OSError]] = []
        with self.folder(folder) as fd:
            for name in names:
                try:
                    os.unlink(name, dir_fd=fd)
                except FileNotFoundError:
                    pass
                except OSError as exc:
                    failed.append((folder / name, exc))
            with os.scandir(fd) as scan:
                found = [folder / entry.name for entry in scan if wanted(entry.name)]
        return failed, found

    def _parts(self, path: Path) -> tuple[str, ...]:
        try:
            parts = path.relative_to(self.root).parts
        except ValueError:
            raise UnsafeFileError(f"{path} is not below {self.root}") from None
        if any(part in ("", ".", "..") for part in parts):
            raise UnsafeFileError(f"{path} has a '.' or '..' component")
        return parts


class FirstTime:
    """Remembers which keys were seen, to report each hostile object once, not every sweep.

    Bounded: past ``limit`` keys the oldest are forgotten (and would be reported again), so
    a peer planting endless objects cannot grow this without bound. Thread-safe.
    """

    def __init__(self, limit: int = 4096) -> None:
        self._limit = limit
        self._seen: OrderedDict[Hashable, None] = OrderedDict()
        self._lock = threading.Lock()

    def __call__(self, key: Hashable) -> bool:
        """True the first time ``key`` is seen (since it was last forgotten)."""
        with self._lock:
            if key in self._seen:
                self._seen.move_to_end(key)
                return False
            self._seen[key] = None
            if len(self._seen) > self._limit:
                self._seen.popitem(last=False)
            return True

    def forget(self, key: Hashable) -> None:
        """Report ``key`` again next time (its object is gone, its future settled)."""
        with self._lock:
            self._seen.pop(key, None)


def _type_of(entry: os.DirEntry[str]) -> int:
    """An entry's file type, from the listing itself where it says (no ``stat`` call for the
    usual symlinks, folders and files), from ``lstat`` for the rest (FIFOs, sockets, ...)."""
    if entry.is_symlink():
        return stat.S_IFLNK
    if entry.is_dir(follow_symlinks=False):
        return stat.S_IFDIR
    if entry.is_file(follow_symlinks=False):
        return stat.S_IFREG
    return stat.S_IFMT(entry.stat(follow_symlinks=False).st_mode)


def _child_folder(parent: int, name: str, path: Path, create: bool) -> int:
    """Open the folder ``name`` in ``parent`` (creating it if asked) without following it."""
    try:
        return _open_folder(parent, name, path)
    except FileNotFoundError:
        if not create:
            raise
    with contextlib.suppress(FileExistsError):  # mkdir never follows: a symlink is EEXIST
        os.mkdir(name, 0o755, dir_fd=parent)
    return _open_folder(parent, name, path)


def _open_folder(parent: int, name: str, path: Path) -> int:
    try:
        return os.open(name, _DIR_FLAGS, dir_fd=parent)
    except OSError as exc:
        refusal = _refusal(exc, name, parent, path, _A_FOLDER)
        if refusal is None:
            raise
        raise refusal from exc


def _refusal(
    exc: OSError, name: str, dir_fd: int | None, shown: Path | str, wanted: str
) -> UnsafeFileError | None:
    """``exc`` as a refusal naming what is at ``shown``, or ``None`` if it means no such thing."""
    if exc.errno not in _NOT_WHAT_WAS_ASKED:
        return None
    try:
        mode = os.stat(name, dir_fd=dir_fd, follow_symlinks=False).st_mode
    except OSError:
        return UnsafeFileError(f"{shown} is not {wanted} ({exc.strerror}); it is not followed")
    return unsafe(shown, mode, wanted)
