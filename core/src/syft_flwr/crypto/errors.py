"""Errors of the encryption layer: one class per way a sealed message can be refused.

Each is specific so that callers and tests can tell a forged sender from a replay from a
missing key, and every one derives from :class:`~syft_flwr.errors.SyftFlwrError`. A message
that raises any of them never reaches the application and is never re-sent in plaintext.
"""

from __future__ import annotations

from syft_flwr.errors import SyftFlwrError

__all__ = [
    "BadSignatureError",
    "CryptoError",
    "DecryptionError",
    "DowngradeError",
    "ExpiredError",
    "IdentityChangedError",
    "KeyDocumentsUnsupportedError",
    "KeyStoreError",
    "MalformedEnvelopeError",
    "MissingKeyError",
    "PlaintextTooLargeError",
    "ReplayError",
    "SenderMismatchError",
    "SyftCryptoIdentityError",
    "UnknownKeyError",
    "WrongRecipientError",
]


class CryptoError(SyftFlwrError):
    """Root of every error the encryption layer raises."""


class KeyStoreError(CryptoError):
    """The local key directory is missing, unreadable or has unsafe permissions."""


class SyftCryptoIdentityError(KeyStoreError):
    """The identity already has syft-crypto keys, which new keys would replace; adopt them."""


class MissingKeyError(CryptoError):
    """A datasite has published no (valid) key document, so nothing can be sealed to it."""


class KeyDocumentsUnsupportedError(MissingKeyError):
    """The transport cannot publish or fetch key documents (it does not implement
    ``publish_key_document``/``fetch_key_document``), so an encrypted run over it cannot
    start; the message names the transport class and the method to implement."""


class UnknownKeyError(CryptoError):
    """An envelope names a key id that is unknown or rotated out of its grace period."""


class NotOurKeyError(UnknownKeyError):
    """An envelope is sealed to a key of ours that we do not hold (any more): its sender used
    a stale copy of our key document. Waiting does not help; the sender must read it again."""


class BadSignatureError(CryptoError):
    """A key document's agreement key is not signed by its identity key."""


class MalformedEnvelopeError(CryptoError):
    """The bytes are not a well-formed sealed envelope (wrong magic, truncated, bad header)."""


class DecryptionError(CryptoError):
    """The AEAD tag does not verify: tampered bytes, tampered header, or a forged sender."""


class WrongRecipientError(CryptoError):
    """The envelope is for another datasite, app or endpoint, or answers another request."""


class SenderMismatchError(CryptoError):
    """The envelope's sender differs from the sender the transport established."""


class ReplayError(CryptoError):
    """The envelope's message id was already accepted from this sender."""


class ExpiredError(CryptoError):
    """The envelope's validity window has passed (or it claims to come from the future)."""


class DowngradeError(CryptoError):
    """A peer that publishes native keys sent (or would get) the weaker syft-crypto scheme."""


class PlaintextTooLargeError(CryptoError):
    """A body is larger than one sealed envelope can carry (2 GiB - 1)."""


class IdentityChangedError(BadSignatureError):
    """A peer presents another identity key than the one pinned on first use."""
