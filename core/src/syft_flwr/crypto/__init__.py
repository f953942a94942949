"""End-to-end encryption of syft-flwr messages, independent of the transport.

- :mod:`~syft_flwr.crypto.keys` and :mod:`~syft_flwr.crypto.keystore`: identity keys and the
  private key directory (mode 0600, outside any synced tree);
- :mod:`~syft_flwr.crypto.document`: the public key document (syft-crypto's ``did.json`` shape);
- :mod:`~syft_flwr.crypto.envelope`: the sealed envelope (ephemeral + static X25519, HKDF-SHA256,
  AES-256-GCM over an authenticated header);
- :mod:`~syft_flwr.crypto.replay`: the persistent replay store;
- :mod:`~syft_flwr.crypto.channel`: every check of an incoming envelope, in one place;
- :mod:`~syft_flwr.crypto.policy`: whether a run encrypts, and its channel;
- :mod:`~syft_flwr.crypto.compat` and :mod:`~syft_flwr.crypto.syft_crypto_keys`: syft-crypto's
  scheme for peers that speak only it, and adopting an identity syft-crypto made.
"""

from __future__ import annotations

from syft_flwr.crypto.channel import Opened, SecureChannel
from syft_flwr.crypto.document import KeyDocument, build_document, parse_document
from syft_flwr.crypto.errors import (
    BadSignatureError,
    CryptoError,
    DecryptionError,
    ExpiredError,
    IdentityChangedError,
    KeyDocumentsUnsupportedError,
    KeyStoreError,
    MalformedEnvelopeError,
    MissingKeyError,
    NotOurKeyError,
    ReplayError,
    SenderMismatchError,
    SyftCryptoIdentityError,
    UnknownKeyError,
    WrongRecipientError,
)
from syft_flwr.crypto.keys import IdentityKeys
from syft_flwr.crypto.keystore import KeyStore, default_key_root
from syft_flwr.crypto.replay import ReplayStore

__all__ = [
    "BadSignatureError",
    "CryptoError",
    "DecryptionError",
    "ExpiredError",
    "IdentityChangedError",
    "IdentityKeys",
    "KeyDocument",
    "KeyDocumentsUnsupportedError",
    "KeyStore",
    "KeyStoreError",
    "MalformedEnvelopeError",
    "MissingKeyError",
    "NotOurKeyError",
    "Opened",
    "ReplayError",
    "ReplayStore",
    "SecureChannel",
    "SenderMismatchError",
    "SyftCryptoIdentityError",
    "UnknownKeyError",
    "WrongRecipientError",
    "build_document",
    "default_key_root",
    "parse_document",
]
