"""The handful of Drive operations the transport needs, each safe to retry.

Every call goes through :class:`~syft_flwr_gdrive.retry.Retrier`. Retrying a create must never
create twice (a dropped connection may hide a success), so files and folders are created with
ids reserved beforehand through ``files.generateIds``: a repeat answers 409, which here means
"done". Deleting something already gone is done too. Ids are reserved 100 at a time, so the
reservation costs one request per hundred files.
"""

from __future__ import annotations

import io
import threading
from collections.abc import Mapping
from dataclasses import dataclass
from functools import partial
from typing import Any

from googleapiclient.errors import HttpError  # type: ignore[import-untyped]
from googleapiclient.http import MediaIoBaseUpload  # type: ignore[import-untyped]

from syft_flwr.transport import Body, body_frames
from syft_flwr_gdrive.layout import FOLDER_MIME
from syft_flwr_gdrive.retry import Retrier
from syft_flwr_gdrive.service import DriveService
from syft_flwr_gdrive.transfers import download, multipart_upload, resumable_upload

__all__ = ["FILE_FIELDS", "DriveApi", "Listing"]

FILE_FIELDS = "id,name,mimeType,parents,size,createdTime,owners(emailAddress),appProperties"
"""The file fields the transport reads from listings."""

_ID_BATCH = 100
_PAGE_SIZE = 1000
_MEDIA_TYPE = "application/octet-stream"
_COMMON = {"supportsAllDrives": True}


@dataclass(frozen=True)
class Listing:
    """The result of one search: the files, and whether Drive vouched it is complete."""

    files: list[dict[str, Any]]
    complete: bool
    requests: int


class DriveApi:
    """Drive operations for one account.

    :param service: the client library resource and per-thread HTTP.
    :param retrier: the retry budget and error translation.
    :param resumable_threshold: bodies larger than this use a resumable upload.
    :param chunk_size: bytes per resumable upload chunk (a multiple of 256 KiB).
    :param download_chunk_size: bytes per ranged download request.
    """

    def __init__(
        self,
        service: DriveService,
        retrier: Retrier,
        *,
        resumable_threshold: int,
        chunk_size: int,
        download_chunk_size: int,
    ) -> None:
        self.service = service
        self.retrier = retrier
        self.resumable_threshold = resumable_threshold
        self.chunk_size = chunk_size
        self.download_chunk_size = download_chunk_size
        self._ids: list[str] = []
        self._ids_lock = threading.Lock()

    @property
    def _files(self) -> Any:
        return self.service.resource.files()

    def account_email(self) -> str:
        """The email of the account the credentials belong to."""
        request = self.service.resource.about().get(fields="user(emailAddress)")
        about = self.retrier.run(lambda: self.service.execute(request), "reading the account")
        return str(about["user"]["emailAddress"])

    def search(self, query: str, what: str) -> Listing:
        """Every file matching ``query`` (all pages)."""
        files: list[dict[str, Any]] = []
        complete = True
        token: str | None = None
        requests = 0
        while True:
            request = self._files.list(
                q=query,
                fields=f"nextPageToken,incompleteSearch,files({FILE_FIELDS})",
                pageSize=_PAGE_SIZE,
                pageToken=token,
                includeItemsFromAllDrives=True,
                **_COMMON,
            )
            page = self.retrier.run(partial(self.service.execute, request), what)
            requests += 1
            files.extend(page.get("files", []))
            complete = complete and not page.get("incompleteSearch", False)
            token = page.get("nextPageToken")
            if not token:
                return Listing(files, complete, requests)

    def reserve_id(self) -> str:
        """A file id reserved for this account (see the module docstring)."""
        with self._ids_lock:
            if not self._ids:
                request = self._files.generateIds(count=_ID_BATCH, space="drive", type="files")
                answer = self.retrier.run(lambda: self.service.execute(request), "reserving ids")
                self._ids.extend(answer["ids"])
            return self._ids.pop()

    def create_folder(self, name: str, parent: str | None, what: str) -> str:
        """Create a folder under ``parent`` (My Drive's root if ``None``); return its id."""
        file_id = self.reserve_id()
        metadata: dict[str, Any] = {"id": file_id, "name": name, "mimeType": FOLDER_MIME}
        if parent is not None:
            metadata["parents"] = [parent]
        request = self._files.create(body=metadata, fields="id", **_COMMON)
        self._created(lambda: self.service.execute(request), what)
        return file_id

    def upload(
        self,
        name: str,
        parent: str,
        body: Body,
        properties: Mapping[str, str],
        what: str,
    ) -> str:
        """Store ``body`` (one buffer or its frames) as file ``name`` in ``parent``; return the
        new file's id.

        Bodies up to ``resumable_threshold`` go in one multipart request, larger ones in
        resumable chunks cut from the frames as they are sent (never joined whole); either way
        the stored content is exactly ``body``, whatever its bytes.
        """
        file_id = self.reserve_id()
        metadata = {"id": file_id, "name": name, "parents": [parent]}
        metadata["appProperties"] = dict(properties)  # type: ignore[assignment]
        view = tuple(body_frames(body))
        if sum(frame.nbytes for frame in view) <= self.resumable_threshold:
            # The client library only supplies URI and headers: it frames multipart bodies
            # with bare LF, which loses a final CR byte (see transfers.multipart_upload).
            media = MediaIoBaseUpload(io.BytesIO(b""), _MEDIA_TYPE, resumable=False)
            start = self._files.create(body=metadata, media_body=media, fields="id", **_COMMON)
            self._created(
                lambda: multipart_upload(self.service, start, metadata, view, _MEDIA_TYPE), what
            )
        else:
            media = MediaIoBaseUpload(
                io.BytesIO(b""), _MEDIA_TYPE, chunksize=self.chunk_size, resumable=True
            )
            start = self._files.create(body=metadata, media_body=media, fields="id", **_COMMON)
            self._created(
                lambda: resumable_upload(
                    self.service, start, view, self.chunk_size, self.retrier, what
                ),
                what,
            )
        return file_id

    def _created(self, call: Any, what: str) -> None:
        try:
            self.retrier.run(call, what, passthrough={409})
        except HttpError as exc:  # 409: an earlier attempt whose answer was lost succeeded
            if int(exc.resp.status) != 409:
                raise

    def download(self, file_id: str, size: int, what: str) -> bytes | None:
        """The content of a file, or ``None`` if it no longer exists.

        :param size: the size the file was listed with: never more is read (see
            :func:`~syft_flwr_gdrive.transfers.download`).
        :raises DriveContentError: the content disagrees with ``size``.
        """
        uri = self._files.get_media(fileId=file_id, **_COMMON).uri
        try:
            return download(self.service, uri, size, self.download_chunk_size, self.retrier, what)
        except HttpError as exc:
            if int(exc.resp.status) == 404:
                return None
            raise

    def delete(self, file_id: str, what: str) -> bool:
        """Delete a file this account owns; ``False`` if it was already gone."""
        request = self._files.delete(fileId=file_id, **_COMMON)
        try:
            self.retrier.run(lambda: self.service.execute(request), what, passthrough={404})
        except HttpError as exc:
            if int(exc.resp.status) == 404:
                return False
            raise
        return True

    def share(self, file_id: str, email: str, role: str, what: str) -> None:
        """Give ``email`` ``role`` (``reader``/``writer``) on a file or folder."""
        request = self.service.resource.permissions().create(
            fileId=file_id,
            body={"type": "user", "role": role, "emailAddress": email},
            sendNotificationEmail=False,
            fields="id",
            **_COMMON,
        )
        self.retrier.run(lambda: self.service.execute(request), what)
