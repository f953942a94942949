"""Trust on first use: remember each peer's identity key and refuse a different one later.

Key documents reach us through the transport, and for SyftBox that includes a sync server that
could substitute a ``did.json``. Signatures only prove a document is self-consistent, so a
peer's identity key is pinned in the owner's key directory; a later document with another
identity key is refused until the user removes the pin on purpose (after checking with the peer
that it really re-created its identity). Rotating agreement keys is unaffected, because they
are signed by the same identity key.

"First use" is the first *successful exchange*, not the first sight of a document: over a sync
a datasite can read a peer's previous ``did.json`` (one sync cycle late) before its current one,
and pinning that stale identity would refuse the peer forever. So a document is only checked
against an existing pin (:meth:`PinStore.check`), and the identity is pinned once a message
sealed with it has opened (:meth:`PinStore.confirm`).
"""

from __future__ import annotations

import base64
import json
import threading
from pathlib import Path

from syft_flwr.crypto.errors import IdentityChangedError, KeyStoreError
from syft_flwr.files import write_atomic

__all__ = ["PinStore"]


class PinStore:
    """Pinned identity keys by email, in a JSON file written 0600.

    :param path: the file; ``None`` keeps pins in memory only (tests, throwaway channels).
    """

    def __init__(self, path: Path | None) -> None:
        self.path = path
        self._lock = threading.Lock()
        self._pins: dict[str, str] = self._load()

    def _load(self) -> dict[str, str]:
        if self.path is None or not self.path.exists():
            return {}
        try:
            pins = json.loads(self.path.read_text())
        except (OSError, ValueError) as exc:
            raise KeyStoreError(f"cannot read pinned peer keys {self.path}: {exc}") from exc
        if not isinstance(pins, dict):
            raise KeyStoreError(f"{self.path} must hold a JSON object")
        return {str(email): str(key) for email, key in pins.items()}

    def check(self, email: str, identity: bytes) -> None:
        """Require ``identity`` to be the pinned key of ``email``, if one is pinned.

        :raises IdentityChangedError: ``email`` presents another identity key than pinned.
        """
        encoded = _encode(identity)
        with self._lock:
            pinned = self._pins.get(email)
        if pinned is not None and pinned != encoded:
            raise IdentityChangedError(
                f"{email}'s identity key changed (pinned {pinned}, now {encoded}); if the "
                f"peer really re-created its keys, remove its entry from {self.path}"
            )

    def confirm(self, email: str, identity: bytes) -> None:
        """Pin ``identity`` for ``email``: a message sealed with it just opened.

        :raises IdentityChangedError: another identity key is pinned for ``email``.
        """
        self.check(email, identity)
        encoded = _encode(identity)
        with self._lock:
            if self._pins.get(email) == encoded:
                return
            self._pins[email] = encoded
            self._save()

    def pinned(self, email: str) -> bool:
        """Whether an identity key is pinned for ``email``."""
        with self._lock:
            return email in self._pins

    def _save(self) -> None:
        if self.path is None:
            return
        self.path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        write_atomic(self.path, json.dumps(self._pins, indent=2, sort_keys=True).encode())


def _encode(identity: bytes) -> str:
    return base64.urlsafe_b64encode(identity).decode().rstrip("=")
