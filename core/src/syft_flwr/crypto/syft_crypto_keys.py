"""An identity syft-crypto already made: finding it, adopting it, never replacing it by accident.

syft-crypto (the encryption of syft-rpc and syft-event, which syft-flwr 0.5.x runs on) keeps a
datasite's private keys as JWKs in ``<data_dir>/../.syftbox/<h>/pvt.jwks.json``, where ``<h>``
is the first 8 hex digits of SHA-256 of ``"<server_url>::<email>"`` (``server_url`` as pydantic
prints it) and ``data_dir``/``server_url`` come from the SyftBox client config syft-core loads
(``SYFTBOX_CLIENT_CONFIG_PATH``, else ``~/.syftbox/config.json``)::

    {"identity_key":  {"kty": "OKP", "crv": "Ed25519", "x": ..., "d": ...},
     "signed_prekey": {"kty": "OKP", "crv": "X25519",  "x": ..., "d": ...}}

and publishes the public halves in ``datasites/<email>/public/did.json``, where our key
document goes too. Replacing that document with new keys would cut the datasite off from its
syft-crypto peers (their messages would be sealed to keys it no longer publishes) and stop its
syft-crypto apps (syft-crypto refuses to run when ``did.json`` and its key file disagree).

So such an identity is adopted instead: its Ed25519 key becomes our identity key and its
signed prekey our current agreement key. Our document of those keys *is* syft-crypto's
(same keys, and Ed25519 signatures are deterministic, so the same signature) plus the
``syftFlwr`` member, which syft-crypto ignores. Without an explicit adoption, ``keys init``
and publishing refuse with :class:`SyftCryptoIdentityError`, naming the command that adopts.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
import time
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

from syft_flwr.crypto.document import parse_document
from syft_flwr.crypto.errors import CryptoError, KeyStoreError, SyftCryptoIdentityError
from syft_flwr.crypto.keys import AgreementKey, IdentityKeys
from syft_flwr.crypto.keystore import check_private_file
from syft_flwr.errors import ConfigError
from syft_flwr.syftbox_client_config import (
    CONFIG_PATH_ENV,
    DEFAULT_CONFIG_PATH,
    read_client_config,
)

__all__ = ["ADOPT_COMMAND", "adopt", "check_replaceable", "key_file_path", "refuse_existing"]

ADOPT_COMMAND = "syft-flwr keys init --import-syft-crypto"
_KEY_FILE = "pvt.jwks.json"
_DEFAULT_SERVER_URL = "https://syftbox.openmined.org"
"""syft-core's default, for configs that name no server."""
_DEFAULT_PORTS = {"http": 80, "https": 443}


def key_file_path(data_dir: Path, server_url: str, email: str) -> Path:
    """syft-crypto's ``private_key_path`` for ``email`` on ``server_url`` with ``data_dir``."""
    partition = f"{_pydantic_url(server_url)}::{email}"
    digest = hashlib.sha256(partition.encode()).hexdigest()[:8]
    return data_dir.parent / ".syftbox" / digest / _KEY_FILE


def refuse_existing(email: str, environ: Mapping[str, str] | None = None) -> None:
    """Refuse new keys for ``email`` when syft-crypto has an identity for it on this machine.

    The evidence is syft-crypto's key file, or a syft-crypto ``did.json`` (valid, without
    native keys), found through the SyftBox client config as syft-core finds it.

    :raises SyftCryptoIdentityError: there is one; the message names :data:`ADOPT_COMMAND`.
    """
    files = _locate(email, environ)
    evidence = files.evidence() if files is not None else None
    if evidence is not None:
        raise _refusal(email, evidence)


def adopt(
    email: str, key_file: Path | None = None, environ: Mapping[str, str] | None = None
) -> tuple[IdentityKeys, Path]:
    """``email``'s syft-crypto keys as our identity keys, and the file they came from.

    :param key_file: syft-crypto's ``pvt.jwks.json``; by default the one syft-crypto uses
        for the SyftBox client config.
    :raises KeyStoreError: no key file can be found, it is readable by others or not
        syft-crypto's format, or ``email``'s published ``did.json`` carries other keys.
    """
    files = _locate(email, environ)
    if key_file is None:
        if files is None:
            raise KeyStoreError(
                f"cannot find syft-crypto's keys of {email}: no SyftBox client config for "
                f"{email} ({CONFIG_PATH_ENV}, else {DEFAULT_CONFIG_PATH}); pass the key file: "
                f"{ADOPT_COMMAND} <path>/{_KEY_FILE}"
            )
        key_file = files.key_file
    published = None
    if files is not None and files.did_file.is_file():
        published = files.did_file.read_bytes()
    return _read_keys(key_file, email, published), key_file


def check_replaceable(existing: bytes | None, replacement: bytes, email: str, where: str) -> None:
    """Refuse to publish ``replacement`` over a syft-crypto identity's document.

    Replacing is fine when nothing is published, when the published document is ours (it has
    native keys) or unusable, and when it has the same identity key (an adopted identity).

    :raises SyftCryptoIdentityError: ``existing`` is another identity's syft-crypto document.
    """
    if existing is None:
        return
    try:
        current = parse_document(existing, email)
    except CryptoError:
        return
    if current.keys or current.identity == parse_document(replacement, email).identity:
        return
    raise _refusal(email, where)


@dataclass(frozen=True)
class _Files:
    """Where syft-crypto keeps one identity: its private keys and its public ``did.json``."""

    email: str
    key_file: Path
    did_file: Path

    def evidence(self) -> Path | None:
        """The file proving a syft-crypto identity exists here, or ``None``.

        That is the key file, or else a published ``did.json`` that is syft-crypto's (valid,
        without native keys); a ``did.json`` of ours has nothing of syft-crypto's to lose.
        """
        if self.key_file.is_file():
            return self.key_file
        try:
            document = parse_document(self.did_file.read_bytes(), self.email)
        except (OSError, CryptoError):
            return None
        return None if document.keys else self.did_file


def _locate(email: str, environ: Mapping[str, str] | None) -> _Files | None:
    """syft-crypto's files for ``email``, from the SyftBox client config syft-core loads.

    ``None`` when there is no readable config, or it belongs to another identity: then
    syft-crypto has no identity for ``email`` on this machine that we could know of.
    """
    try:
        config = read_client_config(environ)
    except ConfigError:
        return None
    if config is None or config.data_dir is None or (config.email or "").lower() != email.lower():
        return None
    data_dir = config.data_dir
    try:
        key_file = key_file_path(data_dir, config.server_url or _DEFAULT_SERVER_URL, email)
    except ValueError:  # a server URL syft-core would not load either
        return None
    return _Files(email, key_file, data_dir / "datasites" / email / "public" / "did.json")


def _refusal(email: str, evidence: Path | str) -> SyftCryptoIdentityError:
    return SyftCryptoIdentityError(
        f"{email} already has a syft-crypto identity ({evidence}); new keys would replace its "
        f"did.json and cut {email} off from its syft-crypto peers and apps (syft-flwr 0.5.x). "
        f"Adopt it with `{ADOPT_COMMAND}`, or remove {evidence} to start a new identity."
    )


def _read_keys(path: Path, email: str, published: bytes | None) -> IdentityKeys:
    """The syft-crypto keys in ``path`` as ``email``'s identity keys.

    :param published: ``email``'s published key document, if known: it must carry these keys.
    """
    check_private_file(path, f"syft-crypto keys of {email}")
    try:
        document = json.loads(path.read_text())
        identity = Ed25519PrivateKey.from_private_bytes(
            _private(document["identity_key"], "Ed25519")
        )
        prekey = X25519PrivateKey.from_private_bytes(_private(document["signed_prekey"], "X25519"))
        _check_public(identity, document["identity_key"])
        _check_public(prekey, document["signed_prekey"])
    except (OSError, ValueError, KeyError, TypeError, binascii.Error) as exc:
        raise KeyStoreError(f"{path} is not a syft-crypto key file: {exc}") from exc
    keys = IdentityKeys(email, identity, (AgreementKey(prekey, time.time()),))
    if published is not None:
        _check_published(keys, published, path)
    return keys


def _pydantic_url(url: str) -> str:
    """``str(AnyHttpUrl(url))``: lowercase scheme and host, no default port, path ``/``."""
    parts = urlsplit(url.strip())
    scheme, host = parts.scheme.lower(), (parts.hostname or "").lower()
    port = parts.port
    netloc = host if port is None or port == _DEFAULT_PORTS.get(scheme) else f"{host}:{port}"
    return urlunsplit((scheme, netloc, parts.path or "/", parts.query, parts.fragment))


def _unb64(text: object) -> bytes:
    if not isinstance(text, str):
        raise TypeError(f"expected base64url text, got {type(text).__name__}")
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def _private(jwk: Any, curve: str) -> bytes:
    if not isinstance(jwk, dict) or (jwk.get("kty"), jwk.get("crv")) != ("OKP", curve):
        found = (jwk.get("kty"), jwk.get("crv")) if isinstance(jwk, dict) else type(jwk).__name__
        raise ValueError(f"expected an OKP {curve} JWK, got {found}")  # never the key itself
    return _unb64(jwk["d"])


def _check_public(key: Ed25519PrivateKey | X25519PrivateKey, jwk: dict[str, Any]) -> None:
    public = key.public_key().public_bytes(Encoding.Raw, PublicFormat.Raw)
    if public != _unb64(jwk["x"]):
        raise ValueError(f"the {jwk['crv']} JWK's public key does not match its private key")


def _check_published(keys: IdentityKeys, published: bytes, source: Path) -> None:
    try:
        document = parse_document(published, keys.email)
    except CryptoError as exc:
        raise KeyStoreError(f"{keys.email}'s published key document is unusable: {exc}") from exc
    identity = keys.identity.public_key().public_bytes(Encoding.Raw, PublicFormat.Raw)
    if (document.identity, document.prekey) != (identity, keys.current.public):
        raise KeyStoreError(
            f"{source} holds other keys than {keys.email}'s published did.json; syft-crypto "
            "would refuse this pair too. Pass the key file that made the did.json"
        )
