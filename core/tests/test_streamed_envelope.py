"""Sealing and opening models in chunks: no whole extra copy, and every tampering refused."""

from __future__ import annotations

import os
import tracemalloc
from collections.abc import Iterator
from typing import Any

import numpy as np
import pytest
from flwr.app import Array, ArrayRecord, Message, Metadata, RecordDict
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from syft_flwr.body_buffer import BodyBuffer
from syft_flwr.crypto import envelope
from syft_flwr.crypto.envelope import open_frames, parse_envelope, seal_frames
from syft_flwr.crypto.errors import CryptoError, DecryptionError
from syft_flwr.crypto.keys import IdentityKeys
from syft_flwr.message_factory import message_with_metadata
from syft_flwr.testing.envelopes import header_fields
from syft_flwr.wire import decode_message, encode_message_frames, message_layout

ALICE, BOB = IdentityKeys.generate("alice@example.org"), IdentityKeys.generate("bob@example.org")
MIB = 2**20


def fields() -> dict[str, Any]:
    return header_fields(ALICE, BOB)


def sealed(plaintext: Any) -> list[bytes]:
    return seal_frames(fields(), plaintext, ALICE.current.private, BOB.current.public)


def opened(data: Any, layout: Any = None) -> list[bytes]:
    return open_frames(parse_envelope(data), BOB.current.private, ALICE.current.public, layout)


def model_message(*sizes: int) -> Message:
    arrays = {
        f"a{index}": Array("uint8", (size,), "raw", os.urandom(size))
        for index, size in enumerate(sizes)
    }
    metadata = Metadata(
        run_id=1,
        message_id="m",
        src_node_id=1,
        dst_node_id=2,
        reply_to_message_id="",
        group_id="1",
        created_at=1.0,
        ttl=60.0,
        message_type="train",
    )
    return message_with_metadata(metadata, content=RecordDict({"arrays": ArrayRecord(arrays)}))


@pytest.fixture
def small_chunks() -> Iterator[None]:
    """Chunks of 7 bytes, so small bodies cross many chunk boundaries (one value for every
    example of a test: hypothesis may share it)."""
    original = envelope._CHUNK
    envelope._CHUNK = 7
    yield
    envelope._CHUNK = original


def test_a_model_opens_into_one_bytes_per_array_that_decoding_uses_as_they_are() -> None:
    message = model_message(1000, 0, 333)
    frames = opened(b"".join(sealed(encode_message_frames(message))), message_layout)
    decoded = decode_message(frames)
    arrays = decoded.content["arrays"]
    assert [len(frame) for frame in frames[1:]] == [1000, 0, 333]
    assert arrays["a0"].data is frames[1] and arrays["a2"].data is frames[3]
    for key in ("a0", "a1", "a2"):
        assert arrays[key].data == message.content["arrays"][key].data
    assert ArrayRecord(dict(arrays)).to_numpy_ndarrays  # Flower rebuilds them: real bytes


def test_a_plaintext_the_layout_cannot_read_is_one_frame_for_the_decoder_to_refuse() -> None:
    frames = opened(b"".join(sealed(b"not a wire envelope at all")), message_layout)
    assert b"".join(frames) == b"not a wire envelope at all"


def test_sealing_makes_the_ciphertext_and_nothing_else() -> None:
    body = np.ones(32 * MIB, dtype=np.uint8).tobytes()
    frames = [b"head", body]
    tracemalloc.start()
    try:
        sealed_frames = sealed(frames)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert sum(map(len, sealed_frames)) > len(body)
    assert peak < 1.1 * len(body), f"sealing held {peak / len(body):.2f}x the body"


def test_opening_a_released_buffer_holds_the_plaintext_and_nothing_else() -> None:
    message = model_message(16 * MIB, 16 * MIB)
    frames = sealed(encode_message_frames(message))
    size = sum(map(len, frames))
    buffer = BodyBuffer(size)
    view = memoryview(buffer)
    offset = 0
    for frame in frames:
        view[offset : offset + len(frame)] = frame
        offset += len(frame)
    del frames
    tracemalloc.start()
    try:
        decoded = decode_message(opened(view, message_layout))
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < 1.1 * 32 * MIB, f"opening held {peak / (32 * MIB):.2f}x the model"
    assert decoded.content["arrays"]["a1"].data == message.content["arrays"]["a1"].data
    middle = size // 2
    assert bytes(view[middle : middle + 4096]) == bytes(4096)  # the ciphertext was released


@settings(
    max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    body=st.binary(min_size=1, max_size=200), where=st.integers(min_value=0), bit=st.integers(0, 7)
)
def test_any_flipped_bit_fails(small_chunks: None, body: bytes, where: int, bit: int) -> None:
    data = bytearray(b"".join(sealed(body)))
    data[where % len(data)] ^= 1 << bit
    with pytest.raises(CryptoError):
        opened(bytes(data))


@settings(
    max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(body=st.binary(max_size=200), cut=st.integers(min_value=1))
def test_any_truncation_fails(small_chunks: None, body: bytes, cut: int) -> None:
    data = b"".join(sealed(body))
    with pytest.raises(CryptoError):
        opened(data[: len(data) - 1 - cut % len(data)])


@settings(
    max_examples=30, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(body=st.binary(min_size=28, max_size=200), first=st.integers(0), second=st.integers(0))
def test_reordered_chunks_fail(small_chunks: None, body: bytes, first: int, second: int) -> None:
    frames = sealed(body)
    chunks = frames[1:-1]  # the ciphertext chunks, all of _CHUNK bytes but the last
    i, j = first % (len(chunks) - 1), second % (len(chunks) - 1)
    if chunks[i] == chunks[j]:
        return
    chunks[i], chunks[j] = chunks[j], chunks[i]
    with pytest.raises(DecryptionError):
        opened(b"".join([frames[0], *chunks, frames[-1]]))


def test_a_failed_tag_hands_nothing_on(small_chunks: None) -> None:
    message = model_message(100)
    data = bytearray(b"".join(sealed(encode_message_frames(message))))
    data[-1] ^= 1
    with pytest.raises(DecryptionError):
        opened(bytes(data), message_layout)


def counting_ciphers(monkeypatch: pytest.MonkeyPatch) -> list[object]:
    made: list[object] = []
    cipher = envelope.Cipher

    def counting(*args: Any, **kwargs: Any) -> Any:
        made.append(args)
        return cipher(*args, **kwargs)

    monkeypatch.setattr(envelope, "Cipher", counting)
    return made


def test_a_small_message_is_sealed_and_opened_without_a_streaming_cipher(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Every party seals or opens every message of a round: one AES-GCM call each."""
    made = counting_ciphers(monkeypatch)
    message = model_message(100, 3000)
    frames = opened(b"".join(sealed(encode_message_frames(message))), message_layout)
    assert made == []
    assert decode_message(frames).content["arrays"]["a1"].data == (
        message.content["arrays"]["a1"].data
    )


@pytest.mark.parametrize("sealed_by", ["one-shot", "streaming"])
def test_one_shot_and_streaming_envelopes_are_the_same_bytes(
    monkeypatch: pytest.MonkeyPatch, sealed_by: str
) -> None:
    """An envelope sealed either way opens the other way: one wire format."""
    message = model_message(10, 500)
    if sealed_by == "streaming":
        monkeypatch.setattr(envelope, "_ONE_SHOT", -1)
    data = b"".join(sealed(encode_message_frames(message)))
    monkeypatch.setattr(envelope, "_ONE_SHOT", -1 if sealed_by == "one-shot" else 1 << 18)
    assert decode_message(opened(data, message_layout)).content["arrays"]["a0"].data == (
        message.content["arrays"]["a0"].data
    )
    tampered = bytearray(data)
    tampered[-1] ^= 1
    with pytest.raises(DecryptionError):
        opened(bytes(tampered))
