"""The native RPC file format: a fixed prefix, a msgpack header, then the body as raw bytes.

Layout (integers big-endian)::

    b"SFRF" | version: u8 | kind: u8 | header length: u32 | body length: u64 | header | body

Why: the body of a syft-flwr request is already a binary envelope (the core's wire codec), so
it is written as it is, with no base64 and no JSON around it, from the caller's own buffer.
The prefix declares both lengths, so a reader knows a file is incomplete (a non-atomic writer,
or a sync engine that exposes partial files) instead of mistaking it for a short message, and
can refuse a body over its size limit before reading it. The header carries what the path
cannot: the claimed sender and address (checked against the path), creation and expiry times,
and a response's status.

A *manifest* (a body larger than the transport's ``part_size``, see
:mod:`syft_flwr_syftbox.parts`) is the same file with an empty body and one more header key,
``parts``: ``[[size, sha256-hex], ...]``, one entry per part file. Its declared total is held
against ``max_body_size`` here, before any part is opened. The version stays 1: writer and
reader are the same code, and a reader without ``parts`` refuses a manifest as malformed.
"""

from __future__ import annotations

import itertools
import re
import struct
from collections.abc import Iterator
from typing import Any, BinaryIO, Final

import msgpack  # type: ignore[import-untyped]

from syft_flwr.errors import BodyTooLargeError, WireFormatError
from syft_flwr.transport import (
    FrameSource,
    IncompleteBodyError,
    ReceivedData,
    ReplyStatus,
    body_frames,
    stream_body,
)
from syft_flwr_syftbox.layout import FileKind
from syft_flwr_syftbox.received import RELEASABLE_FROM, FileBody, settle
from syft_flwr_syftbox.rpcfile import IncompleteFileError, Part, RpcFile, WireFormat

__all__ = ["MAGIC", "MAX_PARTS", "VERSION", "decode", "decode_head", "encode", "max_file_size"]

MAGIC: Final = b"SFRF"
VERSION: Final = 1
_PREFIX: Final = struct.Struct(">4sBBIQ")
_KIND_CODES: Final = {FileKind.REQUEST: 1, FileKind.RESPONSE: 2}
MAX_PARTS: Final = 16384
"""Most parts one manifest may list: 1 GiB in 64 KiB parts, a header of about 1.2 MiB."""
_PART_ENTRY: Final = len(msgpack.packb([2**64 - 1, "0" * 64]))
"""The largest msgpack ``[size, sha256-hex]`` entry of a parts list."""
_MAX_HEADER: Final = 64 * 1024 + MAX_PARTS * _PART_ENTRY
_SHA256_HEX: Final = re.compile(r"[0-9a-f]{64}")
_REQUEST_KEYS: Final = frozenset(
    {"id", "sender", "recipient", "app", "endpoint", "created", "expires"}
)
_RESPONSE_KEYS: Final = _REQUEST_KEYS | {"status", "detail"}
_STATUSES: Final = {status.value: status for status in ReplyStatus}


def encode(rpc: RpcFile) -> list[bytes | memoryview] | Iterator[bytes | memoryview]:
    """The file as ``[prefix + header, *body frames]``; the frames are the caller's, not copies.

    A one-pass body (:class:`~syft_flwr.transport.FrameSource`) makes it an iterator that
    produces the body's frames as they are drawn, once (:func:`~syft_flwr_syftbox.atomic.
    write_atomic_at` writes each before drawing the next).
    """
    header: dict[str, Any] = {
        "id": rpc.id,
        "sender": rpc.sender,
        "recipient": rpc.recipient,
        "app": rpc.app,
        "endpoint": rpc.endpoint,
        "created": float(rpc.created),
        "expires": float(rpc.expires),
    }
    if rpc.kind is FileKind.RESPONSE:
        header["status"] = rpc.status.value
        header["detail"] = rpc.detail
    if rpc.parts:
        header["parts"] = [[part.size, part.sha256] for part in rpc.parts]
    packed = msgpack.packb(header, use_bin_type=True)
    written = rpc.as_body()
    if isinstance(written, FrameSource):
        prefix = _PREFIX.pack(MAGIC, VERSION, _KIND_CODES[rpc.kind], len(packed), written.size)
        return itertools.chain([prefix + packed], stream_body(written))
    body = list(body_frames(written))
    size = sum(len(view) for view in body)
    prefix = _PREFIX.pack(MAGIC, VERSION, _KIND_CODES[rpc.kind], len(packed), size)
    return [prefix + packed, *body]


def max_file_size(max_body_size: int) -> int:
    """The largest native file that can carry a body of ``max_body_size`` bytes."""
    return _PREFIX.size + _MAX_HEADER + max_body_size


def decode(handle: BinaryIO, size: int, kind: FileKind, max_body_size: int) -> RpcFile:
    """Decode a native file of ``size`` bytes from ``handle`` (positioned at its start).

    The body is read only once its declared length has been checked against
    ``max_body_size`` and against ``size`` (a file's real size, from ``fstat``).

    A body from :data:`~syft_flwr_syftbox.received.RELEASABLE_FROM` bytes on is left in the
    file when sealed (a :class:`~syft_flwr_syftbox.received.FileBody`, read as the core opens
    it), else read into one releasable buffer (:mod:`~syft_flwr_syftbox.received`).

    :raises IncompleteFileError: fewer bytes than the prefix declares.
    :raises BodyTooLargeError: the declared body exceeds ``max_body_size``.
    :raises WireFormatError: anything else malformed, or a file of the other kind.
    """
    header, body_length = _head(handle, size, kind, max_body_size)
    if body_length < RELEASABLE_FROM:
        body = handle.read(body_length)
        if len(body) != body_length:
            raise IncompleteFileError("native file was truncated while being read")
        return _rpc(header, kind, body)
    # a model: left in the file for the core to stream when sealed, else read into one
    # releasable buffer; never copied
    left = FileBody(handle, handle.tell(), body_length)
    try:
        return _rpc(header, kind, settle(left))
    except IncompleteBodyError as exc:
        raise IncompleteFileError(f"native file was truncated while being read: {exc}") from exc


def decode_head(handle: BinaryIO, size: int, kind: FileKind, max_body_size: int) -> RpcFile:
    """Like :func:`decode`, with every check, but without reading the body (left empty)."""
    header, _ = _head(handle, size, kind, max_body_size)
    return _rpc(header, kind, b"")


def _head(
    handle: BinaryIO, size: int, kind: FileKind, max_body_size: int
) -> tuple[dict[str, Any], int]:
    """The header and the declared body length (a manifest's parts too), checked against the
    limit and ``size``."""
    if size < _PREFIX.size:
        raise IncompleteFileError(f"native file of {size} bytes is shorter than its prefix")
    magic, version, kind_code, header_length, body_length = _PREFIX.unpack(
        handle.read(_PREFIX.size)
    )
    if magic != MAGIC:
        raise WireFormatError(f"not a native RPC file: magic {magic!r}")
    if version != VERSION:
        raise WireFormatError(f"native RPC file version {version}; this build reads {VERSION}")
    if kind_code != _KIND_CODES[kind]:
        raise WireFormatError(f"native file is not a {kind.name.lower()} (kind {kind_code})")
    if header_length > _MAX_HEADER:
        raise WireFormatError(f"header of {header_length} bytes exceeds {_MAX_HEADER}")
    if body_length > max_body_size:
        raise BodyTooLargeError(
            f"body of {body_length} bytes exceeds max_body_size={max_body_size} bytes"
        )
    expected = _PREFIX.size + header_length + body_length
    if size < expected:
        raise IncompleteFileError(f"native file has {size} of its {expected} bytes")
    if size > expected:
        raise WireFormatError(f"native file has {size - expected} bytes after its body")
    header = _unpack(handle.read(header_length), kind)
    _check_manifest(header.get("parts", ()), body_length, max_body_size)
    return header, body_length


def _check_manifest(parts: tuple[Part, ...], body_length: int, max_body_size: int) -> None:
    """A manifest has no body of its own, and its parts together are within the limit."""
    if not parts:
        return
    if body_length:
        raise WireFormatError(f"a manifest of {len(parts)} parts has a {body_length}-byte body")
    total = sum(part.size for part in parts)
    if total > max_body_size:
        raise BodyTooLargeError(
            f"body of {total} bytes in {len(parts)} parts exceeds "
            f"max_body_size={max_body_size} bytes"
        )


def _rpc(header: dict[str, Any], kind: FileKind, body: ReceivedData) -> RpcFile:
    status = ReplyStatus.OK
    if kind is FileKind.RESPONSE:
        status = _STATUSES[header["status"]]
    return RpcFile(
        kind=kind,
        format=WireFormat.NATIVE,
        id=header["id"],
        sender=header["sender"],
        recipient=header["recipient"],
        app=header["app"],
        endpoint=header["endpoint"],
        created=float(header["created"]),
        expires=float(header["expires"]),
        body=body,
        status=status,
        detail=header.get("detail", ""),
        parts=header.get("parts", ()),
    )


def _unpack(data: bytes, kind: FileKind) -> dict[str, Any]:
    try:
        header = msgpack.unpackb(data, raw=False, strict_map_key=True)
    except (TypeError, ValueError) as exc:  # msgpack's errors are ValueError subclasses
        raise WireFormatError(f"header is not valid msgpack: {exc}") from exc
    keys = _RESPONSE_KEYS if kind is FileKind.RESPONSE else _REQUEST_KEYS
    if not isinstance(header, dict) or header.keys() - {"parts"} != keys:
        raise WireFormatError(
            f"header must be a map with exactly the keys {sorted(keys)}, and optionally 'parts'"
        )
    for key in ("id", "sender", "recipient", "app", "endpoint"):
        if not isinstance(header[key], str):
            raise WireFormatError(f"header field {key!r} must be a string")
    for key in ("created", "expires"):
        value = header[key]
        if isinstance(value, bool) or not isinstance(value, int | float) or value != value:
            raise WireFormatError(f"header field {key!r} must be a number")
    if kind is FileKind.RESPONSE and (
        header["status"] not in _STATUSES or not isinstance(header["detail"], str)
    ):
        raise WireFormatError("response status must be ok/expired/rejected with a str detail")
    if "parts" in header:
        header["parts"] = _parts(header["parts"])
    return header


def _parts(value: object) -> tuple[Part, ...]:
    """A manifest's ``parts``: 1 to :data:`MAX_PARTS` entries ``[size > 0, sha256-hex]``."""
    if not isinstance(value, list) or not 0 < len(value) <= MAX_PARTS:
        raise WireFormatError(f"header field 'parts' must list 1 to {MAX_PARTS} parts")
    parts = []
    for entry in value:
        if not isinstance(entry, list) or len(entry) != 2:
            raise WireFormatError("each part must be [size, sha256-hex]")
        size, digest = entry
        if isinstance(size, bool) or not isinstance(size, int) or size < 1:
            raise WireFormatError(f"part size {size!r} must be a positive integer")
        if not isinstance(digest, str) or not _SHA256_HEX.fullmatch(digest):
            raise WireFormatError(f"part hash {digest!r} must be 64 lowercase hex digits")
        parts.append(Part(size, digest))
    return tuple(parts)
