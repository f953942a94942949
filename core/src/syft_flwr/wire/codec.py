"""The versioned wire codec: one Flower ``Message`` as one binary envelope.

Layout (integers big-endian)::

    b"SFWM" | version: u8 | header length: u32 | header (msgpack) | array payloads

Why this shape: transports move opaque bodies, and federated-learning bodies are almost all
array bytes. Keeping those bytes out of msgpack means an encoder can hand them to
``file.writelines``/``os.writev`` exactly where they already are (:func:`encode_message_frames`)
and a decoder copies each one exactly once, an order of magnitude faster than Flower's protobuf
path, which copies the payload several times. The fixed prefix makes a foreign body, or one
from a future version, fail at once with a clear error instead of deep inside msgpack; the
explicit header length means the header is parsed with limits bounded by its own size.

A decoder given the body as frames, the header first and then one ``bytes`` per array (what
:func:`~syft_flwr.crypto.envelope.open_frames` produces with :func:`message_layout`), uses
those ``bytes`` as the arrays' data as they are: Flower's ``Array`` requires ``bytes`` (its
``ArrayRecord`` rebuilds arrays through a constructor that refuses views), so that is how a
decoded model costs no copy at all.

Decoding is strict: anything but a well-formed envelope of this version raises
:class:`~syft_flwr.errors.WireFormatError` and never another exception type, because a body may
come from anyone who can write to a transport.
"""

from __future__ import annotations

import struct
from collections.abc import Callable, Sequence
from typing import Any, Final

import msgpack  # type: ignore[import-untyped]
from flwr.app import Message

from syft_flwr.errors import WireFormatError
from syft_flwr.transport import ReceivedBody, held_body
from syft_flwr.wire.header import array_sizes, header_to_message, message_to_header

__all__ = [
    "MAGIC",
    "WIRE_VERSION",
    "decode_message",
    "encode_message",
    "encode_message_frames",
    "encoded_size",
    "message_layout",
]

MAGIC: Final[bytes] = b"SFWM"
"""The first four bytes of every envelope."""

WIRE_VERSION: Final[int] = 1
"""The envelope version this build writes and the only one it reads."""

_PREFIX: Final = struct.Struct(">4sBI")
_MAX_HEADER: Final = 2**32 - 1


def encode_message_frames(message: Message) -> list[bytes | memoryview]:
    """Encode ``message`` as frames: the prefix and header, then each array's data buffer.

    The array buffers are the messages' own ``Array.data`` objects, referenced and not copied,
    so a transport can write a multi-gigabyte model with ``file.writelines(frames)`` or
    ``os.writev`` without one extra copy. ``b"".join(frames) == encode_message(message)``.

    :raises WireFormatError: a value cannot be represented (for example an integer beyond
        64 bits, or ``Array.data`` that is not ``bytes``).
    """
    header, payloads = message_to_header(message)
    try:
        packed = msgpack.packb(header, use_bin_type=True, datetime=False)
    except (TypeError, ValueError, OverflowError) as exc:
        raise WireFormatError(f"message cannot be encoded: {exc}") from exc
    if len(packed) > _MAX_HEADER:
        raise WireFormatError(f"header of {len(packed)} bytes exceeds the {_MAX_HEADER} limit")
    frames: list[bytes | memoryview] = [_PREFIX.pack(MAGIC, WIRE_VERSION, len(packed)) + packed]
    frames.extend(payloads)
    return frames


def encode_message(message: Message) -> bytes:
    """Encode ``message`` as one contiguous envelope (a single copy of the array payloads).

    :raises WireFormatError: as :func:`encode_message_frames`.
    """
    return b"".join(encode_message_frames(message))


def encoded_size(message: Message) -> int:
    """The length of ``encode_message(message)`` without building it, e.g. to check a limit."""
    return sum(len(frame) for frame in encode_message_frames(message))


def decode_message(
    data: bytes | bytearray | memoryview | ReceivedBody | Sequence[bytes],
) -> Message:
    """Decode one envelope into a real Flower ``Message``.

    ``data`` is one buffer (each array is copied out of it once), or frames: the prefix and
    header, then the arrays' own ``bytes`` (used as they are, no copy) or any other split
    (joined once first). A received body still in its medium is refused unread
    (:func:`~syft_flwr.transport.held_body`): it is sealed, for the channel to open.

    :raises WireFormatError: ``data`` is not exactly one well-formed envelope of this version:
        wrong magic or version, a truncated or oversized length, malformed msgpack, a header
        that does not describe a valid Flower message, or trailing bytes.
    """
    if isinstance(data, ReceivedBody):
        data = held_body(data)  # refuses it unread: sealed, for the channel to open
    if isinstance(data, bytes | bytearray | memoryview):
        frames: Sequence[bytes] = ()
        view = _byte_view(data)
    elif isinstance(data, list | tuple) and data and all(isinstance(f, bytes) for f in data):
        frames, view = tuple(data[1:]), _byte_view(data[0])
    else:
        raise WireFormatError(f"expected bytes or a list of bytes, got {type(data).__name__}")
    header_end, header = _header(view)
    if frames and header_end == len(view):
        sizes = _sizes_or_none(header)
        if sizes is not None and [len(frame) for frame in frames] == sizes:
            return header_to_message(header, frames)
    if frames:  # not split at the arrays: decode the joined body
        return decode_message(b"".join([view, *frames]))
    return header_to_message(header, view[header_end:])


def message_layout(read: Callable[[int], bytes]) -> list[int]:
    """The sizes of an envelope's array payloads, its prefix and header taken with ``read``
    (a :data:`~syft_flwr.crypto.envelope.PlaintextLayout`).

    :raises WireFormatError: the prefix or header is malformed.
    """
    prefix = read(_PREFIX.size)
    _, header_length = _check_prefix(prefix)
    header_bytes = read(header_length)
    if len(header_bytes) != header_length:
        raise WireFormatError("envelope ends inside its header")
    return array_sizes(_unpack_header(memoryview(header_bytes)))


def _sizes_or_none(header: object) -> list[int] | None:
    try:
        return array_sizes(header)
    except WireFormatError:
        return None  # header_to_message reports it precisely


def _check_prefix(view: bytes | memoryview) -> tuple[int, int]:
    """The prefix's size and declared header length, checked."""
    if len(view) < _PREFIX.size:
        raise WireFormatError(
            f"envelope of {len(view)} bytes is shorter than the {_PREFIX.size}-byte prefix"
        )
    magic, version, header_length = _PREFIX.unpack_from(view)
    if magic != MAGIC:
        raise WireFormatError(f"not a syft-flwr envelope: magic {magic!r}, expected {MAGIC!r}")
    if version != WIRE_VERSION:
        raise WireFormatError(
            f"unsupported wire version {version}; this build reads version {WIRE_VERSION}"
        )
    return _PREFIX.size, header_length


def _header(view: memoryview) -> tuple[int, object]:
    """Where the header ends, and the header."""
    start, header_length = _check_prefix(view)
    header_end = start + header_length
    if header_end > len(view):
        raise WireFormatError(
            f"header length {header_length} exceeds the {len(view) - _PREFIX.size} bytes "
            "after the prefix (truncated envelope?)"
        )
    return header_end, _unpack_header(view[start:header_end])


def _byte_view(data: object) -> memoryview:
    if not isinstance(data, bytes | bytearray | memoryview):
        raise WireFormatError(f"expected bytes, bytearray or memoryview, got {type(data).__name__}")
    try:
        return memoryview(data).cast("B")
    except (TypeError, ValueError) as exc:  # non-contiguous or released memoryview
        raise WireFormatError(f"envelope buffer is unusable: {exc}") from exc


def _unpack_header(buffer: memoryview) -> object:
    limit = len(buffer)
    try:
        return msgpack.unpackb(
            buffer,
            raw=False,
            strict_map_key=True,
            use_list=True,
            object_pairs_hook=_unique_keys,
            ext_hook=_reject_ext,
            max_str_len=limit,
            max_bin_len=limit,
            max_array_len=limit,
            max_map_len=limit,
            max_ext_len=0,
        )
    except WireFormatError:
        raise
    # msgpack reports malformed input as ValueError subclasses (ExtraData, FormatError,
    # StackError, UnicodeDecodeError, ...) and some type problems as TypeError.
    except (TypeError, ValueError) as exc:
        raise WireFormatError(f"header is not valid msgpack: {exc}") from exc


def _unique_keys(pairs: list[tuple[Any, Any]]) -> dict[Any, Any]:
    """Build a map, refusing duplicate keys that msgpack would silently collapse."""
    mapping = dict(pairs)
    if len(mapping) != len(pairs):
        raise WireFormatError("header has a map with a duplicate key")
    return mapping


def _reject_ext(code: int, data: bytes) -> object:
    raise WireFormatError(f"header uses msgpack extension type {code}, which the wire forbids")
