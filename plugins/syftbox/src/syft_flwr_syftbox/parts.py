"""Large bodies as part files plus a manifest, so no file exceeds what sync clients carry.

SyftBox sync clients limit file sizes: the Python SyftBox 0.4.0 client and server refuse files
over 10 MB, and the Go SyftBox fast-tracks RPC files only up to about 4 MB, while a model can
be far larger. So a native body larger than the transport's ``part_size`` is written as::

    <sender folder>/<id>.<kind>.0.part      the first part_size bytes of the (sealed) body
    <sender folder>/<id>.<kind>.1.part      the next ones, ...
    <sender folder>/<id>.<kind>             the manifest, last: a native file with an empty
                                            body whose header lists [size, sha256-hex] per part

(``kind`` is ``request`` or ``response``), each file atomically through
:class:`~syft_flwr_syftbox.safe_fs.SafeRoot`, the parts from slices of the caller's frames.
The manifest appears only after every part, so a reader on the writer's machine never sees a
partial message. A sync client may still deliver them in any order, and write each in place
(SyftBox 0.4.0 sends small files first and writes downloads in place), so a reader treats a
part that is missing, short, or not yet of its declared hash as "not complete yet"
(:class:`PartsIncompleteError`) and tries again when a part changes. Sizes are checked before
any hashing, so waiting for the last part of many costs a ``stat`` per part, not a read.
Bodies arrive here already sealed by the core, so no part reveals anything.
"""

from __future__ import annotations

import hashlib
import stat
from collections.abc import Iterator, Sequence
from pathlib import Path

from syft_flwr.errors import WireFormatError
from syft_flwr.transport import Body, body_frames
from syft_flwr_syftbox.received import allocate, read_into, received
from syft_flwr_syftbox.rpcfile import IncompleteFileError, Part
from syft_flwr_syftbox.safe_fs import SafeRoot, unsafe

__all__ = [
    "PART_SUFFIX",
    "PartsIncompleteError",
    "assemble",
    "manifest_of",
    "part_path",
    "write_parts",
]

PART_SUFFIX = ".part"


class PartsIncompleteError(IncompleteFileError):
    """A manifest's part is missing, shorter than declared, or not (yet) of its hash."""


def part_path(manifest: Path, index: int) -> Path:
    """The path of part ``index`` of the manifest at ``manifest``."""
    return manifest.with_name(f"{manifest.name}.{index}{PART_SUFFIX}")


def manifest_of(path: Path) -> Path | None:
    """The manifest a part at ``path`` belongs to, or ``None`` if it is not named like a part.

    Only canonical indices count (``0``, ``7``, not ``07``), so one part has one name.
    """
    if not path.name.endswith(PART_SUFFIX):
        return None
    manifest, _, index = path.name[: -len(PART_SUFFIX)].rpartition(".")
    canonical = index.isascii() and index.isdigit() and str(int(index)) == index
    return path.with_name(manifest) if manifest and canonical else None


def write_parts(
    fs: SafeRoot,
    manifest: Path,
    body: Body,
    part_size: int,
    *,
    fsync: bool,
    replace: bool = False,
) -> tuple[Part, ...]:
    """Write ``body`` (a buffer or its frames) as the parts of ``manifest``, in order; what its
    header must list.

    Each part is made of slices of the body's frames (never a copy; a part boundary may fall
    inside a frame, and a part may span several), written atomically, its folder created if
    missing. The caller removes the parts written if this fails part-way.

    :param replace: replace whatever is at a part's name (a reply's slot may hold foreign
        objects); otherwise an existing name fails.
    :raises FileExistsError: a part's name is taken and ``replace`` is false.
    :raises UnsafeFileError: the folder is, or lies below, a symlink or non-folder.
    :raises OSError: the folder is not writable, the disk is full, ...
    """
    parts = []
    for index, chunk in enumerate(_chunks(body, part_size)):
        fs.write_atomic(
            part_path(manifest, index), chunk, replace=replace, fsync=fsync, create=True
        )
        digest = hashlib.sha256()
        for view in chunk:
            digest.update(view)
        parts.append(Part(sum(len(view) for view in chunk), digest.hexdigest()))
    return tuple(parts)


def _chunks(body: Body, size: int) -> Iterator[list[memoryview]]:
    """The body's bytes in runs of ``size`` (the last may be shorter), each as frame slices."""
    chunk: list[memoryview] = []
    room = size
    for view in body_frames(body):
        while len(view):
            piece, view = view[:room], view[room:]
            chunk.append(piece)
            room -= len(piece)
            if room == 0:
                yield chunk
                chunk, room = [], size
    if chunk:
        yield chunk


def assemble(fs: SafeRoot, manifest: Path, parts: Sequence[Part]) -> bytes:
    """The body of the manifest at ``manifest``, read from its parts and checked.

    Every part's size is checked (``lstat``) before any is read, then each is read (opened
    as a regular file only, no further than its declared size) straight into its place in one
    buffer of the declared total, and its hash compared: the body is read once and never
    joined (from :data:`~syft_flwr_syftbox.received.RELEASABLE_FROM` bytes on, into a
    releasable buffer the core frees as it decrypts). The caller has held the declared total
    against its limit already (:mod:`~syft_flwr_syftbox.native_file` does).

    :raises PartsIncompleteError: a part is missing, shorter than declared, or of another
        hash (still being written in place); try again when it changes.
    :raises WireFormatError: a part is larger than declared; it is not read.
    :raises UnsafeFileError: a part is a symlink, FIFO, folder, ... or below one.
    """
    paths = [part_path(manifest, index) for index in range(len(parts))]
    for path, part in zip(paths, parts, strict=True):
        _check_size(path, _size(fs, path), part)
    target = allocate(sum(part.size for part in parts))
    offset = 0
    for path, part in zip(paths, parts, strict=True):
        _read_part(fs, path, part, target[offset : offset + part.size])
        offset += part.size
    return received(target)


def _size(fs: SafeRoot, path: Path) -> int:
    """The size of the regular file at ``path``; a missing part is an incomplete one."""
    try:
        info = fs.lstat(path)
    except FileNotFoundError:
        raise PartsIncompleteError(f"{path.name} has not arrived yet") from None
    if not stat.S_ISREG(info.st_mode):
        raise unsafe(path, info.st_mode, "a regular file")
    return info.st_size


def _check_size(path: Path, size: int, part: Part) -> None:
    if size < part.size:
        raise PartsIncompleteError(f"{path.name} has {size} of its {part.size} bytes")
    if size > part.size:
        raise WireFormatError(f"{path.name} is {size} bytes, more than the {part.size} declared")


def _read_part(fs: SafeRoot, path: Path, part: Part, target: memoryview) -> None:
    """Read the part at ``path`` into ``target`` (its declared size), checking its hash."""
    try:
        with fs.open_file(path) as (handle, info):
            _check_size(path, info.st_size, part)
            count = read_into(handle, target)
    except FileNotFoundError:
        raise PartsIncompleteError(f"{path.name} went away while being read") from None
    if count < part.size:
        raise PartsIncompleteError(f"{path.name} was truncated while being read")
    if hashlib.sha256(target).hexdigest() != part.sha256:
        raise PartsIncompleteError(f"{path.name} does not have its declared hash (yet)")
