"""``FakeDrive``: a Drive v3 server on 127.0.0.1 for offline tests and the local demo.

It speaks the HTTP the real ``googleapiclient`` speaks (files list/create/get/delete,
generateIds, about, permissions, multipart/media/resumable uploads, ranged downloads,
GET-as-POST with ``X-HTTP-Method-Override``) plus the OAuth endpoints ``google-auth`` and
``google-auth-oauthlib`` call (``/token`` for refresh, authorization-code and service-account
JWT grants; ``/o/oauth2/auth`` that signs in the ``login_hint`` account at once). Accounts are
told apart by bearer token and sharing is enforced (see :mod:`~syft_flwr_gdrive.testing.store`).
Every request is counted per account and kind, and a :class:`FaultPlan` can make any of them
fail the ways Drive fails.
"""

from __future__ import annotations

import base64
import binascii
import json
import threading
import urllib.parse
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from syft_flwr_gdrive.testing.faults import Fault, FaultPlan
from syft_flwr_gdrive.testing.query import QueryError
from syft_flwr_gdrive.testing.store import FOLDER_MIME, Account, DriveFault, DriveStore
from syft_flwr_gdrive.testing.wire import parse_multipart, project

__all__ = ["DRIVE_SCOPE", "FakeDrive"]

DRIVE_SCOPE = "https://www.googleapis.com/auth/drive"
_CHUNK_GRANULARITY = 256 * 1024
_MAX_PAGE_SIZE = 1000
_Answer = tuple[int, dict[str, str], bytes]
_STATUS_NAMES = {400: "INVALID_ARGUMENT", 401: "UNAUTHENTICATED", 403: "PERMISSION_DENIED"}


class FakeDrive:
    """A running fake Drive v3 server.

    :param open_accounts: accept ``local:<email>`` tokens for any account (demo mode).
    :param faults: fault plan applied to API requests (replaceable through :attr:`faults`).
    """

    def __init__(self, *, open_accounts: bool = False, faults: FaultPlan | None = None) -> None:
        self.store = DriveStore(open_accounts=open_accounts)
        self.faults = faults or FaultPlan()
        handler = type("_BoundHandler", (_Handler,), {"drive": self})
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
        self._server.daemon_threads = True
        self._thread = threading.Thread(
            target=self._server.serve_forever, args=(0.05,), name="fake-drive", daemon=True
        )
        self._thread.start()
        self._closed = False

    @property
    def url(self) -> str:
        """The API root, e.g. ``http://127.0.0.1:41234/`` (with the trailing slash)."""
        host, port = self._server.server_address[:2]
        return f"http://{host!s}:{port}/"

    def add_account(self, email: str, *, quota: int | None = None) -> Account:
        """Register an account (quota in bytes, ``None`` for unlimited)."""
        return self.store.add_account(email, quota=quota)

    def count(self, email: str | None = None, kind: str | None = None) -> int:
        """How many requests were served (to ``email``, of ``kind``), faults included."""
        return sum(
            n
            for (who, what), n in self.store.requests.items()
            if (email is None or who == email.lower()) and (kind is None or what == kind)
        )

    def counts(self, email: str | None = None) -> dict[str, int]:
        """Requests per kind (for ``email``, or everyone)."""
        totals: dict[str, int] = {}
        for (who, what), n in self.store.requests.items():
            if email is None or who == email.lower():
                totals[what] = totals.get(what, 0) + n
        return totals

    @property
    def closed(self) -> bool:
        """Whether :meth:`close` was called."""
        return self._closed

    def close(self) -> None:
        """Stop serving (kept-alive connections are dropped at their next request)."""
        if self._closed:
            return
        self._closed = True
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(5)

    def __enter__(self) -> FakeDrive:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()


class _Dropped(Exception):
    """Close the connection without an answer."""


class _Handler(BaseHTTPRequestHandler):
    drive: FakeDrive
    protocol_version = "HTTP/1.1"
    disable_nagle_algorithm = True  # headers and body go out in separate writes

    def log_message(self, format: str, *args: Any) -> None:
        """Silence the per-request stderr line (tests would drown in it)."""

    # -- dispatch ---------------------------------------------------------------------------

    def do_GET(self) -> None:
        self._dispatch("GET")

    def do_POST(self) -> None:
        self._dispatch("POST")

    def do_PUT(self) -> None:
        self._dispatch("PUT")

    def do_DELETE(self) -> None:
        self._dispatch("DELETE")

    def _dispatch(self, method: str) -> None:
        if self.drive.closed:  # a kept-alive connection outliving the server: end it
            self.close_connection = True
            return
        url = urllib.parse.urlsplit(self.path)
        self.params = {k: v[-1] for k, v in urllib.parse.parse_qs(url.query).items()}
        self.body = self._read_body()
        if method == "POST" and self.headers.get("X-HTTP-Method-Override", "").upper() == "GET":
            method = "GET"
            form = urllib.parse.parse_qs(self.body.decode("utf-8"))
            self.params.update({k: v[-1] for k, v in form.items()})
        route, kind, args = self._route(method, url.path)
        try:
            email = self._authenticate(kind)
            self.drive.store.requests[(email, kind)] += 1
            fault = self.drive.faults.decide(email, kind) if email else None
            if fault is not None and fault is not Fault.DROP_AFTER:
                self._serve_fault(fault)
                return
            status, headers, payload = route(email, *args)
            if fault is Fault.DROP_AFTER:
                raise _Dropped
        except _Dropped:
            self.close_connection = True
            return
        except DriveFault as exc:
            self._send_error(exc)
            return
        except QueryError as exc:
            self._send_error(DriveFault(400, "invalid", f"Invalid Value: {exc}"))
            return
        self._send(status, headers, payload)

    def _route(
        self, method: str, path: str
    ) -> tuple[Callable[..., tuple[int, dict[str, str], bytes]], str, tuple[str, ...]]:
        parts = [urllib.parse.unquote(p) for p in path.strip("/").split("/")]
        upload = self.params.get("uploadType", "")
        table: dict[tuple[str, tuple[str, ...]], tuple[Callable[..., Any], str]] = {
            ("POST", ("token",)): (self._token, "oauth.token"),
            ("GET", ("o", "oauth2", "auth")): (self._authorize, "oauth.auth"),
            ("GET", ("drive", "v3", "about")): (self._about, "about.get"),
            ("GET", ("drive", "v3", "files")): (self._list, "files.list"),
            ("POST", ("drive", "v3", "files")): (self._create_metadata, "files.create"),
            ("GET", ("drive", "v3", "files", "generateIds")): (self._generate_ids, "files.ids"),
            ("POST", ("upload", "drive", "v3", "files")): (self._upload, f"upload.{upload}"),
            ("PUT", ("upload", "drive", "v3", "files")): (self._chunk, "upload.chunk"),
        }
        key = (method, tuple(parts))
        if key in table:
            handler, kind = table[key]
            return handler, kind, ()
        if parts[:3] == ["drive", "v3", "files"] and len(parts) in (4, 5):
            file_id = parts[3]
            if len(parts) == 5 and parts[4] == "permissions" and method == "POST":
                return self._share, "permissions.create", (file_id,)
            if len(parts) == 4 and method == "GET":
                media = self.params.get("alt") == "media"
                return self._get, "files.get_media" if media else "files.get", (file_id,)
            if len(parts) == 4 and method == "DELETE":
                return self._delete, "files.delete", (file_id,)
        return self._not_found, "unknown", ()

    def _authenticate(self, kind: str) -> str:
        if kind.startswith("oauth."):
            return ""
        header = self.headers.get("Authorization", "")
        if not header.startswith("Bearer "):
            raise DriveFault(401, "required", "Login Required.")
        return self.drive.store.account_for_token(header[len("Bearer ") :]).email

    def _read_body(self) -> bytes:
        length = int(self.headers.get("Content-Length") or 0)
        return self.rfile.read(length) if length else b""

    # -- answers ------------------------------------------------------------------------------

    def _send(self, status: int, headers: dict[str, str], payload: bytes) -> None:
        self.send_response(status)
        for name, value in headers.items():
            self.send_header(name, value)
        self.send_header("Content-Length", str(len(payload)))
        self.end_headers()
        if payload:
            self.wfile.write(payload)

    def _json(self, status: int, value: Any, headers: dict[str, str] | None = None) -> _Answer:
        data = json.dumps(project(value, self.params.get("fields"))).encode()
        return status, {"Content-Type": "application/json", **(headers or {})}, data

    def _send_error(self, fault: DriveFault) -> None:
        body: dict[str, Any] = {
            "error": {
                "code": fault.status,
                "message": fault.message,
                "errors": [{"domain": "global", "reason": fault.reason, "message": fault.message}],
                "status": _STATUS_NAMES.get(fault.status, "UNKNOWN"),
            }
        }
        if fault.reason.startswith("invalid_") or fault.reason == "unsupported_grant_type":
            body = {"error": fault.reason, "error_description": fault.message}  # OAuth format
        headers = {"Content-Type": "application/json"}
        if fault.retry_after is not None:
            headers["Retry-After"] = fault.retry_after
        self._send(fault.status, headers, json.dumps(body).encode())

    def _serve_fault(self, fault: Fault) -> None:
        if fault is Fault.DROP_BEFORE:
            self.close_connection = True
            return
        retry_after = self.drive.faults.retry_after
        faults = {
            Fault.RATE_LIMIT: DriveFault(403, "rateLimitExceeded", "Rate Limit Exceeded"),
            Fault.USER_RATE_LIMIT: DriveFault(
                403, "userRateLimitExceeded", "User Rate Limit Exceeded"
            ),
            Fault.TOO_MANY_REQUESTS: DriveFault(
                429, "rateLimitExceeded", "Too Many Requests", retry_after
            ),
            Fault.SERVER_ERROR: DriveFault(500, "backendError", "Backend Error"),
            Fault.UNAVAILABLE: DriveFault(503, "backendError", "Service Unavailable"),
        }
        self._send_error(faults[fault])

    def _not_found(self, email: str) -> _Answer:
        raise DriveFault(404, "notFound", f"no route for {self.command} {self.path}")

    # -- Drive API ----------------------------------------------------------------------------

    def _about(self, email: str) -> _Answer:
        user = {"kind": "drive#user", "emailAddress": email, "me": True}
        return self._json(200, {"kind": "drive#about", "user": user})

    def _list(self, email: str) -> _Answer:
        query = self.params.get("q", "")
        size = min(int(self.params.get("pageSize", "100")), _MAX_PAGE_SIZE)
        offset = _decode_page_token(self.params.get("pageToken"), query)
        files = self.drive.store.list(email, query)
        page = files[offset : offset + size]
        result: dict[str, Any] = {
            "kind": "drive#fileList",
            "incompleteSearch": False,
            "files": [self.drive.store.resource(f, email) for f in page],
        }
        if offset + size < len(files):
            result["nextPageToken"] = _encode_page_token(offset + size, query)
        return self._json(200, result)

    def _generate_ids(self, email: str) -> _Answer:
        ids = self.drive.store.generate_ids(email, int(self.params.get("count", "10")))
        return self._json(200, {"kind": "drive#generatedIds", "space": "drive", "ids": ids})

    def _create_metadata(self, email: str) -> _Answer:
        created = self.drive.store.create(email, self._metadata())
        return self._json(200, self.drive.store.resource(created, email))

    def _metadata(self) -> dict[str, Any]:
        try:
            value = json.loads(self.body or b"{}")
        except ValueError as exc:
            raise DriveFault(400, "parseError", f"body is not JSON: {exc}") from exc
        if not isinstance(value, dict):
            raise DriveFault(400, "parseError", "body must be a JSON object")
        return value

    def _get(self, email: str, file_id: str) -> _Answer:
        stored = self.drive.store.get(email, file_id)
        if self.params.get("alt") != "media":
            return self._json(200, self.drive.store.resource(stored, email))
        if stored.mime_type == FOLDER_MIME:
            raise DriveFault(403, "fileNotDownloadable", "Only files with binary content")
        content = stored.content
        ranged = self.headers.get("Range")
        if not ranged:
            return 200, {"Content-Type": "application/octet-stream"}, content
        start, end = _parse_range(ranged, len(content))
        headers = {
            "Content-Type": "application/octet-stream",
            "Content-Range": f"bytes {start}-{end}/{len(content)}",
        }
        return 206, headers, content[start : end + 1]

    def _delete(self, email: str, file_id: str) -> _Answer:
        self.drive.store.delete(email, file_id)
        return 204, {}, b""

    def _share(self, email: str, file_id: str) -> _Answer:
        body = self._metadata()
        if body.get("type") != "user" or not isinstance(body.get("emailAddress"), str):
            raise DriveFault(400, "invalidSharingRequest", "only type=user with emailAddress")
        permission_id = self.drive.store.share(
            email, file_id, body["emailAddress"], str(body.get("role"))
        )
        permission = {"kind": "drive#permission", "id": permission_id, **body}
        return self._json(200, permission)

    # -- uploads ------------------------------------------------------------------------------

    def _upload(self, email: str) -> _Answer:
        store = self.drive.store
        kind = self.params.get("uploadType")
        if kind == "multipart":
            metadata, media = parse_multipart(self.headers.get("Content-Type", ""), self.body)
            return self._json(200, store.resource(store.create(email, metadata, media), email))
        if kind == "media":
            return self._json(200, store.resource(store.create(email, {}, self.body), email))
        if kind != "resumable":
            raise DriveFault(400, "invalid", f"uploadType {kind!r} is not supported")
        declared = self.headers.get("X-Upload-Content-Length")
        upload_id = store.start_upload(email, self._metadata(), int(declared) if declared else None)
        query = {"uploadType": "resumable", "upload_id": upload_id}
        if "fields" in self.params:
            query["fields"] = self.params["fields"]
        location = f"{self.drive.url}upload/drive/v3/files?{urllib.parse.urlencode(query)}"
        return 200, {"Location": location}, b""

    def _chunk(self, email: str) -> _Answer:
        store = self.drive.store
        upload_id = self.params.get("upload_id", "")
        upload = store.upload(email, upload_id)
        content_range = self.headers.get("Content-Range")
        with store.locked():
            if content_range is None:
                upload.data[:] = self.body
                upload.total = len(self.body)
            else:
                self._apply_chunk(upload.data, content_range, upload)
            if upload.total is not None and len(upload.data) == upload.total:
                return self._json(200, store.resource(store.finish_upload(email, upload_id), email))
        headers = {"Range": f"bytes=0-{len(upload.data) - 1}"} if upload.data else {}
        return 308, headers, b""

    def _apply_chunk(self, data: bytearray, content_range: str, upload: Any) -> None:
        unit, _, spec = content_range.partition(" ")
        span, _, total_text = spec.partition("/")
        if unit != "bytes":
            raise DriveFault(400, "badRange", f"bad Content-Range {content_range!r}")
        if total_text != "*":
            upload.total = int(total_text)
        if span == "*":  # status query
            return
        first_text, _, last_text = span.partition("-")
        first, last = int(first_text), int(last_text)
        if last - first + 1 != len(self.body):
            raise DriveFault(400, "badRange", "Content-Range does not match the body length")
        if first > len(data):
            raise DriveFault(400, "badRange", f"chunk starts at {first}, have {len(data)} bytes")
        final = upload.total is not None and last + 1 == upload.total
        if not final and len(self.body) % _CHUNK_GRANULARITY:
            raise DriveFault(400, "badRange", "non-final chunks must be multiples of 256 KiB")
        data[first:] = self.body

    # -- OAuth --------------------------------------------------------------------------------

    def _authorize(self, email: str) -> _Answer:
        redirect = self.params.get("redirect_uri")
        login = self.params.get("login_hint")
        if not redirect or not login:
            raise DriveFault(400, "invalid_request", "redirect_uri and login_hint are required")
        answer = {"code": self.drive.store.issue_code(login), "state": self.params.get("state", "")}
        location = f"{redirect}{'&' if '?' in redirect else '?'}{urllib.parse.urlencode(answer)}"
        return 302, {"Location": location}, b""

    def _token(self, email: str) -> _Answer:
        store = self.drive.store
        form = {k: v[-1] for k, v in urllib.parse.parse_qs(self.body.decode("utf-8")).items()}
        grant = form.get("grant_type")
        extra: dict[str, Any] = {}
        if grant == "refresh_token":
            account = store.account_for_refresh(form.get("refresh_token", ""))
        elif grant == "authorization_code":
            account = store.redeem_code(form.get("code", ""))
            extra["refresh_token"] = account.refresh_token
        elif grant == "urn:ietf:params:oauth:grant-type:jwt-bearer":
            claims = _jwt_claims(form.get("assertion", ""))
            account = store.account(str(claims.get("sub") or claims.get("iss") or ""))
        else:
            raise DriveFault(400, "unsupported_grant_type", f"grant_type {grant!r}")
        token = store.issue_token(account.email)
        answer = {"access_token": token, "expires_in": 3600, "token_type": "Bearer"}
        answer["scope"] = DRIVE_SCOPE
        return 200, {"Content-Type": "application/json"}, json.dumps(answer | extra).encode()


def _parse_range(header: str, size: int) -> tuple[int, int]:
    unit, _, span = header.partition("=")
    first_text, _, last_text = span.partition("-")
    try:
        first = int(first_text)
        last = int(last_text) if last_text else size - 1
    except ValueError:
        raise DriveFault(400, "badRange", f"bad Range {header!r}") from None
    if unit.strip() != "bytes" or first > last or first >= max(size, 1):
        raise DriveFault(416, "requestedRangeNotSatisfiable", f"Range {header!r} of {size}")
    return first, min(last, size - 1)


def _encode_page_token(offset: int, query: str) -> str:
    return base64.urlsafe_b64encode(json.dumps([offset, query]).encode()).decode()


def _decode_page_token(token: str | None, query: str) -> int:
    if not token:
        return 0
    try:
        offset, for_query = json.loads(base64.urlsafe_b64decode(token.encode()))
    except (ValueError, binascii.Error):
        raise DriveFault(400, "invalid", "Invalid pageToken") from None
    if for_query != query or not isinstance(offset, int):
        raise DriveFault(400, "invalid", "pageToken belongs to another query")
    return offset


def _jwt_claims(assertion: str) -> dict[str, Any]:
    """The claims of a JWT, unverified: the fake trusts whoever holds a key file."""
    try:
        payload = assertion.split(".")[1]
        claims = json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
    except (IndexError, ValueError, binascii.Error):
        raise DriveFault(400, "invalid_grant", "malformed assertion") from None
    if not isinstance(claims, dict):
        raise DriveFault(400, "invalid_grant", "malformed assertion")
    return claims
