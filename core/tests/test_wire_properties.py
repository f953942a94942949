"""Property and fuzz tests of the wire codec.

Round trips over every message the strategies generate, and the strict-decoding promise:
whatever bytes arrive, ``decode_message`` returns a ``Message`` or raises ``WireFormatError``,
never anything else; and whatever it accepts, it can encode again.
"""

from __future__ import annotations

import struct
from typing import Any

import msgpack  # type: ignore[import-untyped]
import numpy as np
from flwr.app import (
    Array,
    ArrayRecord,
    ConfigRecord,
    Error,
    Message,
    Metadata,
    MetricRecord,
    RecordDict,
)
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from syft_flwr.errors import WireFormatError
from syft_flwr.stop_signal import stop_reason
from syft_flwr.testing.strategies import canonical_message, messages, stop_signals
from syft_flwr.wire import (
    MAGIC,
    WIRE_VERSION,
    decode_message,
    encode_message,
    encode_message_frames,
)

PREFIX = struct.Struct(">4sBI")
FAST = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def decodes_or_rejects(data: bytes) -> None:
    """The strict-decoding contract, plus: an accepted body re-encodes to the same message."""
    try:
        decoded = decode_message(data)
    except WireFormatError:
        return
    assert isinstance(decoded, Message)
    again = decode_message(encode_message(decoded))
    assert canonical_message(again) == canonical_message(decoded)


def small_message() -> Message:
    metadata = Metadata(
        run_id=3,
        message_id="m",
        src_node_id=1,
        dst_node_id=9,
        reply_to_message_id="r",
        group_id="1",
        created_at=1.5,
        ttl=10.0,
        message_type="train",
        src_task_id=4,
    )
    content = RecordDict(
        {
            "a": ArrayRecord({"w": Array(np.arange(3, dtype=np.int8)), "e": Array(np.zeros(0))}),
            "c": ConfigRecord({"b": True, "i": -1, "s": "x", "y": b"\x01", "l": [1.5, 2.0]}),
            "m": MetricRecord({"f": 0.5, "l": [1, 2]}),
        }
    )
    message: Message = Message(content, metadata=metadata)  # type: ignore[call-overload]
    return message


@FAST
@given(messages())
def test_round_trip(message: Message) -> None:
    frames = encode_message_frames(message)
    data = encode_message(message)
    assert b"".join(frames) == data
    assert canonical_message(decode_message(data)) == canonical_message(message)


@FAST
@given(stop_signals())
def test_stop_signals_round_trip(message: Message) -> None:
    decoded = decode_message(encode_message(message))
    assert stop_reason(decoded) == stop_reason(message) is not None
    assert canonical_message(decoded) == canonical_message(message)


@FAST
@given(st.binary(max_size=512))
def test_random_bytes(data: bytes) -> None:
    decodes_or_rejects(data)


@FAST
@given(st.integers(0, 255), st.binary(max_size=512))
def test_random_bytes_after_a_valid_prefix(version: int, rest: bytes) -> None:
    decodes_or_rejects(PREFIX.pack(MAGIC, version, len(rest)) + rest)
    decodes_or_rejects(PREFIX.pack(MAGIC, WIRE_VERSION, len(rest)) + rest)


msgpack_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(-(2**63), 2**64 - 1)
    | st.floats()
    | st.text(max_size=8)
    | st.binary(max_size=8),
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=6), inner, max_size=4)
    ),
    max_leaves=12,
)


@FAST
@given(
    st.fixed_dictionaries(
        {"metadata": msgpack_values, "content": msgpack_values, "error": msgpack_values}
    ),
    st.binary(max_size=16),
)
def test_random_headers(header: dict[str, Any], payload: bytes) -> None:
    packed = msgpack.packb(header, use_bin_type=True)
    decodes_or_rejects(PREFIX.pack(MAGIC, WIRE_VERSION, len(packed)) + packed + payload)


@FAST
@given(messages(), st.data())
def test_single_byte_mutations_and_truncations(message: Message, data: st.DataObject) -> None:
    encoded = encode_message(message)
    position = data.draw(st.integers(0, len(encoded) - 1))
    value = data.draw(st.integers(0, 255))
    decodes_or_rejects(encoded[:position] + bytes([value]) + encoded[position + 1 :])
    decodes_or_rejects(encoded[:position])


def test_every_truncation_and_single_byte_mutation_of_one_message() -> None:
    for message in (
        small_message(),
        Message(Error(code=2, reason="boom"), reply_to=small_message()),
    ):
        encoded = encode_message(message)
        for size in range(len(encoded)):
            decodes_or_rejects(encoded[:size])
        for position in range(len(encoded)):
            for flip in (0x01, 0x10, 0x80, 0xFF):
                mutated = bytearray(encoded)
                mutated[position] ^= flip
                decodes_or_rejects(bytes(mutated))
