"""The sealed envelope: one message encrypted to one recipient and authenticated as its sender.

Layout (integers big-endian, no base64 anywhere)::

    b"SFWE" | version: u8 | header length: u16 | header (msgpack array) | ciphertext | tag (16)

The header is ``[sender, recipient, app, endpoint, message_id (16), reply_to (0 or 16),
created, expires, sender_kid (8), recipient_kid (8), ephemeral (32)]``. The whole prefix and
header are the AEAD's associated data, so changing any field (or the version) breaks the tag.

Key schedule, for a fresh ephemeral X25519 key ``e``, the sender's agreement key ``s`` and the
recipient's ``r``::

    ikm  = X25519(e, r) || X25519(s, r)
    salt = e.pub || s.pub || r.pub
    key (32) || nonce (12) = HKDF-SHA256(ikm, salt, info=b"syft-flwr/seal/v1", length=44)
    ciphertext || tag = AES-256-GCM(key, nonce, plaintext, aad=prefix || header)

The ephemeral half gives every message its own key; the static half means only the holder of
the sender's agreement key (or the recipient's) can produce a valid tag, which authenticates the
sender without a signature. As with any static-static scheme, whoever steals the *recipient's*
private key can also forge messages to it (key-compromise impersonation); rotation limits that.

Sealing streams the body's frames (:func:`~syft_flwr.wire.encode_message_frames`) through GCM
chunk by chunk and joins prefix, header, ciphertext and tag once, so a model is copied once on
the way out, never joined first; it also lifts the 2 GiB limit of one-shot AES-GCM up to GCM's
own (64 GiB). Opening is one-shot below 2 GiB (one output buffer) and streamed above.
"""

from __future__ import annotations

import struct
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Final

import msgpack  # type: ignore[import-untyped]
from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey, X25519PublicKey
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from syft_flwr.crypto.errors import (
    DecryptionError,
    MalformedEnvelopeError,
    PlaintextTooLargeError,
)
from syft_flwr.crypto.keys import KEY_ID_SIZE, raw_public

__all__ = [
    "ENVELOPE_VERSION",
    "MAGIC",
    "MAX_PLAINTEXT",
    "MESSAGE_ID_SIZE",
    "TAG_SIZE",
    "Header",
    "SealedEnvelope",
    "is_sealed",
    "open_envelope",
    "parse_envelope",
    "seal",
]

MAGIC: Final = b"SFWE"
ENVELOPE_VERSION: Final = 1
MESSAGE_ID_SIZE: Final = 16
TAG_SIZE: Final = 16
_PREFIX: Final = struct.Struct(">4sBH")
_INFO: Final = b"syft-flwr/seal/v1"
_MAX_HEADER: Final = 2**16 - 1
_FIELDS: Final = 11
MAX_PLAINTEXT: Final = 2**36 - 32
"""Largest body one envelope seals: GCM's limit for one key and nonce (64 GiB - 32)."""
_ONE_SHOT: Final = 2**31 - 1
_CHUNK: Final = 1 << 26

Buffer = bytes | bytearray | memoryview


@dataclass(frozen=True)
class Header:
    """The authenticated, unencrypted part of an envelope."""

    sender: str
    recipient: str
    app: str
    endpoint: str
    message_id: bytes
    reply_to: bytes
    created: float
    expires: float
    sender_kid: bytes
    recipient_kid: bytes
    ephemeral: bytes

    def pack(self) -> list[Any]:
        """The header as the msgpack array the wire carries."""
        return [
            self.sender,
            self.recipient,
            self.app,
            self.endpoint,
            self.message_id,
            self.reply_to,
            self.created,
            self.expires,
            self.sender_kid,
            self.recipient_kid,
            self.ephemeral,
        ]


@dataclass(frozen=True)
class SealedEnvelope:
    """A parsed, not yet opened envelope: the header, the AAD bytes and the ciphertext."""

    header: Header
    aad: memoryview
    ciphertext: memoryview


def is_sealed(data: bytes | bytearray | memoryview) -> bool:
    """Whether ``data`` starts like a sealed envelope (not a proof that it is one)."""
    return bytes(data[: len(MAGIC)]) == MAGIC


def _derive(ikm: bytes, salt: bytes) -> tuple[bytes, bytes]:
    okm = HKDF(algorithm=hashes.SHA256(), length=44, salt=salt, info=_INFO).derive(ikm)
    return okm[:32], okm[32:]


def seal(
    header_fields: dict[str, Any],
    plaintext: Buffer | Sequence[Buffer],
    sender_key: X25519PrivateKey,
    recipient_public: bytes,
) -> bytes:
    """Seal ``plaintext`` (one buffer, or frames to concatenate); ``header_fields`` are every
    :class:`Header` field but ``ephemeral``.

    :raises MalformedEnvelopeError: the header does not fit its 64 KiB limit.
    :raises PlaintextTooLargeError: ``plaintext`` exceeds :data:`MAX_PLAINTEXT`.
    """
    frames = [plaintext] if isinstance(plaintext, Buffer) else list(plaintext)
    views = [memoryview(frame).cast("B") for frame in frames]
    size = sum(view.nbytes for view in views)
    if size > MAX_PLAINTEXT:
        raise PlaintextTooLargeError(
            f"a body of {size} bytes exceeds the {MAX_PLAINTEXT}-byte limit of one sealed envelope"
        )
    ephemeral = X25519PrivateKey.generate()
    ephemeral_public = raw_public(ephemeral.public_key())
    header = Header(**header_fields, ephemeral=ephemeral_public)
    packed = msgpack.packb(header.pack(), use_bin_type=True)
    if len(packed) > _MAX_HEADER:
        raise MalformedEnvelopeError(f"envelope header of {len(packed)} bytes is too long")
    aad = _PREFIX.pack(MAGIC, ENVELOPE_VERSION, len(packed)) + packed
    recipient = X25519PublicKey.from_public_bytes(recipient_public)
    ikm = ephemeral.exchange(recipient) + sender_key.exchange(recipient)
    salt = ephemeral_public + raw_public(sender_key.public_key()) + recipient_public
    key, nonce = _derive(ikm, salt)
    encryptor = Cipher(algorithms.AES(key), modes.GCM(nonce)).encryptor()
    encryptor.authenticate_additional_data(aad)
    parts = [aad]
    for view in views:
        for start in range(0, view.nbytes, _CHUNK):
            parts.append(encryptor.update(view[start : start + _CHUNK]))
    parts.append(encryptor.finalize())
    parts.append(encryptor.tag)
    return b"".join(parts)


def parse_envelope(data: bytes | bytearray | memoryview) -> SealedEnvelope:
    """Split ``data`` into header and ciphertext, checking structure only (nothing is trusted).

    :raises MalformedEnvelopeError: wrong magic or version, truncated, or a bad header.
    """
    view = memoryview(data).cast("B")
    if len(view) < _PREFIX.size:
        raise MalformedEnvelopeError(f"sealed envelope of {len(view)} bytes is truncated")
    magic, version, length = _PREFIX.unpack_from(view)
    if magic != MAGIC:
        raise MalformedEnvelopeError(f"not a sealed envelope: magic {bytes(magic)!r}")
    if version != ENVELOPE_VERSION:
        raise MalformedEnvelopeError(f"unsupported sealed envelope version {version}")
    end = _PREFIX.size + length
    if len(view) < end + TAG_SIZE:
        raise MalformedEnvelopeError(
            f"sealed envelope of {len(view)} bytes is truncated (header says {length})"
        )
    header = _unpack_header(view[_PREFIX.size : end])
    return SealedEnvelope(header, view[:end], view[end:])


def _unpack_header(buffer: memoryview) -> Header:
    limit = len(buffer)
    try:
        fields = msgpack.unpackb(
            buffer,
            raw=False,
            use_list=True,
            max_str_len=limit,
            max_bin_len=limit,
            max_array_len=_FIELDS,
            max_map_len=0,
            max_ext_len=0,
        )
    except (TypeError, ValueError) as exc:
        raise MalformedEnvelopeError(f"sealed envelope header is not valid msgpack: {exc}") from exc
    if not isinstance(fields, list) or len(fields) != _FIELDS:
        raise MalformedEnvelopeError("sealed envelope header must be an 11-element array")
    header = Header(*fields)
    _check(header)
    return header


def _check(header: Header) -> None:
    for name in ("sender", "recipient", "app", "endpoint"):
        if not isinstance(getattr(header, name), str):
            raise MalformedEnvelopeError(f"sealed envelope header: {name} must be a string")
    sizes = {
        "message_id": (MESSAGE_ID_SIZE,),
        "reply_to": (0, MESSAGE_ID_SIZE),
        "sender_kid": (KEY_ID_SIZE,),
        "recipient_kid": (KEY_ID_SIZE,),
        "ephemeral": (32,),
    }
    for name, allowed in sizes.items():
        value = getattr(header, name)
        if not isinstance(value, bytes) or len(value) not in allowed:
            raise MalformedEnvelopeError(f"sealed envelope header: bad {name}")
    for name in ("created", "expires"):
        if not isinstance(getattr(header, name), float):
            raise MalformedEnvelopeError(f"sealed envelope header: {name} must be a float")


def open_envelope(
    envelope: SealedEnvelope, recipient_key: X25519PrivateKey, sender_public: bytes
) -> bytes:
    """Decrypt and authenticate ``envelope`` (the caller checks the header's meaning).

    :raises DecryptionError: the tag does not verify for these keys and this header.
    """
    header = envelope.header
    try:
        ephemeral = X25519PublicKey.from_public_bytes(header.ephemeral)
        sender = X25519PublicKey.from_public_bytes(sender_public)
        ikm = recipient_key.exchange(ephemeral) + recipient_key.exchange(sender)
    except ValueError as exc:  # a low-order point gives an all-zero secret
        raise DecryptionError(f"invalid key agreement: {exc}") from exc
    salt = header.ephemeral + sender_public + raw_public(recipient_key.public_key())
    key, nonce = _derive(ikm, salt)
    try:
        if envelope.ciphertext.nbytes <= _ONE_SHOT:
            opened: bytes = AESGCM(key).decrypt(nonce, envelope.ciphertext, envelope.aad)
            return opened
        return _open_streamed(key, nonce, envelope)
    except InvalidTag:
        raise DecryptionError(
            f"message {header.message_id.hex()} from {header.sender} fails authentication "
            "(tampered, or not sealed by the sender it names)"
        ) from None


def _open_streamed(key: bytes, nonce: bytes, envelope: SealedEnvelope) -> bytes:
    """Decrypt a body beyond one-shot AES-GCM's 2 GiB; nothing is returned unless the tag holds."""
    body, tag = envelope.ciphertext[:-TAG_SIZE], envelope.ciphertext[-TAG_SIZE:]
    decryptor = Cipher(algorithms.AES(key), modes.GCM(nonce)).decryptor()
    decryptor.authenticate_additional_data(bytes(envelope.aad))
    parts = [
        decryptor.update(body[start : start + _CHUNK]) for start in range(0, body.nbytes, _CHUNK)
    ]
    decryptor.finalize_with_tag(bytes(tag))
    return b"".join(parts)
