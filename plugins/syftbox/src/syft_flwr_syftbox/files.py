"""Reading and writing RPC files in either format (see :mod:`syft_flwr_syftbox.rpcfile`).

Sizes are checked before anything is read: a file larger than any file with a body of
``max_body_size`` can be is refused unread, a native file's declared body length is held
against both the limit and the file's real size before the body is read, and a syft-rpc file
is read no further than its largest legal size. A hostile 200 MiB file therefore costs a
reader nothing but a ``stat``.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import BinaryIO

from syft_flwr.errors import BodyTooLargeError, WireFormatError
from syft_flwr.transport import body_size
from syft_flwr_syftbox import native_file, syftrpc_file
from syft_flwr_syftbox.layout import FileKind
from syft_flwr_syftbox.rpcfile import IncompleteFileError, RpcFile, WireFormat
from syft_flwr_syftbox.safe_fs import open_regular

__all__ = [
    "decode_rpc_file",
    "decode_rpc_head",
    "encode_rpc_file",
    "max_file_size",
    "read_rpc_file",
    "sniff_format",
]

_JSON_START = b"{ \t\r\n"


def encode_rpc_file(rpc: RpcFile) -> list[bytes | memoryview] | Iterator[bytes | memoryview]:
    """The file's bytes as frames (the body is referenced, not copied, in the native format);
    an iterator, to draw once, for a one-pass body (see :func:`native_file.encode`)."""
    if rpc.format is WireFormat.NATIVE:
        return native_file.encode(rpc)
    return syftrpc_file.encode(rpc)


def max_file_size(max_body_size: int) -> int:
    """The largest RPC file, of either format, that can carry a body of ``max_body_size``."""
    return max(native_file.max_file_size(max_body_size), syftrpc_file.max_file_size(max_body_size))


def read_rpc_file(path: Path, kind: FileKind, max_body_size: int) -> RpcFile:
    """Read and decode the RPC file at ``path``, in either format.

    The file is opened as a regular file only (:func:`~syft_flwr_syftbox.safe_fs.open_regular`).

    :raises FileNotFoundError: there is no such file (any more).
    :raises UnsafeFileError: ``path`` is a symlink, FIFO, device, socket or directory.
    :raises IncompleteFileError: the file is shorter than it declares (being written).
    :raises BodyTooLargeError: the body exceeds ``max_body_size``; nothing large is read.
    :raises WireFormatError: the file is neither format, or not a valid ``kind`` file.
    """
    with open_regular(path) as (handle, info):
        return decode_rpc_file(handle, info.st_size, path.name, kind, max_body_size)


def decode_rpc_file(
    handle: BinaryIO, size: int, name: str, kind: FileKind, max_body_size: int
) -> RpcFile:
    """Decode the RPC file of ``size`` bytes open as ``handle`` (at its start).

    :param name: the file's name, for messages.
    :raises IncompleteFileError: the file is shorter than it declares (being written).
    :raises BodyTooLargeError: the body exceeds ``max_body_size``; nothing large is read.
    :raises WireFormatError: the file is neither format, or not a valid ``kind`` file.
    """
    wire = _format(handle, size, name, max_body_size)
    if wire is WireFormat.NATIVE:
        return native_file.decode(handle, size, kind, max_body_size)
    return _decode_json(handle, size, name, kind, max_body_size)


def decode_rpc_head(
    handle: BinaryIO, size: int, name: str, kind: FileKind, max_body_size: int
) -> RpcFile:
    """Like :func:`decode_rpc_file`, but a native file's body is checked, not read.

    For telling whose file it is (id, sender, status) without reading a model-sized body;
    a syft-rpc file is JSON and has to be read whole.
    """
    wire = _format(handle, size, name, max_body_size)
    if wire is WireFormat.NATIVE:
        return native_file.decode_head(handle, size, kind, max_body_size)
    return _decode_json(handle, size, name, kind, max_body_size)


def sniff_format(handle: BinaryIO) -> WireFormat:
    """The format a file is written in, from its first byte (to answer a refusal in it).

    Reads that one byte (never the body) and rewinds.
    """
    first = handle.read(1)
    handle.seek(0)
    return WireFormat.SYFT_RPC if first and first in _JSON_START else WireFormat.NATIVE


def _format(handle: BinaryIO, size: int, name: str, max_body_size: int) -> WireFormat:
    """The file's format; refuses a file too large for it (for either before reading a byte).

    :raises BodyTooLargeError: ``size`` exceeds the largest file of the format.
    """
    _check_size(size, max_file_size(max_body_size), "an RPC file", name, max_body_size)
    first = handle.read(1)
    handle.seek(0)
    if not first:
        raise IncompleteFileError(f"{name} is empty")
    if first == native_file.MAGIC[:1]:
        limit = native_file.max_file_size(max_body_size)
        _check_size(size, limit, "a native file", name, max_body_size)
        return WireFormat.NATIVE
    if first in _JSON_START:
        return WireFormat.SYFT_RPC
    raise WireFormatError(f"{name} is neither a native nor a syft-rpc RPC file")


def _check_size(size: int, limit: int, what: str, name: str, max_body_size: int) -> None:
    if size > limit:
        raise BodyTooLargeError(
            f"{name} is {size} bytes, more than {what} with a body of "
            f"max_body_size={max_body_size} bytes can be"
        )


def _decode_json(
    handle: BinaryIO, size: int, name: str, kind: FileKind, max_body_size: int
) -> RpcFile:
    limit = syftrpc_file.max_file_size(max_body_size)
    _check_size(size, limit, "a syft-rpc file", name, max_body_size)
    data = handle.read(limit + 1)  # a file still growing is read no further than the limit
    _check_size(len(data), limit, "a syft-rpc file", name, max_body_size)
    rpc = syftrpc_file.decode(data, kind)
    length = body_size(rpc.as_body())  # decoded from base64: bytes
    if length > max_body_size:
        raise BodyTooLargeError(
            f"body of {length} bytes exceeds max_body_size={max_body_size} bytes"
        )
    return rpc
