"""File bodies: our wire envelope, or syft-flwr 0.5.x's raw Flower protobuf bytes.

The core hands transports envelopes (:mod:`syft_flwr.wire`). With ``wire = "syft-flwr-p2p"``
the transport writes each request as the Flower protobuf bytes syft-flwr's Drive mode writes and
reads, so its clients can join a run coordinated by our server. Reading needs no option: a body
that starts with the envelope magic is an envelope, anything else is tried as Flower protobuf
and turned into an envelope, and a reply to a protobuf request is written as protobuf. syft-flwr
clients answer a request they could not process with a JSON ``{"error": ...}`` body, which
becomes a rejected reply.

The conversion itself is the core's one Flower bridge (:mod:`syft_flwr.wire.flower_proto`), so
this plugin imports no Flower; protobuf bodies go through Flower's own (slow, copy-heavy)
serializer there: compatibility costs speed.

Bodies are opaque to a transport, with one exception: a reply that *claims* one of syft-flwr's
framings (the envelope's or the sealed envelope's magic) but is not a well-formed one is a
foreign object, not an answer (:func:`defect`), so it cannot settle a future as a failure.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass

from syft_flwr.crypto.envelope import is_sealed, parse_envelope
from syft_flwr.crypto.errors import MalformedEnvelopeError
from syft_flwr.errors import WireFormatError
from syft_flwr.transport import Body, join_body
from syft_flwr.wire import MAGIC, decode_message
from syft_flwr.wire.flower_proto import envelope_to_protobuf, is_envelope, protobuf_to_envelope

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


def to_protobuf(body: Body) -> bytes:
    """The Flower protobuf bytes of an envelope; other bodies (sealed) pass through unchanged.

    :raises WireFormatError: ``body`` claims to be an envelope but is not a valid one.
    """
    data = join_body(body)  # Flower's serializer needs the message in one piece
    return envelope_to_protobuf(data) if is_envelope(data) else data


def from_drive(raw: bytes) -> Incoming:
    """Interpret a file body (see the module docstring)."""
    if raw.startswith(MAGIC):
        return Incoming(raw)
    error = _syft_flwr_error(raw)
    if error is not None:
        return Incoming(raw, error=error)
    try:
        return Incoming(protobuf_to_envelope(raw), protobuf=True)
    except WireFormatError as exc:
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
