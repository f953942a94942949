"""Bodies in the syft-rpc wire: the core's envelope on our side, Flower protobuf on the wire.

syft-flwr 0.5.x puts a Flower ``Message`` serialised with Flower's own protobuf serde
(``message_to_proto(message).SerializeToString()``) into the syft-rpc body, and expects the
same back. The core hands transports its own binary envelope (:mod:`syft_flwr.wire`), so with
``wire = "syft-rpc"`` the transport converts at the edge: envelope -> ``Message`` -> protobuf
when writing, and back when reading. Incoming bodies that already are envelopes (a syft-rpc
file written by another syft-flwr-core peer) pass through unchanged: both are recognised.

Protobuf parses almost any byte string as *some* message, so a body only counts as a Flower
message when it has metadata and exactly one of content and error; everything else, including
a syft-crypto ``EncryptedPayload`` (JSON), is a :class:`~syft_flwr.errors.WireFormatError`.
"""

from __future__ import annotations

from flwr.common.serde import message_from_proto, message_to_proto
from flwr.proto.message_pb2 import Message as ProtoMessage
from google.protobuf.message import DecodeError  # type: ignore[import-untyped]

from syft_flwr.crypto.compat import is_compat_payload
from syft_flwr.crypto.envelope import is_sealed
from syft_flwr.errors import WireFormatError
from syft_flwr.wire import MAGIC, decode_message, encode_message

__all__ = ["envelope_to_protobuf", "is_envelope", "to_envelope"]


def is_envelope(body: bytes) -> bool:
    """Whether ``body`` starts like a syft-flwr core envelope."""
    return body[: len(MAGIC)] == MAGIC


def envelope_to_protobuf(body: bytes) -> bytes:
    """Flower protobuf bytes of the message in a core envelope.

    :raises WireFormatError: ``body`` is not a valid envelope.
    """
    message = decode_message(body)
    try:
        return bytes(message_to_proto(message).SerializeToString())
    except (TypeError, ValueError) as exc:
        raise WireFormatError(f"message cannot be serialised to Flower protobuf: {exc}") from exc


def to_envelope(body: bytes) -> tuple[bytes, bool]:
    """A core envelope for ``body``, and whether it had to be converted from Flower protobuf.

    :raises WireFormatError: ``body`` is neither an envelope nor a Flower protobuf message.
    """
    if is_envelope(body) or is_sealed(body) or is_compat_payload(body):
        # Envelopes pass as they are; sealed bodies (ours, or syft-crypto's JSON payload) are
        # opened by the core's encryption layer, which also converts what they contain.
        return body, False
    try:
        proto = ProtoMessage.FromString(body)
    except DecodeError as exc:
        raise WireFormatError(f"body is not a Flower protobuf message: {exc}") from exc
    if not proto.HasField("metadata") or proto.HasField("content") == proto.HasField("error"):
        raise WireFormatError(
            "body is not a Flower protobuf message (needs metadata and one of content/error)"
        )
    try:
        message = message_from_proto(proto)
    except (TypeError, ValueError, KeyError) as exc:
        raise WireFormatError(f"Flower cannot rebuild the message: {exc}") from exc
    return encode_message(message), True
