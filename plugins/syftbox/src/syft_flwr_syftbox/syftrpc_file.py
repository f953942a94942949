"""syft-rpc's JSON file format, byte for byte as syft-rpc (0.2.x to 0.4.x) writes it.

A request is the pydantic ``SyftRequest`` model dumped as compact JSON::

    {"id":"<uuid>","sender":"<email>","url":"syft://<recipient>/app_data/<app>/rpc/<endpoint>",
     "body":"<URL-safe base64>","headers":{},"created":"<ISO 8601>","expires":"<ISO 8601>",
     "method":"GET"}

and a response replaces ``method`` with ``status_code`` (200 OK, 419 expired, 4xx/5xx refused).
Key order, separators, the URL-safe base64 alphabet with padding and ``datetime.isoformat()``
timestamps match pydantic's output, so a file we write is indistinguishable from one syft-rpc
writes, and ``SyftRequest.load``/``SyftResponse.load`` read it. Reading accepts what pydantic
accepts in practice: either base64 alphabet, ``null`` bodies, ``Z`` or offset timestamps.

syft-rpc trusts the ``sender`` field; we return it as the file's *claim*, and the transport
compares it with the folder the file sits in.
"""

from __future__ import annotations

import base64
import binascii
import json
from datetime import UTC, datetime
from typing import Any, Final

from syft_flwr.errors import WireFormatError
from syft_flwr.transport import ReplyStatus, join_body
from syft_flwr_syftbox.layout import APP_DATA, RPC, FileKind, syft_url
from syft_flwr_syftbox.rpcfile import RpcFile, WireFormat

__all__ = ["decode", "encode", "max_file_size"]

_SCHEME: Final = "syft://"
_REQUEST_KEYS: Final = frozenset(
    {"id", "sender", "url", "body", "headers", "created", "expires", "method"}
)
_RESPONSE_KEYS: Final = (_REQUEST_KEYS - {"method"}) | {"status_code"}
_MAX_DETAIL: Final = 2000
_JSON_OVERHEAD: Final = 64 * 1024
_MAX_TIMESTAMP: Final = datetime(9999, 12, 31, tzinfo=UTC).timestamp()


def max_file_size(max_body_size: int) -> int:
    """The largest syft-rpc file that can carry a body of ``max_body_size`` bytes."""
    return 4 * (max_body_size // 3 + 1) + _JSON_OVERHEAD


def encode(rpc: RpcFile) -> list[bytes | memoryview]:
    """The file as frames: the JSON around the body, and the base64 body in between.

    A response that is not OK carries its ``detail`` as the body text, as syft-event does
    (``"Request expired"``); an empty body is ``null``, as syft-rpc writes for ``None``.
    """
    if rpc.kind is FileKind.REQUEST or rpc.status is ReplyStatus.OK:
        body = join_body(rpc.as_body())  # base64 needs it in one piece
    else:
        body = rpc.detail.encode("utf-8")
    head = (
        f'{{"id":{_dump(rpc.id)},"sender":{_dump(rpc.sender)},'
        f'"url":{_dump(syft_url(rpc.recipient, rpc.app, rpc.endpoint))},"body":'
    )
    times = (
        f',"headers":{{}},"created":{_dump(_iso(rpc.created))},'
        f'"expires":{_dump(_iso(rpc.expires))},'
    )
    last = '"method":"GET"}' if rpc.kind is FileKind.REQUEST else f'"status_code":{rpc.code}}}'
    if not body and rpc.kind is FileKind.RESPONSE:
        return [(head + "null" + times + last).encode()]
    encoded = base64.urlsafe_b64encode(body)
    return [(head + '"').encode(), encoded, ('"' + times + last).encode()]


def decode(data: bytes, kind: FileKind) -> RpcFile:
    """Decode a syft-rpc file's bytes.

    :raises WireFormatError: not JSON, a missing or mistyped field, a bad URL, timestamp or
        base64 body, or a file of the other kind.
    """
    try:
        document = json.loads(data)
    except (ValueError, UnicodeDecodeError) as exc:
        raise WireFormatError(f"not valid JSON (incomplete or corrupt): {exc}") from exc
    keys = _RESPONSE_KEYS if kind is FileKind.RESPONSE else _REQUEST_KEYS
    if not isinstance(document, dict) or not keys <= document.keys():
        raise WireFormatError(f"a syft-rpc {kind.name.lower()} needs the fields {sorted(keys)}")
    for key in ("id", "sender", "url", "created", "expires"):
        if not isinstance(document[key], str):
            raise WireFormatError(f"syft-rpc field {key!r} must be a string")
    recipient, app, endpoint = _parse_url(document["url"])
    body = _body(document["body"])
    status, detail, code = ReplyStatus.OK, "", 200
    if kind is FileKind.RESPONSE:
        code = document["status_code"]
        if isinstance(code, bool) or not isinstance(code, int):
            raise WireFormatError("syft-rpc field 'status_code' must be an integer")
        status, detail = _status(code, body)
        if status is not ReplyStatus.OK:
            body = b""
    return RpcFile(
        kind=kind,
        format=WireFormat.SYFT_RPC,
        id=document["id"],
        sender=document["sender"],
        recipient=recipient,
        app=app,
        endpoint=endpoint,
        created=_timestamp(document["created"]),
        expires=_timestamp(document["expires"]),
        body=body,
        status=status,
        detail=detail,
        code=code,
    )


def _dump(value: str) -> str:
    return json.dumps(value, ensure_ascii=False)


def _iso(timestamp: float) -> str:
    """ISO 8601 as pydantic writes it; times past year 9999 (a TTL of "forever") are clamped."""
    return datetime.fromtimestamp(min(max(timestamp, 0.0), _MAX_TIMESTAMP), UTC).isoformat()


def _timestamp(value: str) -> float:
    try:
        moment = datetime.fromisoformat(value)
    except ValueError as exc:
        raise WireFormatError(f"bad syft-rpc timestamp {value!r}: {exc}") from exc
    if moment.tzinfo is None:  # syft-rpc writes UTC; a naive time can only mean that too
        moment = moment.replace(tzinfo=UTC)
    return moment.timestamp()


def _parse_url(url: str) -> tuple[str, str, str]:
    """``syft://<recipient>/app_data/<app>/rpc/<endpoint>`` -> (recipient, app, endpoint)."""
    if not url.startswith(_SCHEME):
        raise WireFormatError(f"not a syft:// URL: {url!r}")
    recipient, _, path = url[len(_SCHEME) :].partition("/")
    prefix = APP_DATA + "/"
    app, marker, endpoint = path.rstrip("/").rpartition(f"/{RPC}/")
    if not recipient or not marker or not app.startswith(prefix):
        raise WireFormatError(f"not an RPC URL syft://<datasite>/app_data/<app>/rpc/...: {url!r}")
    return recipient, app[len(prefix) :], endpoint


def _body(value: Any) -> bytes:
    if value is None:
        return b""
    if not isinstance(value, str):
        raise WireFormatError("syft-rpc field 'body' must be base64 text or null")
    try:
        return base64.urlsafe_b64decode(value.replace("+", "-").replace("/", "_"))
    except (binascii.Error, ValueError) as exc:
        raise WireFormatError(f"syft-rpc body is not valid base64: {exc}") from exc


def _status(code: int, body: bytes) -> tuple[ReplyStatus, str]:
    if 200 <= code < 300:
        return ReplyStatus.OK, ""
    text = body[:_MAX_DETAIL].decode("utf-8", errors="replace")
    if code == 419:
        return ReplyStatus.EXPIRED, text or "the request expired"
    return ReplyStatus.REJECTED, f"status {code}: {text}" if text else f"status {code}"
