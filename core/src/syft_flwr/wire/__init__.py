"""The wire envelope: how a Flower ``Message`` travels as bytes between datasites.

Versioned and binary-safe: a small fixed prefix, a msgpack header, then the raw array
buffers, so a body needs no base64 and no protobuf round trip. See :mod:`syft_flwr.wire.codec`
for the layout and why it looks like this. The one bridge to Flower's own protobuf bytes (what
syft-flwr 0.5.x puts on the wire) is :mod:`syft_flwr.wire.flower_proto`.
"""

from __future__ import annotations

from syft_flwr.wire.codec import (
    MAGIC,
    WIRE_VERSION,
    decode_message,
    encode_message,
    encode_message_frames,
    encoded_size,
    message_layout,
)

__all__ = [
    "MAGIC",
    "WIRE_VERSION",
    "decode_message",
    "encode_message",
    "encode_message_frames",
    "encoded_size",
    "message_layout",
]
