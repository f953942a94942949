"""syft-crypto's ``X3DH-SyftBox`` ``EncryptedPayload`` v1, for peers that speak nothing else.

This is the scheme syft-flwr 0.5.x uses through syft-rpc, reproduced byte for byte so that a
datasite running it can exchange messages with us. Per message::

    ikm = X25519(sender_spk, receiver_spk) || X25519(ephemeral, receiver_spk)
    key = HKDF-SHA256(ikm, salt=None, info=b"X3DH-SyftBox", length=32)
    ciphertext, tag = AES-256-GCM(key, iv=random 12 bytes, plaintext, no associated data)

serialised as JSON ``{"ek", "iv", "ciphertext", "tag"`` (standard base64)``, "sender",
"receiver", "version": "1.0"}``. Our "signed prekey" is our current agreement key, so the same
``did.json`` serves both schemes.

It is weaker than the native envelope, which is why it is only used with a peer whose key
document has no ``syftFlwr`` section: nothing outside the ciphertext is authenticated (sender,
receiver, app, endpoint and expiry can be rewritten; a payload can be moved to another request),
there is no message id and hence no replay protection in the scheme itself, the sender is
authenticated only through the static-static DH of long-term keys, and every byte is base64
twice over (about 1.8x on the wire). Callers must add what they can: compare ``sender`` with the
transport's sender and ``receiver`` with themselves (done here), and dedupe by ``ek``.
"""

from __future__ import annotations

import base64
import binascii
import json
import os
from dataclasses import dataclass

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey, X25519PublicKey
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from syft_flwr.crypto.document import KeyDocument
from syft_flwr.crypto.errors import (
    DecryptionError,
    MalformedEnvelopeError,
    SenderMismatchError,
    WrongRecipientError,
)
from syft_flwr.crypto.keys import IdentityKeys, raw_public
from syft_flwr.errors import WireFormatError
from syft_flwr.transport import ReceivedBody, ReceivedData
from syft_flwr.wire.flower_proto import envelope_to_protobuf, protobuf_to_envelope

__all__ = [
    "COMPAT_INFO",
    "COMPAT_VERSION",
    "CompatPayload",
    "compat_text_to_envelope",
    "envelope_to_compat_text",
    "is_compat_payload",
    "open_x3dh",
    "seal_x3dh",
]

COMPAT_INFO = b"X3DH-SyftBox"
COMPAT_VERSION = "1.0"
_TAG = 16


@dataclass(frozen=True)
class CompatPayload:
    """An opened ``EncryptedPayload``: who sent it and the plaintext."""

    sender: str
    receiver: str
    ephemeral: bytes
    body: bytes


def _key(dh_static: bytes, dh_ephemeral: bytes) -> bytes:
    return HKDF(algorithm=hashes.SHA256(), length=32, salt=None, info=COMPAT_INFO).derive(
        dh_static + dh_ephemeral
    )


def seal_x3dh(plaintext: bytes, keys: IdentityKeys, receiver: KeyDocument) -> bytes:
    """Encrypt ``plaintext`` for ``receiver`` as syft-crypto does; returns the payload JSON."""
    receiver_spk = X25519PublicKey.from_public_bytes(receiver.prekey)
    ephemeral = X25519PrivateKey.generate()
    key = _key(keys.current.private.exchange(receiver_spk), ephemeral.exchange(receiver_spk))
    iv = os.urandom(12)
    sealed = AESGCM(key).encrypt(iv, plaintext, None)
    fields = {
        "ek": raw_public(ephemeral.public_key()),
        "iv": iv,
        "ciphertext": sealed[:-_TAG],
        "tag": sealed[-_TAG:],
    }
    document = {name: base64.b64encode(value).decode() for name, value in fields.items()}
    document.update(sender=keys.email, receiver=receiver.email, version=COMPAT_VERSION)
    return json.dumps(document, separators=(",", ":")).encode()


def open_x3dh(data: ReceivedData, keys: IdentityKeys, sender: KeyDocument) -> CompatPayload:
    """Decrypt a syft-crypto payload that the transport says ``sender.email`` sent.

    The payload is JSON, parsed whole: a view is decoded straight to its text, a body left in
    its medium read once (:func:`_json_text`).

    :raises MalformedEnvelopeError: not an ``EncryptedPayload`` v1.
    :raises SenderMismatchError: it names another sender.
    :raises WrongRecipientError: it is for someone else.
    :raises DecryptionError: the tag does not verify.
    """
    try:
        document = json.loads(_json_text(data))
        raw = {
            name: base64.b64decode(document[name], validate=True)
            for name in ("ek", "iv", "ciphertext", "tag")
        }
        claimed_sender, claimed_receiver = str(document["sender"]), str(document["receiver"])
        if document.get("version", COMPAT_VERSION) != COMPAT_VERSION:
            raise ValueError(f"version {document['version']!r}")
        ephemeral = X25519PublicKey.from_public_bytes(raw["ek"])
    except (ValueError, KeyError, TypeError, binascii.Error) as exc:
        raise MalformedEnvelopeError(f"not a syft-crypto EncryptedPayload v1: {exc}") from exc
    if claimed_sender != sender.email:
        raise SenderMismatchError(f"payload claims {claimed_sender!r}, sent by {sender.email!r}")
    if claimed_receiver != keys.email:
        raise WrongRecipientError(f"payload is for {claimed_receiver!r}, this is {keys.email!r}")
    own = keys.current.private
    try:
        key = _key(
            own.exchange(X25519PublicKey.from_public_bytes(sender.prekey)), own.exchange(ephemeral)
        )
        body = AESGCM(key).decrypt(raw["iv"], raw["ciphertext"] + raw["tag"], None)
    except (InvalidTag, ValueError) as exc:
        raise DecryptionError(f"syft-crypto payload from {sender.email} fails: {exc!r}") from exc
    return CompatPayload(claimed_sender, claimed_receiver, raw["ek"], body)


def _json_text(data: ReceivedData) -> bytes | str:
    """What ``json.loads`` parses of a received payload, without a copy of it more."""
    if isinstance(data, memoryview):
        return str(data, "utf-8")  # json.loads takes no view; it decodes bytes to text too
    return data if isinstance(data, bytes) else bytes(data)


def is_compat_payload(data: bytes | bytearray | memoryview | ReceivedBody) -> bool:
    """Whether ``data`` looks like a JSON ``EncryptedPayload`` (not a proof that it is one)."""
    first = data.head(1) if isinstance(data, ReceivedBody) else bytes(data[:1])
    return first == b"{"


def envelope_to_compat_text(body: bytes) -> bytes:
    """What syft-flwr 0.5.x encrypts: the base64 of the Flower protobuf of a core envelope.

    :raises WireFormatError: ``body`` is not a valid envelope, or not expressible in protobuf.
    """
    return base64.b64encode(envelope_to_protobuf(body))


def compat_text_to_envelope(text: bytes) -> bytes:
    """The core envelope of a decrypted syft-flwr 0.5.x body (base64 of Flower protobuf).

    :raises WireFormatError: not base64 of a Flower message.
    """
    try:
        proto = base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError) as exc:
        raise WireFormatError(f"decrypted body is not base64 Flower protobuf: {exc}") from exc
    return protobuf_to_envelope(proto)
