"""The fake Drive's data: accounts, files, permissions, upload sessions, request counts.

All state lives behind one lock; the HTTP layer (:mod:`~syft_flwr_gdrive.testing.server`)
only translates requests into calls here and :class:`DriveFault` into Drive's error JSON.
Access rules follow My Drive: an account sees what it owns and what is shared with it directly
or through an ancestor folder, may add children where it is a writer, and may delete only what
it owns.
"""

from __future__ import annotations

import secrets
import threading
import time
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from syft_flwr_gdrive.testing.query import FileView, compile_query

__all__ = ["Account", "DriveFault", "DriveStore", "StoredFile", "Upload"]

FOLDER_MIME = "application/vnd.google-apps.folder"
_MAX_PROPERTY_BYTES = 124


class DriveFault(Exception):
    """An error answer in Drive's format: HTTP status, ``reason`` and message."""

    def __init__(self, status: int, reason: str, message: str, retry_after: str | None = None):
        super().__init__(message)
        self.status = status
        self.reason = reason
        self.message = message
        self.retry_after = retry_after


@dataclass
class Account:
    """One Google account of the fake."""

    email: str
    token: str
    refresh_token: str
    quota: int | None = None
    used: int = 0


@dataclass
class StoredFile:
    """A file or folder; ``content`` is empty for folders."""

    id: str
    name: str
    mime_type: str
    parents: list[str]
    owner: str
    content: bytes = b""
    app_properties: dict[str, str] = field(default_factory=dict)
    created: float = field(default_factory=time.time)
    readers: dict[str, str] = field(default_factory=dict)
    """Email -> role (``reader``/``writer``) granted by permissions on this file."""
    owner_listed: bool = True
    """``False``: listed without ``owners``, as Drive lists items of a shared drive (and a user
    whose email is not visible to the viewer); tests set it to show such a file to clients."""


@dataclass
class Upload:
    """A resumable upload session."""

    owner: str
    metadata: dict[str, Any]
    total: int | None
    data: bytearray = field(default_factory=bytearray)


def _rfc3339(timestamp: float) -> str:
    return datetime.fromtimestamp(timestamp, UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


class DriveStore:
    """In-memory Drive state for any number of accounts.

    :param open_accounts: accept ``local:<email>`` bearer tokens for any email, creating the
        account on first use (the local demo mode); otherwise only registered tokens work.
    """

    def __init__(self, *, open_accounts: bool = False) -> None:
        self.open_accounts = open_accounts
        self._lock = threading.RLock()
        self._accounts: dict[str, Account] = {}
        self._tokens: dict[str, str] = {}
        self._files: dict[str, StoredFile] = {}
        self._issued: dict[str, set[str]] = {}
        self._uploads: dict[str, Upload] = {}
        self._codes: dict[str, str] = {}
        self.requests: Counter[tuple[str, str]] = Counter()

    @contextmanager
    def locked(self) -> Iterator[None]:
        """Hold the store lock (for multi-step test assertions)."""
        with self._lock:
            yield

    # -- accounts -----------------------------------------------------------------------------

    def add_account(self, email: str, *, quota: int | None = None) -> Account:
        """Register ``email`` (idempotent) and return it with its tokens."""
        email = email.lower()
        with self._lock:
            account = self._accounts.get(email)
            if account is None:
                account = Account(email, secrets.token_urlsafe(16), secrets.token_urlsafe(16))
                self._accounts[email] = account
                self._tokens[account.token] = email
            if quota is not None:
                account.quota = quota
            return account

    def account_for_token(self, token: str) -> Account:
        """The account a bearer token belongs to.

        :raises DriveFault: 401 for an unknown token.
        """
        with self._lock:
            email = self._tokens.get(token)
            if email is None and self.open_accounts and token.startswith("local:"):
                email = self.add_account(token.removeprefix("local:")).email
            if email is None:
                raise DriveFault(401, "authError", "Invalid Credentials")
            return self._accounts[email]

    def issue_token(self, email: str) -> str:
        """A new access token for ``email`` (its earlier ones stay valid)."""
        with self._lock:
            token = secrets.token_urlsafe(16)
            self._tokens[token] = email.lower()
            return token

    def account_for_refresh(self, refresh_token: str) -> Account:
        """The account of an OAuth refresh token.

        :raises DriveFault: 400 for an unknown refresh token.
        """
        with self._lock:
            for account in self._accounts.values():
                if account.refresh_token == refresh_token:
                    return account
        raise DriveFault(400, "invalid_grant", "unknown refresh token")

    def issue_code(self, email: str) -> str:
        """An authorization code that :meth:`redeem_code` turns into ``email``'s account."""
        if not self.open_accounts and email.lower() not in self._accounts:
            raise DriveFault(400, "invalid_request", f"no such account {email}")
        with self._lock:
            code = secrets.token_urlsafe(12)
            self._codes[code] = email.lower()
            return code

    def redeem_code(self, code: str) -> Account:
        """The account an authorization code was issued for (codes are single-use)."""
        with self._lock:
            email = self._codes.pop(code, None)
            if email is None:
                raise DriveFault(400, "invalid_grant", "unknown or used code")
            return self.add_account(email)

    def account(self, email: str) -> Account:
        """A registered account, or service-account/open-mode login creating one."""
        with self._lock:
            known = self._accounts.get(email.lower())
            if known is not None:
                return known
            if not self.open_accounts:
                raise DriveFault(400, "invalid_grant", f"no such account {email}")
            return self.add_account(email)

    # -- access rules ---------------------------------------------------------------------------

    def _get(self, file_id: str, email: str) -> StoredFile:
        found = self._files.get(file_id)
        if found is None or not self._can_read(email, found):
            raise DriveFault(404, "notFound", f"File not found: {file_id}.")
        return found

    def _roles(self, email: str, file: StoredFile) -> set[str]:
        roles: set[str] = set()
        seen: set[str] = set()
        stack = [file]
        while stack:
            current = stack.pop()
            if current.id in seen:
                continue
            seen.add(current.id)
            if current.owner == email:
                roles.add("owner")
            if email in current.readers:
                roles.add(current.readers[email])
            stack.extend(self._files[p] for p in current.parents if p in self._files)
        return roles

    def _can_read(self, email: str, file: StoredFile) -> bool:
        return bool(self._roles(email, file))

    def _can_write(self, email: str, file: StoredFile) -> bool:
        return bool(self._roles(email, file) & {"owner", "writer"})

    # -- ids, metadata, listing -----------------------------------------------------------------

    def generate_ids(self, email: str, count: int) -> list[str]:
        """Ids ``email`` may give to files it creates (as ``files.generateIds``)."""
        if not 1 <= count <= 1000:
            raise DriveFault(400, "invalid", "count must be between 1 and 1000")
        ids = [secrets.token_urlsafe(24) for _ in range(count)]
        with self._lock:
            self._issued.setdefault(email, set()).update(ids)
        return ids

    def create(self, email: str, metadata: dict[str, Any], content: bytes = b"") -> StoredFile:
        """Create a file or folder owned by ``email``.

        :raises DriveFault: 400 bad metadata or an id not issued to ``email``, 404/403 for a
            parent it cannot see or write, 409 for an id already used, 403
            ``storageQuotaExceeded`` when the content does not fit its quota.
        """
        with self._lock:
            account = self._accounts[email]
            file_id = metadata.get("id")
            if file_id is not None:
                if file_id in self._files:
                    raise DriveFault(
                        409, "duplicate", "A file already exists with the provided ID."
                    )
                if file_id not in self._issued.get(email, set()):
                    raise DriveFault(400, "invalid", "The provided file ID is not usable.")
            else:
                file_id = secrets.token_urlsafe(24)
            parents = list(metadata.get("parents") or ["root:" + email])
            for parent_id in parents:
                if parent_id == "root:" + email:
                    continue
                parent = self._get(parent_id, email)
                if parent.mime_type != FOLDER_MIME:
                    raise DriveFault(400, "invalidParent", f"{parent_id} is not a folder")
                if not self._can_write(email, parent):
                    raise DriveFault(
                        403,
                        "insufficientFilePermissions",
                        "The user does not have sufficient permissions for this file.",
                    )
            if account.quota is not None and account.used + len(content) > account.quota:
                raise DriveFault(
                    403, "storageQuotaExceeded", "The user's Drive storage quota has been exceeded."
                )
            properties = _app_properties(metadata.get("appProperties") or {})
            stored = StoredFile(
                id=file_id,
                name=str(metadata.get("name") or "Untitled"),
                mime_type=str(metadata.get("mimeType") or "application/octet-stream"),
                parents=parents,
                owner=email,
                content=bytes(content),
                app_properties=properties,
            )
            self._files[file_id] = stored
            self._issued.get(email, set()).discard(file_id)
            account.used += len(content)
            return stored

    def get(self, email: str, file_id: str) -> StoredFile:
        """A file ``email`` can see.

        :raises DriveFault: 404 otherwise.
        """
        with self._lock:
            return self._get(file_id, email)

    def list(self, email: str, query: str) -> list[StoredFile]:
        """Every file ``email`` can see that matches ``query``, oldest first."""
        predicate = compile_query(query)
        with self._lock:
            hits = []
            for stored in self._files.values():
                if not self._can_read(email, stored):
                    continue
                view = FileView(
                    name=stored.name,
                    mime_type=stored.mime_type,
                    parents=tuple(stored.parents),
                    owner=stored.owner,
                    app_properties=stored.app_properties,
                    viewer=email,
                )
                if predicate(view):
                    hits.append(stored)
            return sorted(hits, key=lambda f: (f.created, f.id))

    def delete(self, email: str, file_id: str) -> None:
        """Delete a file ``email`` owns; a folder takes its descendants ``email`` owns along.

        :raises DriveFault: 404 if invisible, 403 if ``email`` is not the owner.
        """
        with self._lock:
            stored = self._get(file_id, email)
            if stored.owner != email:
                raise DriveFault(
                    403,
                    "insufficientFilePermissions",
                    "The user does not have sufficient permissions for this file.",
                )
            doomed = [file_id]
            while doomed:
                current = self._files.pop(doomed.pop(), None)
                if current is None:
                    continue
                self._accounts[current.owner].used -= len(current.content)
                for child in list(self._files.values()):
                    if current.id in child.parents:
                        if child.owner == email:
                            doomed.append(child.id)
                        else:
                            child.parents.remove(current.id)

    def share(self, email: str, file_id: str, grantee: str, role: str) -> str:
        """Grant ``grantee`` ``role`` on a file ``email`` owns or can write; return an id.

        :raises DriveFault: 400 for an unsupported role, 404/403 as for any access.
        """
        if role not in {"reader", "writer"}:
            raise DriveFault(400, "invalidSharingRequest", f"role {role!r} is not supported")
        with self._lock:
            stored = self._get(file_id, email)
            if not self._can_write(email, stored):
                raise DriveFault(
                    403,
                    "insufficientFilePermissions",
                    "The user does not have sufficient permissions for this file.",
                )
            grantee = grantee.lower()
            if stored.readers.get(grantee) != "writer":
                stored.readers[grantee] = role
            return "perm-" + grantee

    # -- resumable uploads ----------------------------------------------------------------------

    def start_upload(self, email: str, metadata: dict[str, Any], total: int | None) -> str:
        """Open a resumable upload session; return its id."""
        with self._lock:
            upload_id = secrets.token_urlsafe(16)
            self._uploads[upload_id] = Upload(email, metadata, total)
            return upload_id

    def upload(self, email: str, upload_id: str) -> Upload:
        """An open upload session of ``email``.

        :raises DriveFault: 404 for an unknown or finished session.
        """
        with self._lock:
            upload = self._uploads.get(upload_id)
            if upload is None or upload.owner != email:
                raise DriveFault(404, "notFound", "Upload session not found.")
            return upload

    def finish_upload(self, email: str, upload_id: str) -> StoredFile:
        """Create the file of a complete session and close the session."""
        with self._lock:
            upload = self.upload(email, upload_id)
            stored = self.create(email, upload.metadata, bytes(upload.data))
            del self._uploads[upload_id]
            return stored

    # -- representation -------------------------------------------------------------------------

    def resource(self, stored: StoredFile, viewer: str) -> dict[str, Any]:
        """The ``drive#file`` JSON of ``stored`` as ``viewer`` sees it (all fields)."""
        resource: dict[str, Any] = {
            "kind": "drive#file",
            "id": stored.id,
            "name": stored.name,
            "mimeType": stored.mime_type,
            "parents": [p for p in stored.parents if not p.startswith("root:")] or ["root"],
            "size": str(len(stored.content)),
            "createdTime": _rfc3339(stored.created),
            "modifiedTime": _rfc3339(stored.created),
            "trashed": False,
            "appProperties": dict(stored.app_properties),
        }
        if stored.owner_listed:
            owner = {
                "kind": "drive#user",
                "emailAddress": stored.owner,
                "me": stored.owner == viewer,
            }
            resource["owners"] = [owner]
        return resource


def _app_properties(properties: Any) -> dict[str, str]:
    """``appProperties`` as Drive accepts them: strings, at most 124 UTF-8 bytes per entry.

    :raises DriveFault: 400 otherwise (Drive's limit counts key plus value).
    """
    if not isinstance(properties, dict) or not all(
        isinstance(k, str) and isinstance(v, str) for k, v in properties.items()
    ):
        raise DriveFault(400, "invalid", "appProperties must map strings to strings")
    for key, value in properties.items():
        if len(key.encode()) + len(value.encode()) > _MAX_PROPERTY_BYTES:
            raise DriveFault(
                400,
                "invalid",
                f"The property {key!r} exceeds the maximum size of {_MAX_PROPERTY_BYTES} bytes "
                "(key plus value, UTF-8)",
            )
    return dict(properties)
