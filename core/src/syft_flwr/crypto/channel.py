"""``SecureChannel``: seal to and open from named datasites, with every check in one place.

The grid and the client runner only ever call :meth:`SecureChannel.seal` and
:meth:`SecureChannel.open`; this is where the envelope's header is compared with what the
transport established (who sent it, to which app and endpoint, in answer to what), where
expiry and replays are refused, and where peers' key documents are fetched, verified and cached.
Cheap routing checks run before decryption, so bytes meant for someone else never cost an AEAD
pass; the replay store only records messages that authenticated.

A peer whose key document has no native keys (a syft-crypto-only datasite, e.g. syft-flwr
0.5.x) is spoken to in the compatibility scheme (:mod:`~syft_flwr.crypto.compat`) through
:meth:`SecureChannel.seal_compat` and :meth:`SecureChannel.open_compat`; a peer that publishes
native keys is never accepted in that weaker scheme (:class:`DowngradeError`).
"""

from __future__ import annotations

import hashlib
import logging
import os
import threading
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass

from syft_flwr.crypto.compat import (
    compat_text_to_envelope,
    envelope_to_compat_text,
    open_x3dh,
    seal_x3dh,
)
from syft_flwr.crypto.document import KeyDocument, parse_document
from syft_flwr.crypto.envelope import (
    MESSAGE_ID_SIZE,
    Buffer,
    Header,
    PlaintextLayout,
    StaticAgreement,
    open_frames,
    parse_envelope,
    seal_body,
    static_agreement,
)
from syft_flwr.crypto.errors import (
    CryptoError,
    DowngradeError,
    ExpiredError,
    MissingKeyError,
    SenderMismatchError,
    UnknownKeyError,
    WrongRecipientError,
)
from syft_flwr.crypto.keys import AgreementKey, IdentityKeys
from syft_flwr.crypto.pins import PinStore
from syft_flwr.crypto.replay import ReplayStore
from syft_flwr.transport import Body, ReceivedBody, ReceivedData, join_body
from syft_flwr.wire import message_layout

__all__ = ["DEFAULT_MAX_SKEW", "DocumentFetcher", "Opened", "ReplayMark", "SecureChannel"]

logger = logging.getLogger(__name__)

DEFAULT_MAX_SKEW = 300.0
"""How far in the future an envelope's ``created`` may lie (clock skew), in seconds."""

_KEPT_AGREEMENTS = 4096
"""How many static agreements (own key, peer key) a channel keeps before it starts over."""

DocumentFetcher = Callable[[str], "bytes | None"]
"""Returns a datasite's published key document, or ``None`` when it has none."""


@dataclass(frozen=True)
class Opened:
    """An envelope that passed every check: its header and its plaintext.

    ``frames`` is the plaintext as :meth:`SecureChannel.open` split it: by default the wire
    codec's header, then one ``bytes`` per array (:func:`~syft_flwr.wire.decode_message` takes
    them as they are). ``body`` joins them, for small bodies that must be one piece.
    """

    header: Header
    frames: tuple[bytes, ...]

    @property
    def body(self) -> bytes:
        """The plaintext in one piece (a copy, unless it is one frame)."""
        return b"".join(self.frames)


@dataclass(frozen=True)
class ReplayMark:
    """An accepted message's replay-store entry, to record later (:meth:`SecureChannel.record`).

    A server records a reply only once it is journaled: a kill in between must leave the
    reply openable by the restarted server, not refused as a replay of itself.
    """

    sender: str
    message_id: bytes
    expires: float
    at: float


class SecureChannel:
    """Seals and opens messages as one identity.

    :param keys: this identity's private keys.
    :param replay: where accepted message ids are recorded.
    :param fetch: how to get a peer's published key document.
    :param max_skew: tolerated clock skew for ``created``, in seconds.
    :param pins: pinned peer identity keys (trust on first use); in memory when ``None``.
    """

    def __init__(
        self,
        keys: IdentityKeys,
        replay: ReplayStore,
        fetch: DocumentFetcher,
        *,
        max_skew: float = DEFAULT_MAX_SKEW,
        pins: PinStore | None = None,
    ) -> None:
        self.keys = keys
        self.replay = replay
        self._fetch = fetch
        self.max_skew = max_skew
        self.pins = pins if pins is not None else PinStore(None)
        self._peers: dict[str, KeyDocument] = {}
        # per (own key id, peer public key): the same for every message between the two
        self._statics: dict[tuple[bytes, bytes], StaticAgreement] = {}
        self._compat_peers: set[str] = set()
        self._lock = threading.Lock()

    @property
    def identity(self) -> str:
        """The email this channel acts as."""
        return self.keys.email

    # -- peers ------------------------------------------------------------------------------

    def peer(self, datasite: str, *, refresh: bool = False) -> KeyDocument:
        """The verified key document of ``datasite`` (cached until ``refresh``).

        :raises MissingKeyError: it publishes none.
        :raises BadSignatureError: its document does not verify.
        :raises IdentityChangedError: its identity key differs from the pinned one.
        """
        with self._lock:
            cached = None if refresh else self._peers.get(datasite)
        if cached is not None:
            return cached
        raw = self._fetch(datasite)
        if raw is None:
            raise MissingKeyError(f"{datasite} has published no key document")
        document = parse_document(raw, datasite)
        self.pins.check(datasite, document.identity)
        with self._lock:
            self._peers[datasite] = document
        return document

    def forget_peer(self, datasite: str) -> None:
        """Drop the cached document of ``datasite``: the next use reads it again.

        Over a sync a document can be one cycle behind; the grid calls this when a peer
        refuses or does not answer, so a stale key is not used for the rest of the run.
        """
        with self._lock:
            self._peers.pop(datasite, None)

    def _confirm(self, datasite: str) -> None:
        """A message from ``datasite`` opened: pin the identity it was sealed with."""
        with self._lock:
            document = self._peers.get(datasite)
        if document is not None:
            self.pins.confirm(datasite, document.identity)

    def speaks_native(self, datasite: str) -> bool:
        """Whether ``datasite`` publishes native keys (else only syft-crypto's scheme).

        :raises MissingKeyError: it publishes no key document.
        """
        native = bool(self.peer(datasite).keys)
        with self._lock:
            first_time = not native and datasite not in self._compat_peers
            if first_time:
                self._compat_peers.add(datasite)
        if first_time:
            logger.warning(
                "%s publishes only a syft-crypto key document: using the weaker "
                "X3DH-SyftBox compatibility scheme with it",
                datasite,
            )
        return native

    def missing_keys(self, datasites: Iterable[str]) -> dict[str, str]:
        """The datasites that cannot be reached securely, each with the reason."""
        missing: dict[str, str] = {}
        for datasite in datasites:
            try:
                self.peer(datasite, refresh=True)
            except CryptoError as exc:
                missing[datasite] = str(exc)
        return missing

    # -- sealing ----------------------------------------------------------------------------

    def seal(
        self,
        recipient: str,
        app: str,
        endpoint: str,
        body: Buffer | Sequence[Buffer],
        expires_at: float,
        *,
        reply_to: bytes = b"",
    ) -> tuple[bytes, bytes]:
        """:meth:`seal_frames` with the envelope joined into one ``bytes``.

        :raises MissingKeyError: the recipient has no usable key document.
        """
        frames, message_id = self.seal_frames(
            recipient, app, endpoint, body, expires_at, reply_to=reply_to
        )
        return join_body(frames), message_id

    def seal_frames(
        self,
        recipient: str,
        app: str,
        endpoint: str,
        body: Buffer | Sequence[Buffer],
        expires_at: float,
        *,
        reply_to: bytes = b"",
    ) -> tuple[Body, bytes]:
        """Seal ``body`` (a buffer or the frames of one) to ``recipient``; return the envelope
        as a transport writes it without joining (:func:`~syft_flwr.crypto.envelope.seal_body`:
        a few frames, or from 1 MiB on a one-pass :class:`~syft_flwr.crypto.envelope.
        SealedStream` encrypted as it is written) and its message id.

        :raises MissingKeyError: the recipient has no usable key document.
        """
        document = self.peer(recipient)
        message_id = os.urandom(MESSAGE_ID_SIZE)
        fields = {
            "sender": self.identity,
            "recipient": recipient,
            "app": app,
            "endpoint": endpoint,
            "message_id": message_id,
            "reply_to": reply_to,
            "created": float(time.time()),
            "expires": float(expires_at),
            "sender_kid": self.keys.current.kid,
            "recipient_kid": document.current().kid,
        }
        own, peer = self.keys.current, document.current().public
        sealed = seal_body(fields, body, own.private, peer, self._static(own, peer))
        return sealed, message_id

    def _static(self, own: AgreementKey, peer_public: bytes) -> StaticAgreement | None:
        """The kept :class:`StaticAgreement` of ``own`` and ``peer_public`` (made on first use);
        ``None`` for a peer key that is not usable, which sealing or opening then refuses."""
        pair = (own.kid, peer_public)
        found = self._statics.get(pair)
        if found is None:
            try:
                found = static_agreement(own.private, peer_public)
            except ValueError:
                return None
            if len(self._statics) >= _KEPT_AGREEMENTS:
                self._statics.clear()
            self._statics[pair] = found
        return found

    # -- opening ----------------------------------------------------------------------------

    def open(
        self,
        data: bytes | bytearray | memoryview | ReceivedBody,
        *,
        sender: str,
        app: str,
        endpoint: str,
        reply_to: bytes | None = None,
        now: float | None = None,
        defer: list[ReplayMark] | None = None,
        layout: PlaintextLayout | None = message_layout,
    ) -> Opened:
        """Check and decrypt an envelope that the transport says ``sender`` sent.

        The plaintext is decrypted straight into its frames as ``layout`` splits it (by
        default one ``bytes`` per array of the wire envelope inside; ``None``: one frame), and
        a body the transport read into a :class:`~syft_flwr.body_buffer.BodyBuffer` is
        released as it is decrypted: the ciphertext and the plaintext of a model are never
        held whole at once. A :class:`~syft_flwr.transport.ReceivedBody` (a body left in its
        file) is read once, in chunks into one reused buffer, every check on the header made
        before its ciphertext is read.

        :param reply_to: the message id this must answer (for replies); ``None`` for requests.
        :param defer: append the replay-store entry here instead of recording it now; the
            caller records it with :meth:`record` once the message is safely kept.
        :raises MalformedEnvelopeError: not a well-formed envelope.
        :raises SenderMismatchError: the header names another sender.
        :raises WrongRecipientError: meant for another datasite, app, endpoint or request.
        :raises ExpiredError: outside its validity window.
        :raises UnknownKeyError: names a key that is unknown or rotated out.
        :raises MissingKeyError: the sender has no usable key document.
        :raises DecryptionError: tampered, or not sealed by ``sender``.
        :raises ReplayError: accepted before.
        """
        moment = time.time() if now is None else now
        envelope = parse_envelope(data)
        header = envelope.header
        self._check_routing(header, sender, app, endpoint, reply_to)
        if moment >= header.expires:
            raise ExpiredError(f"message {header.message_id.hex()} from {sender} has expired")
        if header.created > moment + self.max_skew:
            raise ExpiredError(
                f"message {header.message_id.hex()} from {sender} claims to be created "
                f"{header.created - moment:.0f} s in the future"
            )
        own_key = self.keys.find(header.recipient_kid, moment)
        sender_key = self._sender_key(sender, header.sender_kid, moment)
        static = self._static(own_key, sender_key)
        frames = open_frames(envelope, own_key.private, sender_key, layout, static)
        self._accept(ReplayMark(sender, header.message_id, header.expires, moment), defer)
        self._confirm(sender)
        return Opened(header, tuple(frames))

    def record(self, mark: ReplayMark) -> None:
        """Record a deferred replay-store entry (see ``defer`` of :meth:`open`).

        :raises ReplayError: it was recorded before.
        """
        self.replay.check_and_record(mark.sender, mark.message_id, mark.expires, mark.at)

    def _accept(self, mark: ReplayMark, defer: list[ReplayMark] | None) -> None:
        if defer is None:
            self.record(mark)
        else:
            defer.append(mark)

    def _check_routing(
        self, header: Header, sender: str, app: str, endpoint: str, reply_to: bytes | None
    ) -> None:
        if header.sender != sender:
            raise SenderMismatchError(
                f"envelope claims sender {header.sender!r}, the transport says {sender!r}"
            )
        if header.recipient != self.identity:
            raise WrongRecipientError(
                f"envelope is for {header.recipient!r}, this is {self.identity!r}"
            )
        if (header.app, header.endpoint) != (app, endpoint):
            raise WrongRecipientError(
                f"envelope is for {header.app}/{header.endpoint}, it arrived at {app}/{endpoint}"
            )
        if reply_to is not None and header.reply_to != reply_to:
            raise WrongRecipientError(
                f"reply answers message {header.reply_to.hex() or '-'}, expected {reply_to.hex()}"
            )
        if reply_to is None and header.reply_to:
            raise WrongRecipientError("a reply envelope arrived as a request")

    def _sender_key(self, sender: str, kid: bytes, now: float) -> bytes:
        try:
            return self.peer(sender).find(kid, now).public
        except UnknownKeyError:
            # The sender may have rotated since we cached its document.
            return self.peer(sender, refresh=True).find(kid, now).public

    # -- the syft-crypto compatibility scheme ---------------------------------------------

    def seal_compat(self, recipient: str, envelope: bytes) -> bytes:
        """Seal a core envelope as syft-flwr 0.5.x would (base64 protobuf in an X3DH payload).

        :raises DowngradeError: ``recipient`` publishes native keys.
        :raises MissingKeyError: it publishes no key document.
        """
        document = self.peer(recipient)
        if document.keys:
            raise DowngradeError(f"{recipient} speaks the native scheme; refusing X3DH-SyftBox")
        return seal_x3dh(envelope_to_compat_text(envelope), self.keys, document)

    def open_compat(
        self,
        data: ReceivedData,
        *,
        sender: str,
        expires_at: float,
        now: float | None = None,
        defer: list[ReplayMark] | None = None,
    ) -> bytes:
        """Open a syft-crypto payload from ``sender``; return the core envelope inside.

        The scheme has no message id or expiry, so replays are refused by the ephemeral key
        (fresh per payload) until ``expires_at``, the transport's expiry of the request.

        :raises DowngradeError: ``sender`` publishes native keys.
        :raises ReplayError: the same payload was accepted before.
        :raises WireFormatError: the plaintext is not a syft-flwr 0.5.x body.
        """
        document = self.peer(sender)
        if document.keys:
            raise DowngradeError(f"{sender} speaks the native scheme; refusing X3DH-SyftBox")
        opened = open_x3dh(data, self.keys, document)
        payload_id = hashlib.sha256(opened.ephemeral).digest()[:MESSAGE_ID_SIZE]
        moment = time.time() if now is None else now
        envelope = compat_text_to_envelope(opened.body)
        self._accept(ReplayMark(sender, payload_id, expires_at, moment), defer)
        self._confirm(sender)
        return envelope

    def close(self) -> None:
        """Release the replay store."""
        self.replay.close()
