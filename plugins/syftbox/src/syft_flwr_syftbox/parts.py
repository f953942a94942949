"""Large bodies as part files plus a manifest, so no file exceeds what sync clients carry.

SyftBox sync clients limit file sizes: the Python SyftBox 0.4.0 client and server refuse files
over 10 MB, and the Go SyftBox fast-tracks RPC files only up to about 4 MB, while a model can
be far larger. So a native body larger than the transport's ``part_size`` is written as::

    <sender folder>/<id>.<kind>.0.part      the first part_size bytes of the (sealed) body
    <sender folder>/<id>.<kind>.1.part      the next ones, ...
    <sender folder>/<id>.<kind>             the manifest, last: a native file with an empty
                                            body whose header lists [size, sha256-hex] per part

(``kind`` is ``request`` or ``response``), each file atomically through
:class:`~syft_flwr_syftbox.safe_fs.SafeRoot`, the parts from slices of the caller's frames (or
of a one-pass sealed body's reused buffer, hashed and written as it is encrypted).
The manifest appears only after every part, so a reader on the writer's machine never sees a
partial message. A sync client may still deliver them in any order, and write each in place
(SyftBox 0.4.0 sends small files first and writes downloads in place), so a reader treats a
part that is missing, short, or not yet of its declared hash as "not complete yet"
(:class:`PartsIncompleteError`) and tries again when a part changes. Sizes are checked before
any hashing, so waiting for the last part of many costs a ``stat`` per part, not a read.
Bodies arrive here already sealed by the core, so no part reveals anything.
"""

from __future__ import annotations

import contextlib
import hashlib
import stat
from collections.abc import Iterator, Sequence
from concurrent.futures import Executor, Future
from pathlib import Path
from typing import Any, BinaryIO

from syft_flwr.errors import WireFormatError
from syft_flwr.transport import (
    Body,
    FrameSource,
    IncompleteBodyError,
    ReceivedBody,
    ReceivedData,
    body_size,
    stream_body,
)
from syft_flwr_syftbox.received import RELEASABLE_FROM, settle
from syft_flwr_syftbox.rpcfile import IncompleteFileError, Part
from syft_flwr_syftbox.safe_fs import SafeRoot, unsafe

__all__ = [
    "PART_SUFFIX",
    "PartChangedError",
    "PartsBody",
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
    hasher: Executor | None = None,
) -> tuple[Part, ...]:
    """Write ``body`` (a buffer, its frames or a one-pass source) as the parts of ``manifest``,
    in order; what its header must list.

    Each part is made of slices of the body's frames (never a copy; a part boundary may fall
    inside a frame, and a part may span several), hashed as it is written, written atomically,
    its folder created if missing. A one-pass body is drawn frame by frame, each written and
    hashed before the next overwrites its buffer. The caller removes the parts written if this
    fails part-way.

    :param replace: replace whatever is at a part's name (a reply's slot may hold foreign
        objects); otherwise an existing name fails.
    :param hasher: hash each piece on this executor's thread while it is written (both only
        read it), instead of before: on a model, hashing costs what encrypting does.
    :raises FileExistsError: a part's name is taken and ``replace`` is false.
    :raises UnsafeFileError: the folder is, or lies below, a symlink or non-folder.
    :raises OSError: the folder is not writable, the disk is full, ...
    """
    total = body_size(body)
    pieces = _Pieces(stream_body(body))
    one_pass = isinstance(body, FrameSource)
    parts = []
    for index, start in enumerate(range(0, total, part_size)):
        size = min(part_size, total - start)
        digest = hashlib.sha256()
        hashed = _hashed(pieces.take(size), digest, hasher)
        fs.write_atomic(
            part_path(manifest, index),
            hashed if one_pass else list(hashed),
            replace=replace,
            fsync=fsync,
            create=True,
        )
        parts.append(Part(size, digest.hexdigest()))
    return tuple(parts)


class _Pieces:
    """A body's frames cut at any sizes: each cut as slices of the frames, drawn in order."""

    def __init__(self, frames: Iterator[memoryview]) -> None:
        self._frames = frames
        self._rest = memoryview(b"")

    def take(self, size: int) -> Iterator[memoryview]:
        """The next ``size`` bytes as slices (each valid until the next frame is drawn)."""
        while size:
            if not self._rest:
                self._rest = next(self._frames)
            piece, self._rest = self._rest[:size], self._rest[size:]
            size -= len(piece)
            yield piece


def _hashed(
    pieces: Iterator[memoryview], digest: Any, hasher: Executor | None
) -> Iterator[memoryview]:
    """``pieces``, each hashed into ``digest`` (on ``hasher`` while the consumer writes it,
    done before the next is drawn and so before its buffer is reused)."""
    for piece in pieces:
        hashing = _submit(hasher, digest, piece)
        yield piece
        if hashing is not None:
            hashing.result()


def assemble(
    fs: SafeRoot, manifest: Path, parts: Sequence[Part], hasher: Executor | None = None
) -> ReceivedData:
    """The body of the manifest at ``manifest``, to be read from its parts and checked.

    Every part's size is checked (``lstat``) before any is read. From
    :data:`~syft_flwr_syftbox.received.RELEASABLE_FROM` bytes on, a sealed body is left in its
    parts (a :class:`PartsBody` the core reads as it decrypts), a plaintext one read into one
    releasable buffer (its view); smaller bodies are read into ``bytes``. Each part is read
    once, no further than its declared size, and its hash compared (on ``hasher``'s thread
    while the caller uses the piece, see :class:`PartsBody`).
    The caller has held the declared total against its limit already
    (:mod:`~syft_flwr_syftbox.native_file` does).

    :raises PartsIncompleteError: a part is missing, shorter than declared, or of another
        hash (still being written in place); try again when it changes.
    :raises WireFormatError: a part is larger than declared; it is not read.
    :raises UnsafeFileError: a part is a symlink, FIFO, folder, ... or below one.
    """
    paths = [part_path(manifest, index) for index in range(len(parts))]
    for path, part in zip(paths, parts, strict=True):
        _check_size(path, _size(fs, path), part)
    body = PartsBody(fs, paths, parts, hasher)
    if len(body) >= RELEASABLE_FROM:
        return settle(body)
    return bytes(body)


class PartChangedError(PartsIncompleteError, IncompleteBodyError):
    """A part ended early or failed its hash while a :class:`PartsBody` was read."""


class PartsBody(ReceivedBody):
    """A manifest's body read from its parts as consumed: each part opened in turn (a regular
    file only), read once, no further than its declared size, hashed as read and compared at
    its end (:class:`PartChangedError`, never bytes of another hash passed on unflagged: the
    envelope's tag is checked after the last part too).

    With a ``hasher``, a piece is hashed on its thread while the caller decrypts it (both only
    read it); the hash is done before the next read (which may reuse the caller's buffer), a
    part is compared then, and the last part before its last read returns.
    """

    def __init__(
        self,
        fs: SafeRoot,
        paths: Sequence[Path],
        parts: Sequence[Part],
        hasher: Executor | None = None,
    ) -> None:
        super().__init__(sum(part.size for part in parts))
        self._fs = fs
        self._todo = list(zip(paths, parts, strict=True))
        self._hasher = hasher
        self._open = contextlib.ExitStack()
        self._handle: BinaryIO | None = None
        self._left = 0
        self._digest: Any = None
        self._part: tuple[Path, Part] | None = None
        self._hashing: Future[None] | None = None
        self._finished: tuple[Path, Part, Any] | None = None

    def _read(self, target: memoryview) -> int:
        self._settle()
        if self._handle is None and not self._next_part():
            return 0
        assert self._handle is not None and self._part is not None
        count = self._handle.readinto(target[: self._left])  # type: ignore[attr-defined]
        path, part = self._part
        if not count:
            self._close()
            raise PartChangedError(f"{path.name} was truncated while being read")
        self._left -= count
        piece = target[:count]
        if self._hasher is None or (not self._left and not self._todo):
            self._digest.update(piece)  # the body's last bytes: checked before they are given
            if not self._left:
                self._close()
                _check_hash(path, part, self._digest)
            return int(count)
        self._hashing = _submit(self._hasher, self._digest, piece)
        if not self._left:
            self._close()
            self._finished = (path, part, self._digest)
        return int(count)

    def _settle(self) -> None:
        """Finish the hash under way, and compare the part it ended."""
        if self._hashing is not None:
            self._hashing.result()
            self._hashing = None
        if self._finished is not None:
            path, part, digest = self._finished
            self._finished = None
            _check_hash(path, part, digest)

    def _next_part(self) -> bool:
        if not self._todo:
            return False
        path, part = self._todo.pop(0)
        try:
            handle, info = self._open.enter_context(self._fs.open_file(path))
        except FileNotFoundError:
            raise PartChangedError(f"{path.name} went away while being read") from None
        try:
            _check_size(path, info.st_size, part)
        except WireFormatError as exc:
            self._close()
            raise PartChangedError(str(exc)) from exc
        self._handle, self._part, self._left = handle, (path, part), part.size
        self._digest = hashlib.sha256()
        return True

    def _close(self) -> None:
        self._handle = None
        self._open.close()

    def __del__(self) -> None:
        self._open.close()


def _submit(hasher: Executor | None, digest: Any, piece: memoryview) -> Future[None] | None:
    """Hash ``piece`` on ``hasher`` (what to wait for), or now without one or once it is shut
    down (a transport closed while a body it handed out is still read)."""
    if hasher is not None:
        try:
            return hasher.submit(digest.update, piece)
        except RuntimeError:
            pass
    digest.update(piece)
    return None


def _check_hash(path: Path, part: Part, digest: Any) -> None:
    if digest.hexdigest() != part.sha256:
        raise PartChangedError(f"{path.name} does not have its declared hash (yet)")


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
