"""Identity keys: an Ed25519 identity key and the X25519 agreement keys it signs.

The agreement key is what messages are sealed to; the identity key only vouches for it (its
signature goes into the public key document). Rotation makes a fresh agreement key current and
keeps the previous ones usable until their ``valid_until``, so messages sealed to the old key
while a peer still had the old document are not lost.
"""

from __future__ import annotations

import hashlib
import time
from dataclasses import dataclass, replace
from functools import cached_property

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey, X25519PublicKey
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

from syft_flwr.crypto.errors import NotOurKeyError

__all__ = [
    "DEFAULT_GRACE",
    "KEY_ID_SIZE",
    "AgreementKey",
    "IdentityKeys",
    "key_id",
    "raw_public",
]

KEY_ID_SIZE = 8
"""Bytes of a key id: a truncated SHA-256 of the raw X25519 public key."""

DEFAULT_GRACE = 7 * 24 * 3600.0
"""How long a rotated-out agreement key is still accepted, in seconds."""


def raw_public(key: X25519PublicKey) -> bytes:
    """The 32 raw bytes of an X25519 public key."""
    return key.public_bytes(Encoding.Raw, PublicFormat.Raw)


def key_id(public: bytes) -> bytes:
    """The key id of a raw X25519 public key (what envelopes name, never the key itself)."""
    return hashlib.sha256(public).digest()[:KEY_ID_SIZE]


@dataclass(frozen=True)
class AgreementKey:
    """One X25519 agreement key of an identity.

    :param private: the private key.
    :param created: when it was generated (Unix seconds).
    :param valid_until: when a rotated-out key stops being accepted; ``None`` for the current key.
    """

    private: X25519PrivateKey
    created: float
    valid_until: float | None = None

    @cached_property
    def public(self) -> bytes:
        """The raw public key (derived once: every envelope sealed or opened names it)."""
        return raw_public(self.private.public_key())

    @cached_property
    def kid(self) -> bytes:
        """The key id."""
        return key_id(self.public)

    def usable(self, now: float) -> bool:
        """Whether the key is current or still inside its grace period."""
        return self.valid_until is None or now < self.valid_until


@dataclass(frozen=True)
class IdentityKeys:
    """Everything private about one identity.

    :param email: the datasite the keys belong to.
    :param identity: the Ed25519 identity key.
    :param agreement: the agreement keys, current first, then rotated-out ones.
    """

    email: str
    identity: Ed25519PrivateKey
    agreement: tuple[AgreementKey, ...]

    @classmethod
    def generate(cls, email: str, now: float | None = None) -> IdentityKeys:
        """Fresh keys for ``email``."""
        created = time.time() if now is None else now
        current = AgreementKey(X25519PrivateKey.generate(), created)
        return cls(email, Ed25519PrivateKey.generate(), (current,))

    @property
    def current(self) -> AgreementKey:
        """The agreement key peers should seal to."""
        return self.agreement[0]

    def find(self, kid: bytes, now: float | None = None) -> AgreementKey:
        """The usable agreement key named ``kid``.

        :raises NotOurKeyError: no such key, or its grace period is over.
        """
        moment = time.time() if now is None else now
        for key in self.agreement:
            if key.kid == kid:
                if key.usable(moment):
                    return key
                raise NotOurKeyError(
                    f"{self.email}: agreement key {kid.hex()} was rotated out and its "
                    "grace period is over"
                )
        raise NotOurKeyError(f"{self.email} has no agreement key {kid.hex()}")

    def rotated(self, grace: float = DEFAULT_GRACE, now: float | None = None) -> IdentityKeys:
        """These keys with a fresh current agreement key; the old one is kept for ``grace`` s.

        Keys whose grace period is already over are dropped.
        """
        moment = time.time() if now is None else now
        retired = replace(self.current, valid_until=moment + grace)
        kept = tuple(key for key in self.agreement[1:] if key.usable(moment))
        fresh = AgreementKey(X25519PrivateKey.generate(), moment)
        return replace(self, agreement=(fresh, retired, *kept))

    def pruned(self, now: float | None = None) -> IdentityKeys:
        """These keys without agreement keys whose grace period is over."""
        moment = time.time() if now is None else now
        return replace(self, agreement=tuple(k for k in self.agreement if k.usable(moment)))
