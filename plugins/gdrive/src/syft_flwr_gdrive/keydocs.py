"""Key documents on Drive: ``did.json`` in each pair folder ``syft_outbox_inbox_<me>_to_<peer>``.

Why there: a Drive file is readable by another account only if it is shared with it, and the
only folders a peer is guaranteed to see are the pair folders we share with it anyway. A
"public" folder would need an ``anyone`` permission, which real Drive keeps out of other
accounts' searches (it can be opened by id, not found by name), and it would have to be shared
with each peer by email anyway. So every pair folder we own carries our current document.

Publishing happens before the transport knows its peers, hence a small knock protocol:

* :func:`publish` (``GDriveTransport.publish_key_document``) keeps the document on the
  transport and writes it into every pair folder we already own; pair folders created later
  get it when first used.
* Fetching a peer's document first makes sure our pair folder to that peer exists (created and
  shared if needed, with our document inside): that is the knock.
* A serving peer's poller discovers the knocking pair folder and answers by creating its pair
  folder back to us with its document (:attr:`FolderTree.on_new_peer`), so the server's next
  fetch finds it. The core repeats fetches while it waits for keys.

Trust comes from the signatures the core checks, and, as for requests, only a file owned by
the datasite itself is accepted (a pair folder we pre-created for a peer could hold a file
written by anyone the folder is shared with).

API calls: publish writes one file per known pair folder (upload, plus a search and deletes of
the previous version). The first fetch of a peer costs the knock (search, create, share, upload
once per peer) and a name search for the peer's pair folder until it appears; then every fetch
is one list request, plus one download only when the document changed.
"""

from __future__ import annotations

import logging
import threading
from typing import TYPE_CHECKING, Any

from syft_flwr.addresses import check_datasite
from syft_flwr.errors import ConfigError, SyftFlwrError
from syft_flwr_gdrive.folders import owner_of
from syft_flwr_gdrive.layout import FOLDER_MIME, QUERY_UNSAFE, pair_name, quote
from syft_flwr_gdrive.options import WIRE_SYFT_FLWR_P2P

if TYPE_CHECKING:  # the transport's methods call this module
    from syft_flwr_gdrive.transport import GDriveTransport

__all__ = ["DID_FILE", "KeyDocuments", "fetch", "publish"]

logger = logging.getLogger(__name__)

DID_FILE = "did.json"
_ATTRIBUTE = "_syft_flwr_key_documents"


class KeyDocuments:
    """This transport's published document and what is known of its peers' documents.

    :param transport: the transport whose pair folders hold the documents.
    """

    def __init__(self, transport: GDriveTransport) -> None:
        self.transport = transport
        self.document: bytes | None = None
        self._lock = threading.Lock()
        self._placed: set[str] = set()
        self._inboxes: dict[str, str] = {}
        self._cache: dict[str, tuple[str, bytes]] = {}

    @classmethod
    def of(cls, transport: GDriveTransport) -> KeyDocuments:
        """The (one) instance attached to ``transport``."""
        found: KeyDocuments | None = getattr(transport, _ATTRIBUTE, None)
        if found is None:
            found = cls(transport)
            setattr(transport, _ATTRIBUTE, found)
        return found

    # -- our document ---------------------------------------------------------------------------

    def publish(self, document: bytes) -> None:
        """Keep ``document`` and write it into every pair folder we already use."""
        with self._lock:
            self.document = document
            self._placed.clear()
            peers = list(self.transport.folders.known_pair_peers())
        self.transport.folders.on_new_peer = self._answer_knock
        for peer in peers:
            self.place(peer)

    def place(self, peer: str) -> None:
        """Make sure our pair folder to ``peer`` exists and holds the current document."""
        with self._lock:
            document = self.document
            if document is None or peer.lower() in self._placed:
                return
        api = self.transport.api
        folder = self.transport.folders.pair(peer)
        old = self._did_files(folder, self.transport.identity)
        api.upload(DID_FILE, folder, document, {}, f"publishing our key document to {peer}")
        # Peers read the newest copy, so the old ones can go once the new one is there.
        for file in old:
            api.delete(file["id"], "deleting an old key document")
        with self._lock:
            if self.document is document:
                self._placed.add(peer.lower())

    def _answer_knock(self, peer: str) -> None:
        """A peer's pair folder appeared: answer with our document (called by the poller)."""
        try:
            self.place(peer)
        except SyftFlwrError as exc:
            logger.warning("%s: could not give %s our key document: %s", self._me, peer, exc)

    # -- peers' documents -----------------------------------------------------------------------

    def fetch(self, peer: str) -> bytes | None:
        """``peer``'s newest ``did.json`` in its pair folder to us, ``None`` if none yet."""
        check_datasite(peer, forbid=QUERY_UNSAFE)
        try:
            self.place(peer)  # the knock: the peer's poller answers with its document
        except SyftFlwrError as exc:  # the peer may still have answered an earlier knock
            logger.warning("%s: could not knock on %s's door: %s", self._me, peer, exc)
        folder = self._inbox(peer)
        if folder is None:
            return None
        files = self._did_files(folder, peer)
        if not files:
            return None
        newest = max(files, key=lambda f: (str(f.get("createdTime", "")), f["id"]))
        with self._lock:
            cached = self._cache.get(peer.lower())
        if cached is not None and cached[0] == newest["id"]:
            return cached[1]
        raw = self.transport.api.download(
            newest["id"], int(newest.get("size", 0)), f"fetching the key document of {peer}"
        )
        if raw is not None:
            with self._lock:
                self._cache[peer.lower()] = (newest["id"], raw)
        return raw

    def _inbox(self, peer: str) -> str | None:
        """The id of ``peer``'s own pair folder to us (cached once found)."""
        with self._lock:
            known = self._inboxes.get(peer.lower())
        if known is not None:
            return known
        name = pair_name(peer, self.transport.identity)
        found = self.transport.api.search(
            f"name = {quote(name)} and mimeType = '{FOLDER_MIME}' and trashed = false",
            f"finding the folder {name}",
        ).files
        theirs = sorted(
            (str(f.get("createdTime", "")), f["id"]) for f in found if owner_of(f) == peer.lower()
        )
        if not theirs:
            return None
        folder = str(theirs[0][1])
        with self._lock:
            self._inboxes[peer.lower()] = folder
        return folder

    def _did_files(self, folder: str, owner: str) -> list[dict[str, Any]]:
        found = self.transport.api.search(
            f"name = {quote(DID_FILE)} and {quote(folder)} in parents and trashed = false",
            "listing key documents",
        ).files
        return [f for f in found if owner_of(f) == owner.lower()]

    @property
    def _me(self) -> str:
        return self.transport.identity


def publish(transport: GDriveTransport, document: bytes) -> None:
    """Publish into our pair folders (see the module docstring); refuse the compat wire.

    :raises ConfigError: the transport speaks syft-flwr 0.5's wire, which carries no
        encryption: encryption must then be turned off explicitly.
    """
    if transport.options.wire == WIRE_SYFT_FLWR_P2P:
        raise ConfigError(
            f"{transport.identity}: the gdrive wire {WIRE_SYFT_FLWR_P2P!r} (syft-flwr 0.5 "
            "Drive clients) cannot carry end-to-end encryption; set "
            "SYFT_FLWR_ENCRYPTION_ENABLED=false to run in plaintext, or use the native wire"
        )
    KeyDocuments.of(transport).publish(document)


def fetch(transport: GDriveTransport, datasite: str) -> bytes | None:
    """``datasite``'s document from its pair folder to us, or ``None`` if none is there yet."""
    return KeyDocuments.of(transport).fetch(datasite)
