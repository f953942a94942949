"""Where things are on Drive: our outbox folders (created on demand) and peers' inboxes (found).

Folder ids never change, so each is looked up or created once per process and cached.

*Outbox* (``me -> peer``): found or created on first send, together with its
``<app>/rpc/<endpoint>`` chain, and shared with the peer. A pair folder the peer created and
shared with us (syft-client's data scientists pre-create them) is used too.

*Inbox* (``peer -> me``): learnt from the poller's listings, never searched for on its own.
While a chain is incomplete, the poll query asks for pair folders by name and for the children
of the deepest folder known on each chain, so every poll extends what is known by one level at
no extra request; once a chain reaches its endpoint folder only that folder is listed.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from syft_flwr_gdrive.api import DriveApi
from syft_flwr_gdrive.layout import FOLDER_MIME, is_file_id, pair_name, peer_of_inbox, quote

__all__ = ["Endpoint", "FolderTree", "owner_of"]

logger = logging.getLogger(__name__)

RPC = "rpc"


@dataclass(frozen=True)
class Endpoint:
    """An inbox endpoint folder: messages from ``peer`` for ``app``/``endpoint``."""

    peer: str
    app: str
    endpoint: str


def owner_of(file: Mapping[str, Any]) -> str:
    """The (lowercase) email of a listed file's owner, ``""`` if Drive gave none.

    Drive lists items of a shared drive without ``owners``, and may leave out an owner's
    ``emailAddress`` the viewer is not allowed to see: then nothing tells who wrote the file,
    and ``""`` matches no peer. Anything but a list of owner objects also gives ``""``.
    """
    owners = file.get("owners")
    first = owners[0] if isinstance(owners, list) and owners else None
    email = first.get("emailAddress") if isinstance(first, dict) else None
    return email.lower() if isinstance(email, str) else ""


@dataclass
class _Folder:
    name: str
    parent: str | None
    owner: str
    created: str


def _folder(file: Mapping[str, Any]) -> _Folder | None:
    """A listed folder as :class:`FolderTree` keeps it, ``None`` for anything else (a file, or
    an entry without a usable id or name)."""
    if file.get("mimeType") != FOLDER_MIME or not is_file_id(file.get("id")):
        return None
    name, parents = file.get("name"), file.get("parents")
    parent = parents[0] if isinstance(parents, list) and parents else None
    if not isinstance(name, str) or not (parent is None or isinstance(parent, str)):
        return None
    return _Folder(name, parent, owner_of(file), str(file.get("createdTime", "")))


class FolderTree:
    """The folder ids this account works with.

    :param api: Drive operations of this account.
    :param identity: this account's email.
    :param root_name: the top folder's name (``SyftBox``).
    :param root_id: an existing folder to use as the top folder (e.g. in a shared drive).
    :param share_role: the role peers get on our outbox pair folders.
    :param discovery_interval: seconds between searches for new peers once every wanted
        inbox is known.
    """

    def __init__(
        self,
        api: DriveApi,
        identity: str,
        *,
        root_name: str,
        root_id: str | None,
        share_role: str,
        discovery_interval: float,
    ) -> None:
        self.api = api
        self.me = identity.lower()
        self.identity = identity
        self.root_name = root_name
        self.share_role = share_role
        self.discovery_interval = discovery_interval
        self._root = root_id
        self._lock = threading.Lock()
        self._create_lock = threading.Lock()
        self._folders: dict[str, _Folder] = {}
        self._inbox_pairs: dict[str, str] = {}
        self._outboxes: dict[tuple[str, str, str], str] = {}
        self._pairs: dict[str, str] = {}
        self._last_discovery = float("-inf")
        self.on_new_peer: Callable[[str], None] | None = None
        """Called (outside the lock) for each peer whose inbox pair folder is first learnt;
        :mod:`~syft_flwr_gdrive.keydocs` uses it to answer with our key document."""

    # -- inboxes, from listings ---------------------------------------------------------------

    def learn(self, files: Iterable[dict[str, Any]]) -> int:
        """Record the folders of a listing (new pair folders, children of known ones).

        :return: how many folders were new (a chain is being completed: poll again soon).
        """
        new = 0
        peers: list[str] = []
        with self._lock:
            for file in files:
                folder = _folder(file)
                if folder is None:
                    continue
                if file["id"] not in self._folders:
                    self._folders[file["id"]] = folder
                    new += 1
                peer = peer_of_inbox(folder.name, self.identity)
                if peer is not None and folder.owner in {peer.lower(), self.me}:
                    known = self._inbox_pairs.get(peer.lower())
                    if known is None:
                        peers.append(peer)
                    if known is None or self._rank(file["id"], peer) < self._rank(known, peer):
                        self._inbox_pairs[peer.lower()] = file["id"]
        callback = self.on_new_peer
        if callback is not None:
            for peer in peers:
                callback(peer)
        return new

    def known_pair_peers(self) -> list[str]:
        """The peers whose pair folder from us we already found or created."""
        with self._lock:
            return list(self._pairs)

    def inbox_pair(self, peer: str) -> str | None:
        """The id of ``peer``'s pair folder to us if a listing showed it (no API call)."""
        with self._lock:
            return self._inbox_pairs.get(peer.lower())

    def _rank(self, folder_id: str, peer: str) -> tuple[bool, str, str]:
        """Order of preference between inbox pair folders: the peer's own before one we
        pre-created for it, then the oldest (so every process picks the same one)."""
        folder = self._folders[folder_id]
        return (folder.owner != peer.lower(), folder.created, folder_id)

    def _child(self, parent: str, name: str, owners: set[str]) -> str | None:
        """The oldest known folder ``name`` in ``parent`` owned by one of ``owners``.

        Anyone the peer lets write into its pair folder could add an ``<app>`` folder of its own
        (older than the peer's, if made first); only the peer's and ours are part of a chain.
        """
        found = [
            (folder.created, folder_id)
            for folder_id, folder in self._folders.items()
            if folder.parent == parent and folder.name == name and folder.owner in owners
        ]
        return min(found)[1] if found else None

    def _chain(self, pair: str, peer: str, app: str, endpoint: str) -> tuple[str, bool]:
        """The deepest known folder on ``pair/app/rpc/endpoint`` and whether it is the end."""
        owners = {peer.lower(), self.me}
        folder = pair
        for name in (app, RPC, endpoint):
            child = self._child(folder, name, owners)
            if child is None:
                return folder, False
            folder = child
        return folder, True

    def frontier(
        self, served: set[tuple[str, str]], awaited: set[Endpoint]
    ) -> tuple[dict[str, Endpoint], list[str], bool]:
        """What the next poll must list.

        :param served: ``(app, endpoint)`` pairs whose requests we deliver, from any peer.
        :param awaited: inbox endpoints where replies to our requests will appear.
        :return: endpoint folders to list (id -> endpoint), other folders whose children are
            needed to complete a chain, and whether to search for new pair folders.
        """
        now = time.monotonic()
        with self._lock:
            wanted = set(awaited)
            for peer in self._inbox_pairs:
                wanted.update(Endpoint(peer, app, endpoint) for app, endpoint in served)
            leaves: dict[str, Endpoint] = {}
            partial: set[str] = set()
            missing = False
            for endpoint in wanted:
                pair = self._inbox_pairs.get(endpoint.peer.lower())
                if pair is None:
                    missing = True
                    continue
                folder, complete = self._chain(pair, endpoint.peer, endpoint.app, endpoint.endpoint)
                if complete:
                    leaves[folder] = endpoint
                else:
                    partial.add(folder)
            due = now - self._last_discovery >= self.discovery_interval
            discover = missing or (bool(served) and (due or not self._inbox_pairs))
            if discover:
                self._last_discovery = now
        return leaves, sorted(partial), discover

    # -- outboxes, created on demand ----------------------------------------------------------

    def outbox(self, peer: str, app: str, endpoint: str) -> str:
        """The id of our ``peer/app/rpc/endpoint`` outbox folder, creating and sharing it."""
        key = (peer.lower(), app, endpoint)
        with self._lock:
            known = self._outboxes.get(key)
        if known is not None:
            return known
        with self._create_lock:
            with self._lock:
                known = self._outboxes.get(key)
            if known is not None:
                return known
            folder, fresh = self._pair_locked(peer)
            owners = {peer.lower(), self.me}
            for name in (app, RPC, endpoint):
                folder, fresh = self._subfolder(folder, name, fresh, owners)
            with self._lock:
                self._outboxes[key] = folder
            return folder

    def pair(self, peer: str) -> str:
        """The id of our pair folder to ``peer`` (found or created, and shared), cached."""
        with self._create_lock:
            return self._pair_locked(peer)[0]

    def _pair_locked(self, peer: str) -> tuple[str, bool]:
        """:meth:`_outbox_pair`, once per peer (the caller holds ``_create_lock``)."""
        known = self._pairs.get(peer.lower())
        if known is not None:
            return known, False
        folder, fresh = self._outbox_pair(peer)
        with self._lock:
            self._pairs[peer.lower()] = folder
        return folder, fresh

    def _outbox_pair(self, peer: str) -> tuple[str, bool]:
        name = pair_name(self.identity, peer)
        what = f"finding the outbox folder {name}"
        found = self.api.search(
            f"name = {quote(name)} and mimeType = '{FOLDER_MIME}' and trashed = false", what
        ).files
        ours = sorted((f.get("createdTime", ""), f["id"]) for f in found if owner_of(f) == self.me)
        theirs = sorted(
            (f.get("createdTime", ""), f["id"]) for f in found if owner_of(f) == peer.lower()
        )
        if theirs and not ours:
            logger.info("%s: using the outbox folder %s that %s shared", self.identity, name, peer)
            return theirs[0][1], False
        if ours:
            folder, fresh = ours[0][1], False
        else:
            folder = self.api.create_folder(name, self._root_folder(), f"creating {name}")
            fresh = True
        # Sharing is idempotent; done on every first use so a crash between create and share
        # can never leave a folder the peer cannot see.
        self.api.share(folder, peer, self.share_role, f"sharing {name} with {peer}")
        return folder, fresh

    def _subfolder(
        self, parent: str, name: str, parent_fresh: bool, owners: set[str]
    ) -> tuple[str, bool]:
        """The folder ``name`` in ``parent`` (ours or the peer's, as in :meth:`_child`),
        created if there is none."""
        if not parent_fresh:
            what = f"finding the folder {name}"
            found = self.api.search(
                f"name = {quote(name)} and {quote(parent)} in parents and "
                f"mimeType = '{FOLDER_MIME}' and trashed = false",
                what,
            ).files
            usable = [
                (str(f.get("createdTime", "")), f["id"]) for f in found if owner_of(f) in owners
            ]
            if usable:
                return min(usable)[1], False
        return self.api.create_folder(name, parent, f"creating the folder {name}"), True

    def _root_folder(self) -> str:
        if self._root is None:
            what = f"finding the {self.root_name} folder"
            found = self.api.search(
                f"name = {quote(self.root_name)} and mimeType = '{FOLDER_MIME}' and "
                "'me' in owners and trashed = false",
                what,
            ).files
            if found:
                self._root = min((f.get("createdTime", ""), f["id"]) for f in found)[1]
            else:
                self._root = self.api.create_folder(self.root_name, None, what)
        return self._root
