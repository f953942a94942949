"""The one bridge between the core envelope and Flower's protobuf bytes (syft-flwr 0.5.x's wire).

syft-flwr 0.5.x puts a Flower ``Message`` serialised with Flower's own protobuf serde
(``message_to_proto(message).SerializeToString()``) into its bodies (syft-rpc files, Drive
files, and base64-encoded inside syft-crypto payloads) and expects the same back. The core hands
transports its own envelope (:mod:`syft_flwr.wire.codec`), so a transport or the compatibility
crypto scheme that talks to such a peer converts at its edge with these functions, and no plugin
imports Flower: transports keep moving opaque bytes.

Protobuf parses almost any byte string as *some* message, so bytes only count as a Flower
message when they have metadata with a message type and exactly one of content and error;
everything else is a :class:`~syft_flwr.errors.WireFormatError`. Compatibility costs speed:
Flower's serializer copies the payload several times, and an envelope given as frames is joined.
"""

from __future__ import annotations

from collections.abc import Sequence

from flwr.app import Message
from flwr.common.serde import message_from_proto, message_to_proto
from flwr.proto.message_pb2 import Message as ProtoMessage
from google.protobuf.message import DecodeError  # type: ignore[import-untyped]

from syft_flwr.errors import WireFormatError
from syft_flwr.wire.codec import MAGIC, decode_message, encode_message

__all__ = [
    "envelope_to_protobuf",
    "is_envelope",
    "message_from_protobuf",
    "message_to_protobuf",
    "protobuf_to_envelope",
]

_Buffer = bytes | bytearray | memoryview


def is_envelope(body: _Buffer) -> bool:
    """Whether ``body`` starts like a core envelope (not a proof that it is a valid one)."""
    return bytes(body[: len(MAGIC)]) == MAGIC


def message_to_protobuf(message: Message) -> bytes:
    """Flower's protobuf bytes of ``message``, exactly as syft-flwr 0.5.x writes them.

    :raises WireFormatError: Flower cannot serialise it.
    """
    try:
        return bytes(message_to_proto(message).SerializeToString())
    except (TypeError, ValueError) as exc:
        raise WireFormatError(f"message cannot be serialised to Flower protobuf: {exc}") from exc


def message_from_protobuf(data: _Buffer) -> Message:
    """The Flower ``Message`` in protobuf bytes a 0.5.x peer wrote.

    :raises WireFormatError: not a Flower message (see the module docstring).
    """
    try:
        proto = ProtoMessage.FromString(bytes(data))
    except (DecodeError, ValueError, TypeError) as exc:
        raise WireFormatError(f"body is not a Flower protobuf message: {exc}") from exc
    if (
        not proto.HasField("metadata")
        or not proto.metadata.message_type
        or proto.HasField("content") == proto.HasField("error")
    ):
        raise WireFormatError(
            "body is not a Flower protobuf message (needs metadata with a message type and "
            "exactly one of content/error)"
        )
    try:
        return message_from_proto(proto)
    except (TypeError, ValueError, KeyError) as exc:
        raise WireFormatError(f"Flower cannot rebuild the message: {exc}") from exc


def envelope_to_protobuf(envelope: _Buffer | Sequence[_Buffer]) -> bytes:
    """Flower protobuf bytes of the message in a core envelope (a buffer or its frames).

    :raises WireFormatError: ``envelope`` is not a valid envelope, or not expressible in
        protobuf.
    """
    data = envelope if isinstance(envelope, _Buffer) else b"".join(envelope)
    return message_to_protobuf(decode_message(data))


def protobuf_to_envelope(data: _Buffer) -> bytes:
    """The core envelope of Flower protobuf bytes a 0.5.x peer wrote.

    :raises WireFormatError: not a Flower message.
    """
    return encode_message(message_from_protobuf(data))
