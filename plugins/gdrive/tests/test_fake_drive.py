"""The fake Drive, driven by the real client library: the API surface and its access rules."""

from __future__ import annotations

import io
import json
import os
from typing import Any

import httplib2
import pytest
from google.oauth2.credentials import Credentials
from googleapiclient.errors import HttpError
from googleapiclient.http import MediaIoBaseUpload

from syft_flwr_gdrive.layout import FOLDER_MIME
from syft_flwr_gdrive.service import DriveService
from syft_flwr_gdrive.testing import FakeDrive
from syft_flwr_gdrive.testing.query import FileView, QueryError, compile_query


def client(drive: FakeDrive, email: str) -> DriveService:
    return DriveService(Credentials(token=drive.add_account(email).token), drive.url, 10.0)


def run(service: DriveService, request: Any) -> Any:
    return service.execute(request)


def folder(service: DriveService, name: str, parent: str | None = None) -> str:
    body: dict[str, Any] = {"name": name, "mimeType": FOLDER_MIME}
    if parent:
        body["parents"] = [parent]
    return str(run(service, service.resource.files().create(body=body, fields="id"))["id"])


def upload(service: DriveService, name: str, parent: str, data: bytes) -> str:
    media = MediaIoBaseUpload(io.BytesIO(data), "application/octet-stream", resumable=False)
    request = service.resource.files().create(
        body={"name": name, "parents": [parent]}, media_body=media, fields="id"
    )
    return str(run(service, request)["id"])


def status(exc: pytest.ExceptionInfo[HttpError]) -> tuple[int, str]:
    return exc.value.resp.status, json.loads(exc.value.content)["error"]["errors"][0]["reason"]


def test_binary_multipart_upload_and_ranged_download_round_trip(drive: FakeDrive) -> None:
    alice = client(drive, "alice@x.org")
    data = os.urandom(5000) + b"\r\n--\n\r\n" + bytes(range(256))
    file_id = upload(alice, "blob.bin", folder(alice, "box"), data)
    uri = alice.resource.files().get_media(fileId=file_id).uri
    response, content = alice.http().request(uri, headers={"Range": "bytes=100-199"})
    assert response.status == 206 and content == data[100:200]
    assert response["content-range"] == f"bytes 100-199/{len(data)}"
    response, content = alice.http().request(uri)
    assert response.status == 200 and content == data


def test_sharing_is_enforced_between_accounts(drive: FakeDrive) -> None:
    alice, bob = client(drive, "alice@x.org"), client(drive, "bob@x.org")
    box = folder(alice, "box")
    file_id = upload(alice, "secret", box, b"s")
    listing = bob.resource.files().list(q=f"'{box}' in parents", fields="files(id)")
    assert run(bob, listing)["files"] == []
    with pytest.raises(HttpError) as denied:
        run(bob, bob.resource.files().get(fileId=file_id))
    assert status(denied) == (404, "notFound")
    share = alice.resource.permissions().create(
        fileId=box, body={"type": "user", "role": "reader", "emailAddress": "bob@x.org"}
    )
    run(alice, share)
    assert [f["id"] for f in run(bob, listing)["files"]] == [file_id]
    with pytest.raises(HttpError) as readonly:
        upload(bob, "intruder", box, b"x")
    assert status(readonly) == (403, "insufficientFilePermissions")
    with pytest.raises(HttpError) as not_owner:
        run(bob, bob.resource.files().delete(fileId=file_id))
    assert status(not_owner) == (403, "insufficientFilePermissions")


def test_long_queries_travel_as_post_with_method_override(drive: FakeDrive) -> None:
    alice = client(drive, "alice@x.org")
    box = folder(alice, "box")
    upload(alice, "x", box, b"1")
    decoys = " or ".join(f"'decoy{i:04d}' in parents" for i in range(80))
    request = alice.resource.files().list(q=f"{decoys} or '{box}' in parents", fields="files(name)")
    assert len(request.uri) > 2048
    assert run(alice, request)["files"] == [{"name": "x"}]
    assert drive.count("alice@x.org", "files.list") == 1


def test_paging_and_fields(drive: FakeDrive) -> None:
    alice = client(drive, "alice@x.org")
    box = folder(alice, "box")
    for i in range(5):
        upload(alice, f"f{i}", box, b"")
    names: list[str] = []
    token = None
    while True:
        page = run(
            alice,
            alice.resource.files().list(
                q=f"'{box}' in parents",
                pageSize=2,
                pageToken=token,
                fields="nextPageToken,files(name,owners(emailAddress))",
            ),
        )
        assert all(set(f) == {"name", "owners"} for f in page["files"])
        names += [f["name"] for f in page["files"]]
        token = page.get("nextPageToken")
        if not token:
            break
    assert names == [f"f{i}" for i in range(5)]


def test_create_with_reserved_id_is_idempotent(drive: FakeDrive) -> None:
    alice = client(drive, "alice@x.org")
    (file_id,) = run(alice, alice.resource.files().generateIds(count=1))["ids"]
    body = {"id": file_id, "name": "once", "mimeType": FOLDER_MIME}
    run(alice, alice.resource.files().create(body=body))
    with pytest.raises(HttpError) as again:
        run(alice, alice.resource.files().create(body=body))
    assert again.value.resp.status == 409
    with pytest.raises(HttpError) as foreign:
        run(alice, alice.resource.files().create(body={**body, "id": "not-issued"}))
    assert foreign.value.resp.status == 400


def test_quota_and_unknown_token(drive: FakeDrive) -> None:
    drive.add_account("tiny@x.org", quota=10)
    tiny = client(drive, "tiny@x.org")
    box = folder(tiny, "box")
    with pytest.raises(HttpError) as full:
        upload(tiny, "big", box, b"x" * 11)
    assert status(full) == (403, "storageQuotaExceeded")
    response, _ = httplib2.Http().request(
        drive.url + "drive/v3/about", headers={"Authorization": "Bearer nope"}
    )
    assert response.status == 401


def test_media_upload_and_delete(drive: FakeDrive) -> None:
    alice = client(drive, "alice@x.org")
    media = MediaIoBaseUpload(io.BytesIO(b"raw"), "text/plain", resumable=False)
    created = run(alice, alice.resource.files().create(media_body=media, fields="id,size"))
    assert created["size"] == "3"
    run(alice, alice.resource.files().delete(fileId=created["id"]))
    with pytest.raises(HttpError) as gone:
        run(alice, alice.resource.files().delete(fileId=created["id"]))
    assert gone.value.resp.status == 404


def view(name: str = "n", parents: tuple[str, ...] = ("p",), props: Any = None) -> FileView:
    return FileView(name, "text/plain", parents, "o@x.org", props or {}, "me@x.org")


def test_query_language_subset() -> None:
    matches = compile_query(
        "trashed = false and (name contains 'syft' or 'p' in parents) and not name = 'x' "
        "and appProperties has { key='k' and value='v\\'q' }"
    )
    assert matches(view("syft_a", ("z",), {"k": "v'q"}))
    assert not matches(view("x", ("p",), {"k": "v'q"}))
    assert not matches(view("syft_a", ("z",), {"k": "other"}))
    assert compile_query("'o@x.org' in owners")(view())
    assert not compile_query("'me' in owners")(view())
    for bad in ("modifiedTime > '2020'", "name =", "'a' in writers", "name = 'a' extra"):
        with pytest.raises(QueryError):
            compile_query(bad)
