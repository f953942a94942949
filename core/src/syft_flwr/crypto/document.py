"""The public key document: a syft-crypto ``did.json`` with syft-flwr's fields added.

Its base is exactly what syft-crypto writes to ``datasites/<email>/public/did.json`` (a
``did:web`` document whose ``#identity-key`` verification method is the Ed25519 identity key
and whose ``#signed-prekey`` key agreement is the current X25519 key, signed over its raw bytes),
so a syft-crypto peer finds our keys and we find theirs. syft-flwr adds one top-level member,
``syftFlwr``, that syft-crypto ignores::

    "syftFlwr": {"version": 1, "email": "...", "keys": [
        {"kid": <b64url>, "x": <b64url>, "validUntil": null | <unix s>, "signature": <b64url>}]}

listing the current key first and rotated-out keys still in their grace period after it. Each
native signature covers a domain tag, the email, the key and its ``validUntil``
(:func:`native_signed_bytes`), so a key cannot be moved to another identity or have its grace
period extended without the identity key.
"""

from __future__ import annotations

import base64
import json
import math
import struct
import time
from dataclasses import dataclass
from functools import cached_property
from typing import Any
from urllib.parse import quote

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

from syft_flwr.crypto.errors import BadSignatureError, MissingKeyError, UnknownKeyError
from syft_flwr.crypto.keys import IdentityKeys, key_id

__all__ = [
    "DID_DOMAIN",
    "NATIVE_VERSION",
    "KeyDocument",
    "PublishedKey",
    "build_document",
    "did_id",
    "native_signed_bytes",
    "parse_document",
]

DID_DOMAIN = "syftbox.net"
"""The ``did:web`` domain syft-crypto uses."""

NATIVE_VERSION = 1
_SIGNATURE_TAG = b"syft-flwr/agreement-key/v1\x00"
_CONTEXT = [
    "https://www.w3.org/ns/did/v1",
    "https://w3id.org/security/suites/ed25519-2020/v1",
    "https://w3id.org/security/suites/x25519-2020/v1",
]


def did_id(email: str) -> str:
    """The ``did:web`` id syft-crypto gives ``email`` on the default server."""
    return f"did:web:{DID_DOMAIN}:{quote(email, safe='')}"


def native_signed_bytes(email: str, public: bytes, valid_until: float | None) -> bytes:
    """What the identity key signs for one native agreement key."""
    until = math.inf if valid_until is None else valid_until
    return _SIGNATURE_TAG + email.encode() + b"\x00" + public + struct.pack(">d", until)


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).decode().rstrip("=")


def _unb64(text: object) -> bytes:
    if not isinstance(text, str):
        raise ValueError(f"expected a base64url string, got {type(text).__name__}")
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


@dataclass(frozen=True)
class PublishedKey:
    """One verified native agreement key of a peer."""

    public: bytes
    valid_until: float | None

    @cached_property
    def kid(self) -> bytes:
        """The key id (derived once)."""
        return key_id(self.public)


@dataclass(frozen=True)
class KeyDocument:
    """A peer's verified public keys.

    :param email: whose keys these are.
    :param identity: the raw Ed25519 identity key.
    :param prekey: the syft-crypto signed prekey (raw X25519), for the compatibility scheme.
    :param keys: the native agreement keys, current first; empty for a syft-crypto-only peer.
    """

    email: str
    identity: bytes
    prekey: bytes
    keys: tuple[PublishedKey, ...]

    def current(self) -> PublishedKey:
        """The key to seal to.

        :raises MissingKeyError: the peer publishes only a syft-crypto document.
        """
        if not self.keys:
            raise MissingKeyError(
                f"{self.email} publishes only a syft-crypto key document (no native keys)"
            )
        return self.keys[0]

    def find(self, kid: bytes, now: float | None = None) -> PublishedKey:
        """The peer's usable key named ``kid``.

        :raises UnknownKeyError: unknown, or rotated out and past its grace period.
        """
        moment = time.time() if now is None else now
        for key in self.keys:
            if key.kid == kid:
                if key.valid_until is None or moment < key.valid_until:
                    return key
                raise UnknownKeyError(f"{self.email}'s key {kid.hex()} was rotated out")
        raise UnknownKeyError(f"{self.email} publishes no key {kid.hex()}")


def build_document(keys: IdentityKeys) -> dict[str, Any]:
    """The public key document of ``keys`` (syft-crypto's shape plus ``syftFlwr``)."""
    did = did_id(keys.email)
    identity_raw = keys.identity.public_key().public_bytes(Encoding.Raw, PublicFormat.Raw)
    current = keys.current.public
    native = [
        {
            "kid": _b64(k.kid),
            "x": _b64(k.public),
            "validUntil": k.valid_until,
            "signature": _b64(
                keys.identity.sign(native_signed_bytes(keys.email, k.public, k.valid_until))
            ),
        }
        for k in keys.agreement
    ]
    return {
        "@context": list(_CONTEXT),
        "id": did,
        "verificationMethod": [
            {
                "id": f"{did}#identity-key",
                "type": "Ed25519VerificationKey2020",
                "controller": did,
                "publicKeyJwk": {
                    "kty": "OKP",
                    "crv": "Ed25519",
                    "x": _b64(identity_raw),
                    "kid": "identity-key",
                    "use": "sig",
                },
            }
        ],
        "keyAgreement": [
            {
                "id": f"{did}#signed-prekey",
                "type": "X25519KeyAgreementKey2020",
                "controller": did,
                "publicKeyJwk": {
                    "kty": "OKP",
                    "crv": "X25519",
                    "x": _b64(current),
                    "kid": "signed-prekey",
                    "use": "enc",
                    "signature": _b64(keys.identity.sign(current)),
                },
            }
        ],
        "syftFlwr": {"version": NATIVE_VERSION, "email": keys.email, "keys": native},
    }


def parse_document(data: bytes | str, email: str, now: float | None = None) -> KeyDocument:
    """Verify a key document fetched for ``email``.

    Every signature is checked; native keys past their grace period are dropped.

    :raises MissingKeyError: not a key document, or it belongs to another identity.
    :raises BadSignatureError: a key is not signed by the document's identity key.
    """
    moment = time.time() if now is None else now
    try:
        document = json.loads(data)
        if not _is_did_of(document["id"], email):
            raise MissingKeyError(f"the key document found for {email} is {document['id']!r}'s")
        identity_raw = _unb64(_method(document, "verificationMethod", "#identity-key")["x"])
        prekey_jwk = _method(document, "keyAgreement", "#signed-prekey")
        prekey = _unb64(prekey_jwk["x"])
        prekey_signature = _unb64(prekey_jwk["signature"])
        native = document.get("syftFlwr")
        entries: list[Any] = []
        if native is not None:
            if native["version"] != NATIVE_VERSION or native["email"] != email:
                raise MissingKeyError(f"{email}: unsupported syftFlwr key section {native!r}")
            entries = list(native["keys"])
        identity = Ed25519PublicKey.from_public_bytes(identity_raw)
    except MissingKeyError:
        raise
    except (ValueError, KeyError, TypeError) as exc:
        raise MissingKeyError(f"{email} has no valid key document: {exc}") from exc
    _verify(identity, prekey_signature, prekey, email, "signed prekey")
    keys: list[PublishedKey] = []
    for entry in entries:
        key = _native_key(identity, entry, email)
        if key.valid_until is None or moment < key.valid_until:
            keys.append(key)
    if keys and keys[0].valid_until is not None:
        raise MissingKeyError(f"{email}'s key document has no current native key")
    return KeyDocument(email, identity_raw, prekey, tuple(keys))


def _is_did_of(did: object, email: str) -> bool:
    """``did:web:<any host>:<email>``: syft-crypto puts its server's host in the id."""
    return (
        isinstance(did, str)
        and did.startswith("did:web:")
        and did.rsplit(":", 1)[-1] == quote(email, safe="")
    )


def _method(document: dict[str, Any], section: str, suffix: str) -> dict[str, Any]:
    for method in document[section]:
        if method["id"].endswith(suffix):
            jwk: dict[str, Any] = method["publicKeyJwk"]
            return jwk
    raise KeyError(f"no {suffix} in {section}")


def _native_key(identity: Ed25519PublicKey, entry: Any, email: str) -> PublishedKey:
    try:
        public = _unb64(entry["x"])
        until = entry["validUntil"]
        if until is not None and (isinstance(until, bool) or not isinstance(until, int | float)):
            raise TypeError(f"validUntil must be a number or null, got {until!r}")
        signature = _unb64(entry["signature"])
        if len(public) != 32 or _unb64(entry["kid"]) != key_id(public):
            raise ValueError("key id does not match the key")
    except (ValueError, KeyError, TypeError) as exc:
        raise MissingKeyError(f"{email} has a malformed native key: {exc}") from exc
    valid_until = None if until is None else float(until)
    _verify(identity, signature, native_signed_bytes(email, public, valid_until), email, "key")
    return PublishedKey(public, valid_until)


def _verify(key: Ed25519PublicKey, signature: bytes, data: bytes, email: str, what: str) -> None:
    try:
        key.verify(signature, data)
    except InvalidSignature:
        raise BadSignatureError(f"{email}'s {what} is not signed by its identity key") from None
