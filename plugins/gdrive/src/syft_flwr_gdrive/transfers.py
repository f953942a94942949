"""Moving bodies: multipart and resumable chunked uploads, ranged downloads, our own retries.

Uploads resend real bytes from the caller's buffer, which is what the client library's chunk
retry cannot do for streams. URLs and headers come from requests built by ``googleapiclient``
(so they follow the discovery document and the rewritten ``rootUrl``); only the body framing
and the chunk protocol are done here:

- multipart: one ``POST ...?uploadType=multipart`` whose ``multipart/related`` body we frame
  ourselves with CRLF line breaks (RFC 2046). ``googleapiclient`` frames with bare LF, so a body
  whose last byte is CR (``0x0D``) reaches the server as ``...\\r\\n--boundary``, which a parser
  reading RFC 2046's delimiter (``CRLF--boundary``) ends one byte early. A sealed envelope ends
  in a random AES-GCM tag, so that was one encrypted message in 256 failing authentication.
  With CRLF framing the content is always followed by ``\\r\\n--boundary``, so a strict parser
  and one that also accepts bare LF both give back exactly the bytes sent.
- resumable: ``POST ...?uploadType=resumable`` with the metadata answers ``Location``; each
  ``PUT`` carries ``Content-Range: bytes a-b/total`` and is answered 308 (with ``Range`` saying
  what the server holds) until the last one returns the file. After a failure we ask
  (``Content-Range: bytes */total``) and continue from what the server committed; an expired
  session (404/410) starts over.
- download: ``GET ...?alt=media`` with ``Range: bytes=a-b`` per chunk, 206 answers carrying
  ``Content-Range: bytes a-b/total``; never past the size the file was listed with, and an
  answer that disagrees with that size is refused, not trusted.
"""

from __future__ import annotations

import json
import re
import secrets
from collections.abc import Mapping, Sequence
from typing import Any

from googleapiclient.errors import HttpError  # type: ignore[import-untyped]

from syft_flwr_gdrive.errors import DriveContentError, DriveError
from syft_flwr_gdrive.retry import Retrier
from syft_flwr_gdrive.service import DriveService

__all__ = ["download", "multipart_body", "multipart_upload", "resumable_upload"]

_RANGE_RE = re.compile(r"bytes=?\s*(\d+)-(\d+)")
_CONTENT_RANGE_RE = re.compile(r"bytes (\d+)-(\d+)/(\d+|\*)")
_SESSION_GONE = {404, 410}


def _raise_for(status: int, response: Any, content: bytes, uri: str, ok: set[int]) -> None:
    if status not in ok:
        raise HttpError(response, content, uri=uri)


def multipart_body(
    metadata: Mapping[str, Any], media: Sequence[memoryview], media_type: str
) -> tuple[str, bytes]:
    """A ``multipart/related`` upload body (metadata, then media), framed with CRLF.

    The boundary is random and checked not to occur in the media (a ``--boundary`` there
    would end the part early), so the only ones in the body are the delimiters; the CRLF before
    each delimiter belongs to it (RFC 2046). The media (the frames of one body) is copied once,
    into the body.

    :return: the ``Content-Type`` header value and the body.
    """
    while True:
        boundary = f"syft_flwr_{secrets.token_hex(16)}"
        marker = f"--{boundary}".encode("ascii")
        head = (
            f"{marker.decode()}\r\n"
            "Content-Type: application/json; charset=UTF-8\r\n\r\n"
            f"{json.dumps(dict(metadata))}\r\n"
            f"{marker.decode()}\r\n"
            f"Content-Type: {media_type}\r\n\r\n"
        ).encode()
        body = b"".join((head, *media, b"\r\n", marker, b"--\r\n"))
        size = sum(frame.nbytes for frame in media)
        # The marker has no line break and CRLF surrounds the media, so a match cannot
        # straddle its ends: searching inside it is enough.
        if body.find(marker, len(head), len(head) + size) < 0:
            return f'multipart/related; boundary="{boundary}"', body


def multipart_upload(
    service: DriveService,
    start: Any,
    metadata: Mapping[str, Any],
    body: Sequence[memoryview],
    media_type: str,
) -> dict[str, Any]:
    """Create a file with ``metadata`` and content ``body`` in one multipart request.

    One attempt (the caller retries): on failure nothing is kept, the next attempt resends the
    whole body.

    :param start: a ``files().create(..., media_body=MediaIoBaseUpload(..., resumable=False))``
        request with the same metadata; its URI and headers are used, not its body.
    :return: the created file's JSON.
    :raises HttpError: Drive answered with an error.
    """
    content_type, payload = multipart_body(metadata, body, media_type)
    headers = {k: v for k, v in start.headers.items() if k.lower() != "content-length"}
    headers["content-type"] = content_type
    response, content = service.http().request(
        start.uri, method="POST", body=payload, headers=headers
    )
    _raise_for(response.status, response, content, start.uri, {200, 201})
    return dict(json.loads(content)) if content else {}


def resumable_upload(
    service: DriveService,
    start: Any,
    body: Sequence[memoryview],
    chunk_size: int,
    retrier: Retrier,
    what: str,
) -> dict[str, Any]:
    """Upload ``body`` (the frames of one body) through a resumable session opened with the
    built request ``start``; each chunk is copied out of the frames as it is sent.

    :param start: a ``files().create(..., media_body=MediaIoBaseUpload(..., resumable=True))``
        request; its URI, metadata body and headers open the session.
    :return: the created file's JSON (empty if an earlier attempt turned out to have created it).
    :raises DriveError: the upload failed for good (see :class:`Retrier`).
    """
    total = sum(frame.nbytes for frame in body)
    failures = 0
    session: str | None = None
    offset = 0
    probe = False
    while True:
        try:
            if session is None:
                session, offset, probe = _open(service, start, total), 0, False
            if probe:
                offset_or_file = _probe(service, session, total)
                probe = False
            else:
                offset_or_file = _put(service, session, body, offset, chunk_size)
            if isinstance(offset_or_file, dict):
                return offset_or_file
            if offset_or_file > offset:
                failures = 0
            offset = offset_or_file
        except HttpError as exc:
            if int(exc.resp.status) == 409:
                return {}  # the file id is taken: an earlier session's lost answer succeeded
            failures += 1
            gone = int(exc.resp.status) in _SESSION_GONE and session is not None
            if gone and failures < retrier.policy.attempts:
                session = None  # the session expired: start over
                continue
            retrier.backoff(exc, failures, what)
            probe = session is not None
        except DriveError:
            raise
        except Exception as exc:
            failures += 1
            retrier.backoff(exc, failures, what)
            probe = session is not None


def _open(service: DriveService, start: Any, total: int) -> str:
    headers = dict(start.headers)
    headers["X-Upload-Content-Type"] = start.resumable.mimetype()
    headers["X-Upload-Content-Length"] = str(total)
    response, content = service.http().request(
        start.uri, method="POST", body=start.body, headers=headers
    )
    _raise_for(response.status, response, content, start.uri, {200, 201})
    location = response.get("location")
    if not location:
        raise DriveError("Drive opened a resumable upload without a Location header")
    return str(location)


def _committed(response: Any) -> int:
    match = _RANGE_RE.search(response.get("range", ""))
    return int(match.group(2)) + 1 if match else 0


def _probe(service: DriveService, session: str, total: int) -> int | dict[str, Any]:
    headers = {"Content-Range": f"bytes */{total}", "Content-Length": "0"}
    response, content = service.http().request(session, method="PUT", body=b"", headers=headers)
    _raise_for(response.status, response, content, session, {200, 201, 308})
    if response.status in (200, 201):
        return dict(json.loads(content))
    return _committed(response)


def _put(
    service: DriveService, session: str, body: Sequence[memoryview], offset: int, chunk_size: int
) -> int | dict[str, Any]:
    total = sum(frame.nbytes for frame in body)
    end = min(offset + chunk_size, total)
    chunk = _span(body, offset, end)
    headers = {
        "Content-Range": f"bytes {offset}-{end - 1}/{total}" if total else f"bytes */{total}",
        "Content-Length": str(len(chunk)),
    }
    response, content = service.http().request(session, method="PUT", body=chunk, headers=headers)
    _raise_for(response.status, response, content, session, {200, 201, 308})
    if response.status in (200, 201):
        return dict(json.loads(content))
    return _committed(response)


def download(
    service: DriveService, uri: str, size: int, chunk_size: int, retrier: Retrier, what: str
) -> bytes:
    """Fetch exactly the ``size`` bytes listed for the media at ``uri`` (``...?alt=media``).

    The listed size bounds what is read: every range asked for lies inside it, and an answer
    with more bytes than asked for, a total other than ``size``, or an end before ``size``
    bytes raises :class:`DriveContentError` instead of being kept. So a file that grew after it
    was listed (or was checked against ``max_body_size`` at a false size) is never read whole.
    ``httplib2`` reads each answer before it can be looked at, so a server that ignores
    ``Range`` costs the length of one answer once; nothing beyond ``size`` is ever kept. The
    ranges go straight into one buffer of ``size`` bytes, handed over as it is (a
    ``bytearray``): the body is held once, not once more to make it ``bytes``.

    :param size: the size Drive listed for the file; an empty file needs no request.
    :raises HttpError: 404 when the file is gone (for the caller to handle).
    :raises DriveContentError: the content disagrees with ``size``.
    :raises DriveError: the download failed for good.
    """
    data = bytearray(size)  # filled in place: a model is never copied to join its ranges
    view = memoryview(data)
    start = 0
    failures = 0
    while start < size:
        end = min(start + chunk_size, size) - 1
        try:
            response, content = service.http().request(
                uri, method="GET", headers={"Range": f"bytes={start}-{end}"}
            )
            _raise_for(response.status, response, content, uri, {200, 206})
        except HttpError as exc:
            if int(exc.resp.status) == 404:
                raise
            failures += 1
            retrier.backoff(exc, failures, what)
            continue
        except Exception as exc:
            failures += 1
            retrier.backoff(exc, failures, what)
            continue
        failures = 0
        if response.status == 200:  # the server ignored Range and sent everything at once
            return _whole(content, size)
        piece = _ranged(response, content, start, end, size)
        view[start : start + len(piece)] = piece
        start += len(piece)
    view.release()
    return data  # type: ignore[return-value]  # a bytes-like body, not copied into bytes


def _whole(content: bytes, size: int) -> bytes:
    """A ``200`` answer's content, if it is exactly the listed ``size``."""
    if len(content) != size:
        raise DriveContentError(
            f"Drive sent {len(content)} bytes for a file listed with {size} bytes"
        )
    return bytes(content)


def _ranged(response: Any, content: bytes, start: int, end: int, size: int) -> bytes:
    """A ``206`` answer's content, if it is a non-empty part of ``start..end`` of a file of
    ``size`` bytes, beginning at ``start``."""
    header = response.get("content-range", "")
    match = _CONTENT_RANGE_RE.match(header)
    if match is None or int(match.group(1)) != start:
        raise DriveError(f"Drive answered a ranged download with {header!r}")
    last, total = int(match.group(2)), match.group(3)
    if total != "*" and int(total) != size:
        raise DriveContentError(f"Drive holds {total} bytes of a file listed with {size} bytes")
    if not content or last > end or len(content) != last - start + 1:
        raise DriveContentError(
            f"Drive answered bytes {start}-{end} of a {size}-byte file with {len(content)} "
            f"bytes as {header!r}"
        )
    return content


def _span(frames: Sequence[memoryview], start: int, end: int) -> bytes:
    """Bytes ``start:end`` of the frames' concatenation (one copy of just that range)."""
    pieces: list[memoryview] = []
    position = 0
    for frame in frames:
        low, high = max(start - position, 0), min(end - position, frame.nbytes)
        if low < high:
            pieces.append(frame[low:high])
        position += frame.nbytes
        if position >= end:
            break
    return b"".join(pieces)
