"""Parsing and shaping HTTP payloads the way Drive does: multipart bodies and ``fields``."""

from __future__ import annotations

import json
import re
from typing import Any

from syft_flwr_gdrive.testing.store import DriveFault

__all__ = ["parse_multipart", "project"]

_BOUNDARY_RE = re.compile(r'boundary="?([^";]+)"?')


def parse_multipart(content_type: str, body: bytes) -> tuple[dict[str, Any], bytes]:
    """Split a ``multipart/related`` upload into its JSON metadata and its media bytes.

    Accepts both CRLF and the bare LF line endings ``googleapiclient`` writes.

    :raises DriveFault: 400 if the body is not exactly metadata plus media.
    """
    match = _BOUNDARY_RE.search(content_type)
    if not content_type.startswith("multipart/related") or match is None:
        raise DriveFault(
            400, "badContent", "multipart upload needs multipart/related with boundary"
        )
    delimiter = b"--" + match.group(1).encode("latin-1")
    chunks = body.split(delimiter)
    # chunks: preamble, part 1, part 2, "--" epilogue
    if len(chunks) != 4 or not chunks[3].startswith(b"--"):
        raise DriveFault(400, "badContent", "multipart upload must have exactly two parts")
    parts = [_part_body(chunk) for chunk in chunks[1:3]]
    try:
        metadata = json.loads(parts[0])
    except ValueError as exc:
        raise DriveFault(400, "parseError", f"metadata part is not JSON: {exc}") from exc
    if not isinstance(metadata, dict):
        raise DriveFault(400, "parseError", "metadata part must be a JSON object")
    return metadata, parts[1]


def _part_body(chunk: bytes) -> bytes:
    for line_end in (b"\r\n", b"\n"):
        if chunk.startswith(line_end):
            chunk = chunk[len(line_end) :]
            break
    ends = [(chunk.find(sep), len(sep)) for sep in (b"\r\n\r\n", b"\n\n") if sep in chunk]
    if not ends:
        raise DriveFault(400, "badContent", "multipart part has no header/body separator")
    index, size = min(ends)
    rest = chunk[index + size :]
    # The line break before the next delimiter belongs to the delimiter, not the content.
    if rest.endswith(b"\r\n"):
        return rest[:-2]
    if rest.endswith(b"\n"):
        return rest[:-1]
    return rest


def _split_top(fields: str) -> list[str]:
    items: list[str] = []
    depth = 0
    current = ""
    for char in fields:
        if char == "," and depth == 0:
            items.append(current.strip())
            current = ""
            continue
        depth += char == "("
        depth -= char == ")"
        current += char
    if current.strip():
        items.append(current.strip())
    return items


def project(value: Any, fields: str | None) -> Any:
    """Keep only the parts of a JSON value that a Drive ``fields`` selector names.

    Supports ``a,b``, nested ``a(b,c)``, ``a/b`` and ``*``; ``None`` keeps everything.
    """
    if fields is None or fields.strip() in {"", "*"}:
        return value
    if isinstance(value, list):
        return [project(item, fields) for item in value]
    if not isinstance(value, dict):
        return value
    kept: dict[str, Any] = {}
    for item in _split_top(fields):
        name, _, rest = item.partition("(")
        name, slash, sub = name.strip().partition("/")
        inner = rest[:-1] if rest else (sub if slash else None)
        if name in value:
            kept[name] = project(value[name], inner)
    return kept
