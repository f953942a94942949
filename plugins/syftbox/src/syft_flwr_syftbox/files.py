"""Reading and writing RPC files in either format (see :mod:`syft_flwr_syftbox.rpcfile`)."""

from __future__ import annotations

import os
from pathlib import Path

from syft_flwr.errors import BodyTooLargeError, WireFormatError
from syft_flwr_syftbox import native_file, syftrpc_file
from syft_flwr_syftbox.layout import FileKind
from syft_flwr_syftbox.rpcfile import IncompleteFileError, RpcFile, WireFormat

__all__ = ["encode_rpc_file", "read_rpc_file"]


def encode_rpc_file(rpc: RpcFile) -> list[bytes | memoryview]:
    """The file's bytes as frames (the body is referenced, not copied, in the native format)."""
    if rpc.format is WireFormat.NATIVE:
        return native_file.encode(rpc)
    return syftrpc_file.encode(rpc)


def read_rpc_file(path: Path, kind: FileKind, max_body_size: int) -> RpcFile:
    """Read and decode the RPC file at ``path``, in either format.

    :raises FileNotFoundError: there is no such file (any more).
    :raises IncompleteFileError: the file is shorter than it declares (being written).
    :raises BodyTooLargeError: the body exceeds ``max_body_size``; nothing large is read.
    :raises WireFormatError: the file is neither format, or not a valid ``kind`` file.
    """
    with open(path, "rb") as handle:
        size = os.fstat(handle.fileno()).st_size
        first = handle.read(1)
        if not first:
            raise IncompleteFileError(f"{path.name} is empty")
        handle.seek(0)
        if first == native_file.MAGIC[:1]:
            return native_file.decode(handle, size, kind, max_body_size)
        if first in b"{ \t\r\n":
            limit = syftrpc_file.max_file_size(max_body_size)
            if size > limit:
                raise BodyTooLargeError(
                    f"{path.name} is {size} bytes, more than a syft-rpc file with a body of "
                    f"max_body_size={max_body_size} bytes can be"
                )
            rpc = syftrpc_file.decode(handle.read(), kind)
            if len(rpc.body) > max_body_size:
                raise BodyTooLargeError(
                    f"body of {len(rpc.body)} bytes exceeds max_body_size={max_body_size} bytes"
                )
            return rpc
        raise WireFormatError(f"{path.name} is neither a native nor a syft-rpc RPC file")
