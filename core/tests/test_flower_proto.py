"""The one Flower bridge: core envelope <-> Flower protobuf, without losing anything."""

from __future__ import annotations

import pytest
from flwr.common.serde import message_from_proto, message_to_proto
from flwr.proto.message_pb2 import Message as ProtoMessage
from hypothesis import given, settings

from syft_flwr.errors import WireFormatError
from syft_flwr.testing.strategies import canonical_message, messages
from syft_flwr.wire import decode_message, encode_message, encode_message_frames
from syft_flwr.wire.flower_proto import (
    envelope_to_protobuf,
    is_envelope,
    message_from_protobuf,
    protobuf_to_envelope,
)


@settings(max_examples=60, deadline=None)
@given(messages())
def test_protobuf_bytes_and_round_trip_are_flowers_own(message) -> None:
    """The wire bytes are exactly what syft-flwr 0.5.x writes (Flower's serde), and reading
    them back gives what Flower's own deserialiser gives (which normalises a few values:
    an int ttl becomes a float, an empty error reason None, ``delivered_at`` is reset)."""
    protobuf = envelope_to_protobuf(encode_message(message))
    assert protobuf == message_to_proto(message).SerializeToString()
    assert envelope_to_protobuf(encode_message_frames(message)) == protobuf
    assert not is_envelope(protobuf)
    back = protobuf_to_envelope(protobuf)
    assert is_envelope(back)
    flowers = message_from_proto(ProtoMessage.FromString(protobuf))
    assert canonical_message(decode_message(back)) == canonical_message(flowers)


@pytest.mark.parametrize(
    "garbage",
    [b"", b"\x00", b"\xff" * 10, b"not a message at all", b'{"ciphertext": "..."}', b"SFWE\x01"],
)
def test_anything_but_a_flower_message_is_a_wire_format_error(garbage: bytes) -> None:
    with pytest.raises(WireFormatError):
        protobuf_to_envelope(garbage)
    with pytest.raises(WireFormatError):
        envelope_to_protobuf(garbage)


def test_a_message_without_a_type_is_not_a_flower_message() -> None:
    proto = ProtoMessage()
    proto.metadata.run_id = 1
    proto.content.SetInParent()
    with pytest.raises(WireFormatError, match="message type"):
        message_from_protobuf(proto.SerializeToString())
