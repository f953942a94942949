"""The private key directory: where an identity's keys live, readable by its owner only.

Keys never go into a synced tree (a SyftBox datasite is uploaded to a server), so the default
is the user's config directory, ``$XDG_CONFIG_HOME/syft-flwr/keys/<email>/`` (``~/.config``
when unset). ``SYFT_FLWR_KEY_DIR`` or a transport's ``key_dir`` option replaces the
``.../keys`` root. Files are written atomically with mode 0600 and refused on load when group or
others can read them, as ssh refuses a readable private key.
"""

from __future__ import annotations

import json
import os
import stat
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any
from urllib.parse import quote

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey
from cryptography.hazmat.primitives.serialization import (
    Encoding,
    NoEncryption,
    PrivateFormat,
)

from syft_flwr.addresses import check_datasite
from syft_flwr.crypto.errors import KeyStoreError
from syft_flwr.crypto.keys import DEFAULT_GRACE, AgreementKey, IdentityKeys
from syft_flwr.errors import ConfigError, InvalidAddressError
from syft_flwr.files import write_atomic

__all__ = ["KEY_DIR_ENV", "KeyStore", "check_private_file", "default_key_root"]

KEY_DIR_ENV = "SYFT_FLWR_KEY_DIR"
_FILE = "keys.json"
_FORMAT = 1


def default_key_root(environ: Mapping[str, str] | None = None) -> Path:
    """``SYFT_FLWR_KEY_DIR``, else ``$XDG_CONFIG_HOME/syft-flwr/keys`` (``~/.config`` if unset)."""
    env = os.environ if environ is None else environ
    explicit = env.get(KEY_DIR_ENV, "").strip()
    if explicit:
        return Path(explicit).expanduser()
    config = env.get("XDG_CONFIG_HOME", "").strip()
    base = Path(config).expanduser() if config else Path.home() / ".config"
    return base / "syft-flwr" / "keys"


def check_private_file(path: Path, what: str) -> None:
    """Refuse a private key file that group or others can read, as ssh refuses one.

    :raises KeyStoreError: ``path`` is missing or readable by others.
    """
    try:
        mode = stat.S_IMODE(path.stat().st_mode)
    except OSError as exc:
        raise KeyStoreError(f"cannot read the {what} at {path}: {exc}") from exc
    if mode & 0o077:
        raise KeyStoreError(f"{path} ({what}) is readable by others (mode {mode:o}); chmod 600 it")


def _raw_private(key: Ed25519PrivateKey | X25519PrivateKey) -> str:
    return key.private_bytes(Encoding.Raw, PrivateFormat.Raw, NoEncryption()).hex()


class KeyStore:
    """The keys of every identity under one root directory.

    :param root: the key root; :func:`default_key_root` when ``None``.
    :param source: what set ``root`` (a flag or an option), named when it is unusable.
    :raises ConfigError: the root exists but is not a folder.
    """

    def __init__(self, root: Path | None = None, *, source: str | None = None) -> None:
        if root is None:
            root = default_key_root()
            source = KEY_DIR_ENV if os.environ.get(KEY_DIR_ENV, "").strip() else "the key root"
        if root.exists() and not root.is_dir():
            raise ConfigError(
                f"{source or 'the key root'}={root} is not a folder: point it at the folder "
                "that holds (or will hold) the private keys"
            )
        self.root = root

    def path(self, email: str) -> Path:
        """The key file of ``email``.

        :raises ConfigError: ``email`` is not a safe email (it names a folder here).
        """
        try:
            check_datasite(email)
        except InvalidAddressError as exc:
            raise ConfigError(f"no key file can be named for {email!r}: {exc}") from None
        return self.root / quote(email, safe="@.+-_") / _FILE

    def exists(self, email: str) -> bool:
        """Whether ``email`` has keys here."""
        return self.path(email).is_file()

    def load(self, email: str) -> IdentityKeys:
        """Load the keys of ``email``, without agreement keys past their grace period.

        :raises KeyStoreError: no keys, unsafe permissions, or an unreadable file.
        """
        path = self.path(email)
        if not path.is_file():
            raise KeyStoreError(f"no keys for {email} in {self.root}: run `syft-flwr keys init`")
        check_private_file(path, f"keys of {email}")
        try:
            document = json.loads(path.read_text())
            return _from_json(document, email).pruned()
        except (OSError, ValueError, KeyError, TypeError) as exc:
            raise KeyStoreError(f"cannot read keys from {path}: {exc}") from exc

    def save(self, keys: IdentityKeys) -> Path:
        """Write ``keys`` atomically with mode 0600 (directory 0700); return the file."""
        path = self.path(keys.email)
        path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        write_atomic(path, json.dumps(_to_json(keys), indent=2).encode())
        return path

    def check_free(self, email: str, *, force: bool = False) -> None:
        """Make sure new keys may be saved for ``email``: none exist, or ``force`` replaces them.

        Callers check before publishing new keys and save after, so keys whose publication
        was refused never linger in the store.

        :raises KeyStoreError: keys exist already and ``force`` is false.
        """
        if self.exists(email) and not force:
            raise KeyStoreError(
                f"keys for {email} exist in {self.path(email)}; rotate instead, or pass "
                "--force to replace them"
            )

    def init(self, email: str, *, force: bool = False) -> IdentityKeys:
        """Generate and save new keys for ``email``.

        :raises KeyStoreError: keys exist already and ``force`` is false.
        """
        self.check_free(email, force=force)
        keys = IdentityKeys.generate(email)
        self.save(keys)
        return keys

    def rotate(self, email: str, grace: float = DEFAULT_GRACE) -> IdentityKeys:
        """Make a new current agreement key; the old one stays accepted for ``grace`` s."""
        keys = self.load(email).rotated(grace, time.time())
        self.save(keys)
        return keys


def _to_json(keys: IdentityKeys) -> dict[str, Any]:
    return {
        "format": _FORMAT,
        "email": keys.email,
        "identity": _raw_private(keys.identity),
        "agreement": [
            {"private": _raw_private(k.private), "created": k.created, "valid_until": k.valid_until}
            for k in keys.agreement
        ],
    }


def _from_json(document: dict[str, Any], email: str) -> IdentityKeys:
    if document["format"] != _FORMAT or document["email"] != email:
        raise ValueError(f"not a format-{_FORMAT} key file of {email}")
    agreement = tuple(
        AgreementKey(
            X25519PrivateKey.from_private_bytes(bytes.fromhex(entry["private"])),
            float(entry["created"]),
            None if entry["valid_until"] is None else float(entry["valid_until"]),
        )
        for entry in document["agreement"]
    )
    if not agreement or agreement[0].valid_until is not None:
        raise ValueError("the first agreement key must be the current one")
    identity = Ed25519PrivateKey.from_private_bytes(bytes.fromhex(document["identity"]))
    return IdentityKeys(email, identity, agreement)
