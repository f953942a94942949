"""One-pass bodies: a model sealed into one reused buffer as it is written, and opened from
its medium in chunks, byte for byte, with every truncation, rewrite and tampering refused."""

from __future__ import annotations

import os
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from core.tests.test_inbound import ME, TRUST_SERVER, request
from core.tests.test_streamed_envelope import model_message
from syft_flwr.crypto import envelope
from syft_flwr.crypto.envelope import (
    SealedStream,
    open_frames,
    parse_envelope,
    seal_body,
    seal_stream,
)
from syft_flwr.crypto.errors import CryptoError, DecryptionError, MalformedEnvelopeError
from syft_flwr.crypto.keys import IdentityKeys
from syft_flwr.errors import RequestRefusedError, WireFormatError
from syft_flwr.grid.gate import RequestGate
from syft_flwr.testing.envelopes import header_fields
from syft_flwr.transport import (
    BodyConsumedError,
    IncompleteBodyError,
    ReceivedBody,
    body_frames,
    body_size,
    held_body,
    join_body,
    outgoing_body,
    stream_body,
)
from syft_flwr.wire import decode_message, encode_message_frames, message_layout

ALICE, BOB = IdentityKeys.generate("alice@example.org"), IdentityKeys.generate("bob@example.org")
STEP = 4096


@pytest.fixture(autouse=True)
def small_steps(monkeypatch: pytest.MonkeyPatch) -> None:
    """Steps of 4 KiB, so KiB-sized bodies cross many of them (the logic, not the size)."""
    monkeypatch.setattr(envelope, "_STEP", STEP)


def fields() -> dict[str, Any]:
    return header_fields(ALICE, BOB)


def stream(plaintext: Any) -> SealedStream:
    return seal_stream(fields(), plaintext, ALICE.current.private, BOB.current.public)


class Medium(ReceivedBody):
    """A received body over bytes that may hand out at most ``most`` bytes per read, end
    early (``length`` declared larger than the data), or change from ``rewrite_at`` on."""

    def __init__(
        self,
        data: bytes,
        *,
        length: int | None = None,
        most: int = 1 << 30,
        rewrite_at: int | None = None,
    ) -> None:
        super().__init__(len(data) if length is None else length)
        self.data = bytearray(data)
        self.most = most
        self.rewrite_at = rewrite_at
        self.position = 0
        self.reads: list[tuple[int, int]] = []

    def _read(self, target: memoryview) -> int:
        count = min(len(target), self.most, len(self.data) - self.position)
        if self.rewrite_at is not None and self.position + count > self.rewrite_at:
            start = max(self.position, self.rewrite_at)  # rewritten in place before this read
            self.data[start:] = bytes(byte ^ 0xFF for byte in self.data[start:])
            self.rewrite_at = None
        target[:count] = self.data[self.position : self.position + count]
        self.reads.append((self.position, count))
        self.position += count
        return count


def open_received(body: ReceivedBody, layout: Any = None) -> list[bytes]:
    return open_frames(parse_envelope(body), BOB.current.private, ALICE.current.public, layout)


frames_strategy = st.lists(st.binary(max_size=3 * STEP), max_size=4)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(frames=frames_strategy, most=st.integers(1, 3 * STEP))
def test_a_stream_opens_from_its_medium_byte_for_byte(frames: list[bytes], most: int) -> None:
    sealed = stream(frames)
    size = body_size(sealed)
    data = join_body(sealed)
    assert len(data) == size
    medium = Medium(data, most=most)
    assert b"".join(open_received(medium)) == b"".join(frames)
    covered = sorted(medium.reads)
    assert [start for start, _ in covered] == sorted({start for start, _ in covered})
    assert sum(count for _, count in covered) == size  # every byte read exactly once


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(plaintext=st.binary(max_size=3 * STEP), data=st.data())
def test_any_flipped_byte_is_refused(plaintext: bytes, data: st.DataObject) -> None:
    sealed = bytearray(join_body(stream(plaintext)))
    index = data.draw(st.integers(0, len(sealed) - 1))
    sealed[index] ^= 1 << data.draw(st.integers(0, 7))
    with pytest.raises(CryptoError):
        open_received(Medium(bytes(sealed)))


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(plaintext=st.binary(min_size=1, max_size=3 * STEP), data=st.data())
def test_a_medium_that_ends_early_is_incomplete_never_opened(
    plaintext: bytes, data: st.DataObject
) -> None:
    sealed = join_body(stream(plaintext))
    cut = data.draw(st.integers(len(sealed) - len(plaintext) - 16, len(sealed) - 1))
    with pytest.raises((IncompleteBodyError, MalformedEnvelopeError)):
        open_received(Medium(sealed[:cut], length=len(sealed)))


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(plaintext=st.binary(min_size=1, max_size=3 * STEP), data=st.data())
def test_a_medium_rewritten_while_read_fails_authentication(
    plaintext: bytes, data: st.DataObject
) -> None:
    sealed = join_body(stream(plaintext))
    at = data.draw(st.integers(len(sealed) - len(plaintext) - 16, len(sealed) - 1))
    with pytest.raises(DecryptionError):
        open_received(Medium(sealed, rewrite_at=at, most=STEP))


@pytest.mark.parametrize("size", [0, 3, 6, 7, 30])
def test_a_short_body_is_malformed(size: int) -> None:
    sealed = join_body(stream(b"x" * 100))
    with pytest.raises(MalformedEnvelopeError):
        open_received(Medium(sealed[:size]))


def test_a_model_message_opens_into_its_arrays_from_the_medium() -> None:
    message = model_message(5 * STEP + 3, 2 * STEP)
    sealed = join_body(stream(tuple(encode_message_frames(message))))
    frames = open_received(Medium(sealed, most=STEP - 1), message_layout)
    assert [len(frame) for frame in frames[1:]] == [5 * STEP + 3, 2 * STEP]
    decoded = decode_message(frames)
    for name in ("a0", "a1"):
        assert decoded.content["arrays"][name].data == message.content["arrays"][name].data


def test_sealing_holds_no_ciphertext_but_one_reused_buffer() -> None:
    sealed = stream([os.urandom(10 * STEP), os.urandom(STEP + 5)])
    frames = list(sealed.frames())  # kept only to look at them: each is overwritten by the next
    ciphertext = frames[1:-1]
    assert len(ciphertext) == 12
    assert len({id(frame.obj) for frame in ciphertext}) == 1
    assert all(len(frame.obj) == STEP for frame in ciphertext)  # type: ignore[arg-type]
    assert len(frames[-1]) == envelope.TAG_SIZE


def test_a_stream_is_produced_once_and_never_taken_for_kept_frames() -> None:
    sealed = stream(b"x" * STEP)
    with pytest.raises(TypeError, match="one-pass"):
        list(body_frames(sealed))
    list(stream_body(sealed))
    with pytest.raises(BodyConsumedError):
        list(stream_body(sealed))
    with pytest.raises(BodyConsumedError):
        join_body(sealed)


def test_small_bodies_stay_a_few_bytes_objects() -> None:
    small = seal_body(fields(), b"x" * 100, ALICE.current.private, BOB.current.public)
    large = seal_body(
        fields(), b"x" * envelope.STREAM_FROM, ALICE.current.private, BOB.current.public
    )
    assert isinstance(small, list) and isinstance(large, SealedStream)


class _Transport:
    def __init__(self, **capabilities: bool) -> None:
        from syft_flwr.transport import TransportCapabilities

        self.capabilities = TransportCapabilities(notifies=True, **capabilities)


@pytest.mark.parametrize(
    ("capabilities", "kept"),
    [({}, False), ({"accepts_frames": True}, False), ({"accepts_streams": True}, True)],
)
def test_only_a_transport_that_accepts_streams_is_handed_one(
    capabilities: dict[str, bool], kept: bool
) -> None:
    sealed = stream(b"y" * 3 * STEP)
    body = outgoing_body(_Transport(**capabilities), sealed)  # type: ignore[arg-type]
    assert (body is sealed) is kept
    if not kept:
        assert isinstance(body, bytes) and len(body) == sealed.size


def test_a_received_body_is_bytes_for_code_written_against_bytes() -> None:
    sealed = join_body(stream(b"z" * 2 * STEP))
    medium = Medium(sealed, most=7)
    assert len(medium) == len(sealed) and medium.head(4) == b"SFWE"
    assert bytes(medium) == sealed
    with pytest.raises(BodyConsumedError):
        bytes(medium)


def test_a_reader_without_a_channel_refuses_a_body_left_in_its_medium_unread() -> None:
    """Only a sealed body is left in its medium, and only the channel reads it: the decoder and
    the gate of a plaintext run refuse one without reading a byte of it, never read it whole."""
    medium = Medium(join_body(stream(b"p" * 2 * STEP)))
    with pytest.raises(WireFormatError, match="only the channel opens"):
        held_body(medium)
    with pytest.raises(WireFormatError, match="only the channel opens"):
        decode_message(medium)
    with pytest.raises(RequestRefusedError, match="malformed request"):
        RequestGate(ME, policy=TRUST_SERVER).admit(request(medium))
    assert medium.reads == []


def test_a_received_body_survives_a_retried_open_before_its_ciphertext() -> None:
    sealed = join_body(stream(b"k" * 2 * STEP))
    medium = Medium(sealed)
    parse_envelope(medium)  # a first attempt that stops at the header (a key not fetched yet)
    assert b"".join(open_received(medium)) == b"k" * 2 * STEP
