"""File bodies: our wire envelope, or syft-flwr 0.5.x's raw Flower protobuf bytes.

The core hands transports envelopes (:mod:`syft_flwr.wire`). With ``wire = "syft-flwr-p2p"``
the transport writes each request as the Flower protobuf bytes syft-flwr's Drive mode writes and
reads, so its clients can join a run coordinated by our server. Reading needs no option: a body
that starts with the envelope magic is an envelope, anything else is tried as Flower protobuf
and turned into an envelope, and a reply to a protobuf request is written as protobuf. syft-flwr
clients answer a request they could not process with a JSON ``{"error": ...}`` body, which
becomes a rejected reply.

Protobuf bodies go through Flower's own (slow, copy-heavy) serializer: compatibility costs speed.

Bodies are opaque to a transport, with one exception: a reply that *claims* one of syft-flwr's
framings (the envelope's or the sealed envelope's magic) but is not a well-formed one is a
foreign object, not an answer (:func:`defect`), so it cannot settle a future as a failure.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass

from flwr.common.serde import message_from_proto, message_to_proto
from flwr.proto.message_pb2 import Message as ProtoMessage
from google.protobuf.message import DecodeError  # type: ignore[import-untyped]

from syft_flwr.crypto.envelope import is_sealed, parse_envelope
from syft_flwr.crypto.errors import MalformedEnvelopeError
from syft_flwr.errors import WireFormatError
from syft_flwr.wire import MAGIC, decode_message, encode_message

__all__ = ["Incoming", "defect", "from_drive", "to_protobuf"]

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class Incoming:
    """A body read from Drive, as the core wants it.

    :param body: an envelope, or the raw bytes if they were neither format.
    :param protobuf: the file held Flower protobuf (answer in kind).
    :param error: the JSON error a syft-flwr client wrote instead of a reply, if any.
    """

    body: bytes
    protobuf: bool = False
    error: str | None = None


def to_protobuf(envelope: bytes) -> bytes:
    """The Flower protobuf bytes of an envelope; other bytes pass through unchanged."""
    try:
        message = decode_message(envelope)
    except WireFormatError:
        return envelope
    data: bytes = message_to_proto(message).SerializeToString()
    return data


def from_drive(raw: bytes) -> Incoming:
    """Interpret a file body (see the module docstring)."""
    if raw.startswith(MAGIC):
        return Incoming(raw)
    error = _syft_flwr_error(raw)
    if error is not None:
        return Incoming(raw, error=error)
    try:
        proto = ProtoMessage.FromString(raw)
        if not proto.metadata.message_type:
            return Incoming(raw)
        return Incoming(encode_message(message_from_proto(proto)), protobuf=True)
    except (DecodeError, ValueError, TypeError, WireFormatError) as exc:
        logger.debug(
            "body of %d bytes is neither an envelope nor Flower protobuf: %s", len(raw), exc
        )
        return Incoming(raw)


def defect(raw: bytes) -> str | None:
    """Why ``raw`` is not the syft-flwr envelope or sealed envelope its magic says, else ``None``.

    A plaintext envelope is decoded in full (a truncated or corrupt one must not pass for a
    reply); a sealed one is checked for structure only, since only the core holds the keys.
    Bodies without either magic are opaque and have no defect.
    """
    try:
        if raw.startswith(MAGIC):
            decode_message(raw)
        elif is_sealed(raw):
            parse_envelope(raw)
    except (WireFormatError, MalformedEnvelopeError) as exc:
        return str(exc)
    return None


def _syft_flwr_error(raw: bytes) -> str | None:
    if not raw.startswith(b"{"):
        return None
    try:
        value = json.loads(raw)
    except ValueError:
        return None
    error = value.get("error") if isinstance(value, dict) else None
    return error if isinstance(error, str) else None
