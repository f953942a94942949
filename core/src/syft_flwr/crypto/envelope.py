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
chunk by chunk. From :data:`STREAM_FROM` on (:func:`seal_body`) the envelope is a one-pass
:class:`SealedStream` (:func:`seal_stream`): prefix and header, then ciphertext encrypted into
one reused 1 MiB buffer as the transport writes each frame, then the tag, so sending a model
holds no ciphertext but that buffer. Smaller bodies are a few ``bytes`` (:func:`seal_frames`).
Opening (:func:`open_frames`) decrypts chunk by chunk with ``update_into`` straight into the
plaintext's final buffers, which a caller may split where it needs (the wire codec: one
``bytes`` per array, so Flower's arrays are built without a copy). An envelope still in its
medium (a :class:`~syft_flwr.transport.ReceivedBody`) is read once, in chunks into one reused
buffer, after every check on its header; one in a :class:`~syft_flwr.body_buffer.BodyBuffer`
has each ciphertext chunk's memory released once decrypted. Nothing decrypted is returned before
the tag verifies. Chunking also lifts the 2 GiB limit of one-shot AES-GCM up to GCM's own
(64 GiB).
"""

from __future__ import annotations

import io
import struct
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from mmap import PAGESIZE
from typing import Any, Final, Protocol

import msgpack  # type: ignore[import-untyped]
from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey, X25519PublicKey
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from syft_flwr.body_buffer import release
from syft_flwr.crypto.errors import (
    DecryptionError,
    MalformedEnvelopeError,
    PlaintextTooLargeError,
)
from syft_flwr.crypto.keys import KEY_ID_SIZE, raw_public
from syft_flwr.errors import SyftFlwrError
from syft_flwr.transport import FrameSource, IncompleteBodyError, ReceivedBody

__all__ = [
    "ENVELOPE_VERSION",
    "MAGIC",
    "MAX_PLAINTEXT",
    "MESSAGE_ID_SIZE",
    "STREAM_FROM",
    "TAG_SIZE",
    "Header",
    "PlaintextLayout",
    "SealedEnvelope",
    "SealedStream",
    "StaticAgreement",
    "is_sealed",
    "open_envelope",
    "open_frames",
    "parse_envelope",
    "seal",
    "seal_body",
    "seal_frames",
    "seal_stream",
    "static_agreement",
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
_CHUNK: Final = 1 << 26
"""Bytes per GCM step: big enough that each ciphertext chunk is its own ``mmap`` in the
allocator (freed at once), small enough to be a rounding error next to a model."""

_STEP: Final = 1 << 20
"""Bytes per GCM step of a one-pass seal or open: the reused buffer stays in the CPU's cache
between the cipher, the hash a transport may take and the copy into or out of a file."""
_ONE_SHOT: Final = 1 << 18
"""Plaintexts up to this size are sealed and opened by one AES-GCM call (``AESGCM``): the
same bytes as the streaming cipher's, without its setup (60 us against 5 us for a 1 KiB
message, paid by every party for every message of a round)."""
STREAM_FROM: Final = 1 << 20
"""Plaintexts from this size on are sealed as a one-pass :class:`SealedStream` by
:func:`seal_body`; smaller ones as a few ``bytes`` (one cipher call, one ``writev``)."""

Buffer = bytes | bytearray | memoryview

PlaintextLayout = Callable[[Callable[[int], bytes]], Sequence[int]]
"""How a caller wants an opened plaintext split (see :func:`open_frames`): given ``read(n)``,
which decrypts the next ``n`` bytes, it reads the plaintext's own header and returns the sizes
of the frames that follow. It raises :class:`~syft_flwr.errors.SyftFlwrError` on a header it
cannot read; the rest is then one frame, for the caller's own decoder to refuse."""


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
    """The ciphertext followed by the tag."""
    source: memoryview | None = None
    """The whole envelope as it was parsed (so a :class:`~syft_flwr.body_buffer.BodyBuffer`
    under it can be released as it is read)."""
    received: ReceivedBody | None = None
    """The envelope still in its medium (:class:`~syft_flwr.transport.ReceivedBody`): only
    its head is read, ``ciphertext`` is empty, and opening streams the rest from it."""

    @property
    def sealed_size(self) -> int:
        """The bytes of ciphertext and tag."""
        if self.received is not None:
            return len(self.received) - len(self.aad)
        return self.ciphertext.nbytes


def is_sealed(data: bytes | bytearray | memoryview) -> bool:
    """Whether ``data`` starts like a sealed envelope (not a proof that it is one)."""
    return bytes(data[: len(MAGIC)]) == MAGIC


@dataclass(frozen=True)
class StaticAgreement:
    """What an own agreement key and a peer's public key agree on: the X25519 secret of the
    two long-term keys, and the own raw public key. It is the same for every message between
    them (only the ephemeral half changes), so a channel keeps it per pair and passes it to
    the seal and open functions: one exchange fewer per message on each side.

    :param secret: ``own.exchange(peer)``.
    :param own_public: the own key's raw public key.
    """

    secret: bytes
    own_public: bytes


def static_agreement(own_key: X25519PrivateKey, peer_public: bytes) -> StaticAgreement:
    """The :class:`StaticAgreement` of ``own_key`` and the raw X25519 key ``peer_public``.

    :raises ValueError: ``peer_public`` is not a usable key (a low-order point gives an
        all-zero secret).
    """
    peer = X25519PublicKey.from_public_bytes(peer_public)
    return StaticAgreement(own_key.exchange(peer), raw_public(own_key.public_key()))


def _derive(ikm: bytes, salt: bytes) -> tuple[bytes, bytes]:
    okm = HKDF(algorithm=hashes.SHA256(), length=44, salt=salt, info=_INFO).derive(ikm)
    return okm[:32], okm[32:]


def seal(
    header_fields: dict[str, Any],
    plaintext: Buffer | Sequence[Buffer],
    sender_key: X25519PrivateKey,
    recipient_public: bytes,
) -> bytes:
    """:func:`seal_frames` joined into one ``bytes`` (for a body that is small or must be one
    piece, such as a key-document reply).

    :raises MalformedEnvelopeError: as :func:`seal_frames`.
    :raises PlaintextTooLargeError: as :func:`seal_frames`.
    """
    return b"".join(seal_frames(header_fields, plaintext, sender_key, recipient_public))


def seal_body(
    header_fields: dict[str, Any],
    plaintext: Buffer | Sequence[Buffer],
    sender_key: X25519PrivateKey,
    recipient_public: bytes,
    static: StaticAgreement | None = None,
) -> list[bytes] | SealedStream:
    """The envelope as a transport best writes it: :func:`seal_stream` from
    :data:`STREAM_FROM` bytes of plaintext on, else :func:`seal_frames`.

    :raises MalformedEnvelopeError: as :func:`seal_frames`.
    :raises PlaintextTooLargeError: as :func:`seal_frames`.
    """
    views = _views(plaintext)
    if sum(view.nbytes for view in views) >= STREAM_FROM:
        return seal_stream(header_fields, views, sender_key, recipient_public, static)
    return seal_frames(header_fields, views, sender_key, recipient_public, static)


def seal_frames(
    header_fields: dict[str, Any],
    plaintext: Buffer | Sequence[Buffer],
    sender_key: X25519PrivateKey,
    recipient_public: bytes,
    static: StaticAgreement | None = None,
) -> list[bytes]:
    """Seal ``plaintext`` (one buffer, or frames to concatenate) as the envelope's frames:
    prefix and header, ciphertext chunks of at most 64 MiB, then the tag; ``header_fields``
    are every :class:`Header` field but ``ephemeral``.

    The frames are the envelope's only copy of the body (nothing is joined): a transport
    writes them one after the other (:data:`~syft_flwr.transport.Body`). For a model,
    :func:`seal_stream` does without even that copy.

    :param static: the :class:`StaticAgreement` of ``sender_key`` and ``recipient_public``
        kept by the caller; computed when ``None``.
    :raises MalformedEnvelopeError: the header does not fit its 64 KiB limit.
    :raises PlaintextTooLargeError: ``plaintext`` exceeds :data:`MAX_PLAINTEXT`.
    """
    views = _views(plaintext)
    size = sum(view.nbytes for view in views)
    if size <= min(_ONE_SHOT, _CHUNK):
        aad, key, nonce = _agreement(header_fields, size, sender_key, recipient_public, static)
        whole = views[0] if len(views) == 1 else b"".join(views)
        sealed = AESGCM(key).encrypt(nonce, whole, aad)
        return [aad, sealed[:-TAG_SIZE], sealed[-TAG_SIZE:]]
    aad, encryptor = _encryptor(header_fields, views, sender_key, recipient_public, static)
    parts = [aad]
    for view in views:
        for start in range(0, view.nbytes, _CHUNK):
            parts.append(encryptor.update(view[start : start + _CHUNK]))
    parts.append(encryptor.finalize() + encryptor.tag)
    return parts


def seal_stream(
    header_fields: dict[str, Any],
    plaintext: Buffer | Sequence[Buffer],
    sender_key: X25519PrivateKey,
    recipient_public: bytes,
    static: StaticAgreement | None = None,
) -> SealedStream:
    """Seal ``plaintext`` as a one-pass body: the envelope is encrypted into one reused buffer
    of 1 MiB as a transport writes it (:class:`SealedStream`), so no ciphertext is held but
    that buffer. The key agreement and the header happen now (errors are raised here); the
    plaintext must stay unchanged until the stream is written.

    :raises MalformedEnvelopeError: as :func:`seal_frames`.
    :raises PlaintextTooLargeError: as :func:`seal_frames`.
    """
    views = _views(plaintext)
    aad, encryptor = _encryptor(header_fields, views, sender_key, recipient_public, static)
    return SealedStream(aad, views, encryptor)


class SealedStream(FrameSource):
    """A sealed envelope produced as it is written (:func:`seal_stream`): the prefix and
    header, then ciphertext in one reused buffer (each frame overwrites the one before), then
    the tag. Its size is known before a byte is encrypted."""

    def __init__(self, aad: bytes, views: Sequence[memoryview], encryptor: Any) -> None:
        plaintext = sum(view.nbytes for view in views)
        super().__init__(len(aad) + plaintext + TAG_SIZE)
        self._aad = aad
        self._views = views
        self._encryptor = encryptor
        self._step = min(_STEP, max(plaintext, 1))

    def _produce(self) -> Iterator[memoryview]:
        yield memoryview(self._aad)
        out = memoryview(bytearray(self._step))
        for view in self._views:
            for start in range(0, view.nbytes, self._step):
                piece = view[start : start + self._step]
                written = self._encryptor.update_into(piece, out)
                if written != piece.nbytes:  # GCM is a stream mode: a short write is a bug
                    raise PlaintextTooLargeError(f"encrypted {written} of {piece.nbytes} bytes")
                yield out[:written]
        self._views = ()
        yield memoryview(self._encryptor.finalize() + self._encryptor.tag)


def _views(plaintext: Buffer | Sequence[Buffer]) -> list[memoryview]:
    frames = [plaintext] if isinstance(plaintext, Buffer) else list(plaintext)
    return [memoryview(frame).cast("B") for frame in frames]


def _encryptor(
    header_fields: dict[str, Any],
    views: Sequence[memoryview],
    sender_key: X25519PrivateKey,
    recipient_public: bytes,
    static: StaticAgreement | None = None,
) -> tuple[bytes, Any]:
    """The envelope's prefix and header, and a GCM encryptor keyed and nonced for it that has
    authenticated them."""
    size = sum(view.nbytes for view in views)
    aad, key, nonce = _agreement(header_fields, size, sender_key, recipient_public, static)
    encryptor = Cipher(algorithms.AES(key), modes.GCM(nonce)).encryptor()
    encryptor.authenticate_additional_data(aad)
    return aad, encryptor


def _agreement(
    header_fields: dict[str, Any],
    size: int,
    sender_key: X25519PrivateKey,
    recipient_public: bytes,
    static: StaticAgreement | None = None,
) -> tuple[bytes, bytes, bytes]:
    """The envelope's prefix and header for a plaintext of ``size`` bytes, and the key and
    nonce agreed for it (a fresh ephemeral key each time)."""
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
    if static is None:
        static = static_agreement(sender_key, recipient_public)
    ikm = ephemeral.exchange(recipient) + static.secret
    salt = ephemeral_public + static.own_public + recipient_public
    key, nonce = _derive(ikm, salt)
    return aad, key, nonce


def parse_envelope(data: bytes | bytearray | memoryview | ReceivedBody) -> SealedEnvelope:
    """Split ``data`` into header and ciphertext, checking structure only (nothing is trusted).

    A :class:`~syft_flwr.transport.ReceivedBody` is read no further than its header.

    :raises MalformedEnvelopeError: wrong magic or version, truncated, or a bad header.
    :raises IncompleteBodyError: a received body's medium ended inside its header.
    """
    received = data if isinstance(data, ReceivedBody) else None
    total = len(data)
    if total < _PREFIX.size:
        raise MalformedEnvelopeError(f"sealed envelope of {total} bytes is truncated")
    held = data.head(_PREFIX.size) if isinstance(data, ReceivedBody) else data
    view = memoryview(held).cast("B")
    magic, version, length = _PREFIX.unpack_from(view)
    if magic != MAGIC:
        raise MalformedEnvelopeError(f"not a sealed envelope: magic {bytes(magic)!r}")
    if version != ENVELOPE_VERSION:
        raise MalformedEnvelopeError(f"unsupported sealed envelope version {version}")
    end = _PREFIX.size + length
    if total < end + TAG_SIZE:
        raise MalformedEnvelopeError(
            f"sealed envelope of {total} bytes is truncated (header says {length})"
        )
    if received is not None:
        view = memoryview(received.head(end))
    header = _unpack_header(view[_PREFIX.size : end])
    if received is not None:
        return SealedEnvelope(header, view[:end], memoryview(b""), received=received)
    return SealedEnvelope(header, view[:end], view[end:], view)


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
    """Decrypt and authenticate ``envelope`` into one ``bytes`` (the caller checks the header's
    meaning).

    :raises DecryptionError: the tag does not verify for these keys and this header.
    """
    (body,) = open_frames(envelope, recipient_key, sender_public)
    return body


def open_frames(
    envelope: SealedEnvelope,
    recipient_key: X25519PrivateKey,
    sender_public: bytes,
    layout: PlaintextLayout | None = None,
    static: StaticAgreement | None = None,
) -> list[bytes]:
    """Decrypt and authenticate ``envelope`` into frames: what ``layout`` read of the
    plaintext's header, then one ``bytes`` per size it returned (one frame without a layout).

    Every frame is decrypted in place into its own, final ``bytes``: nothing is copied after
    decryption, and none of it is returned unless the tag verifies. Sizes that do not add up
    to the plaintext leave the rest as one frame, for the caller's decoder to refuse.

    :param static: the :class:`StaticAgreement` of ``recipient_key`` and ``sender_public``
        kept by the caller; computed when ``None``.
    :raises DecryptionError: the tag does not verify for these keys and this header.
    """
    header = envelope.header
    try:
        ephemeral = X25519PublicKey.from_public_bytes(header.ephemeral)
        if static is None:
            static = static_agreement(recipient_key, sender_public)
        ikm = recipient_key.exchange(ephemeral) + static.secret
    except ValueError as exc:  # a low-order point gives an all-zero secret
        raise DecryptionError(f"invalid key agreement: {exc}") from exc
    salt = header.ephemeral + sender_public + static.own_public
    key, nonce = _derive(ikm, salt)
    failed = DecryptionError(
        f"message {header.message_id.hex()} from {header.sender} fails authentication "
        "(tampered, or not sealed by the sender it names)"
    )
    if envelope.received is None and envelope.sealed_size - TAG_SIZE <= min(_ONE_SHOT, _CHUNK):
        try:
            plaintext = AESGCM(key).decrypt(nonce, envelope.ciphertext, envelope.aad)
        except InvalidTag:
            raise failed from None
        return _split(_Plaintext(plaintext), layout)
    decryptor = Cipher(algorithms.AES(key), modes.GCM(nonce)).decryptor()
    decryptor.authenticate_additional_data(bytes(envelope.aad))
    stream = _Stream(envelope, decryptor)
    frames = _split(stream, layout)
    try:
        decryptor.finalize_with_tag(stream.tag)
    except InvalidTag:
        raise failed from None
    return frames


class _Reader(Protocol):
    """A plaintext read front to back (:func:`_split`)."""

    @property
    def remaining(self) -> int: ...

    def read(self, size: int) -> bytes: ...


def _split(stream: _Reader, layout: PlaintextLayout | None) -> list[bytes]:
    """The frames :func:`open_frames` returns, read from ``stream``."""
    head: list[bytes] = []

    def read(size: int) -> bytes:
        piece = stream.read(min(max(size, 0), stream.remaining))
        head.append(piece)
        return piece

    sizes: Sequence[int] = ()
    if layout is not None:
        try:
            sizes = layout(read)
        except SyftFlwrError:
            sizes = ()
    if layout is None or any(size < 0 for size in sizes) or sum(sizes) != stream.remaining:
        sizes = (stream.remaining,)
    frames = [b"".join(head)] if head else []
    frames.extend(stream.read(size) for size in sizes)
    return frames


class _Plaintext:
    """A plaintext decrypted whole (a small one), read front to back."""

    def __init__(self, data: bytes) -> None:
        self._data = data
        self._done = 0

    @property
    def remaining(self) -> int:
        return len(self._data) - self._done

    def read(self, size: int) -> bytes:
        if self._done == 0 and size == len(self._data):
            piece = self._data  # the whole of it: no copy
        else:
            piece = self._data[self._done : self._done + size]
        self._done += size
        return piece


class _Stream:
    """An envelope's ciphertext, decrypted front to back into fresh ``bytes``."""

    def __init__(self, envelope: SealedEnvelope, decryptor: Any) -> None:
        self._received = envelope.received
        self._size = envelope.sealed_size - TAG_SIZE
        if self._received is None:
            self._ciphertext = envelope.ciphertext[:-TAG_SIZE]
            self._tag = bytes(envelope.ciphertext[-TAG_SIZE:])
            self._buffer = memoryview(b"")
        else:  # read into one reused buffer: no ciphertext is held but it
            self._ciphertext = memoryview(b"")
            self._tag = b""
            self._buffer = memoryview(bytearray(min(_STEP, self._size)))
            self._received.skip(len(envelope.aad))
        self._decryptor = decryptor
        self._source = envelope.source
        self._base = len(envelope.aad)
        self._released = self._base
        self._done = 0

    @property
    def remaining(self) -> int:
        return self._size - self._done

    @property
    def tag(self) -> bytes:
        """The tag, read after all the ciphertext.

        :raises IncompleteBodyError: a received body's medium ended before it.
        """
        if self._received is not None and not self._tag:
            tag = bytearray(TAG_SIZE)
            if self._received.readinto(memoryview(tag)) != TAG_SIZE:
                raise IncompleteBodyError("the sealed body ended before its tag")
            self._tag = bytes(tag)
        return self._tag

    def read(self, size: int) -> bytes:
        """Decrypt the next ``size`` bytes into one new ``bytes``, without a copy after."""
        # BytesIO keeps the bytes it starts from as its buffer (nothing else refers to them),
        # lets getbuffer() write into it and getvalue() hand it out as it is: CPython shares
        # an exact-size buffer instead of copying it. bytes(size) is calloc'd, so its pages
        # are touched only as they are decrypted into, while the ciphertext is released.
        target = io.BytesIO(bytes(size))
        with target.getbuffer() as view:
            if self._received is None:
                self._decrypt_held(view, size)
            else:
                self._decrypt_received(view, size)
        data = target.getvalue()
        target.close()
        return data

    def _decrypt_held(self, view: memoryview, size: int) -> None:
        for start in range(0, size, _CHUNK):
            step = min(_CHUNK, size - start)
            begin = self._done
            self._update(self._ciphertext[begin : begin + step], view[start : start + step])
            self._done += step
            if self._source is not None:
                # from the last page boundary released to, so no page between steps stays
                release(self._source, self._released, self._base + self._done)
                self._released = (self._base + self._done) // PAGESIZE * PAGESIZE

    def _decrypt_received(self, view: memoryview, size: int) -> None:
        assert self._received is not None
        for start in range(0, size, len(self._buffer) or 1):
            step = min(len(self._buffer), size - start)
            chunk = self._buffer[:step]
            if self._received.readinto(chunk) != step:
                raise IncompleteBodyError("the sealed body ended inside its ciphertext")
            self._update(chunk, view[start : start + step])
            self._done += step

    def _update(self, ciphertext: memoryview, target: memoryview) -> None:
        written = self._decryptor.update_into(ciphertext, target)
        if written != len(ciphertext):  # GCM is a stream mode: a short write is a bug
            raise DecryptionError(f"decrypted {written} of {len(ciphertext)} bytes")
