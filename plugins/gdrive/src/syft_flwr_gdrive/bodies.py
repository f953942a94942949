"""File bodies: our wire envelope, or syft-flwr 0.5.x's raw Flower protobuf bytes.

The core hands transports envelopes (:mod:`syft_flwr.wire`). With ``wire = "syft-flwr-p2p"``
the transport writes each request as the Flower protobuf bytes syft-flwr's Drive mode writes and
reads, so its clients can join a run coordinated by our server. Reading needs no option: a body
that starts with the envelope magic is an envelope, anything else is tried as Flower protobuf
and turned into an envelope, and a reply to a protobuf request is written as protobuf. syft-flwr
clients answer a request they could not process with a JSON ``{"error": ...}`` body, which
becomes a rejected reply.

Protobuf bodies go through Flower's own (slow, copy-heavy) serializer: compatibility costs speed.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass

from flwr.common.serde import message_from_proto, message_to_proto
from flwr.proto.message_pb2 import Message as ProtoMessage
from google.protobuf.message import DecodeError  # type: ignore[import-untyped]

from syft_flwr.errors import WireFormatError
from syft_flwr.wire import MAGIC, decode_message, encode_message

__all__ = ["Incoming", "from_drive", "to_protobuf"]

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


def _syft_flwr_error(raw: bytes) -> str | None:
    if not raw.startswith(b"{"):
        return None
    try:
        value = json.loads(raw)
    except ValueError:
        return None
    error = value.get("error") if isinstance(value, dict) else None
    return error if isinstance(error, str) else None
