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

    Accepts both CRLF and the bare LF line endings ``googleapiclient`` writes. The line break
    that ends the opening delimiter line says which one the writer uses, and exactly that line
    break before the next delimiter belongs to the delimiter (RFC 2046), not to the content:
    with bare LF framing, content ending in CR is followed by ``\\r\\n--boundary`` and keeps its
    CR.

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
    line_end = next((end for end in (b"\r\n", b"\n") if chunks[1].startswith(end)), None)
    if line_end is None:
        raise DriveFault(400, "badContent", "multipart delimiter line does not end in a line break")
    parts = [_part_body(chunk, line_end) for chunk in chunks[1:3]]
    try:
        metadata = json.loads(parts[0])
    except ValueError as exc:
        raise DriveFault(400, "parseError", f"metadata part is not JSON: {exc}") from exc
    if not isinstance(metadata, dict):
        raise DriveFault(400, "parseError", "metadata part must be a JSON object")
    return metadata, parts[1]


def _part_body(chunk: bytes, line_end: bytes) -> bytes:
    """The content of one part: after its headers, before the line break of the next delimiter.

    :param line_end: the writer's line break (``\\r\\n`` or ``\\n``).
    """
    if not chunk.startswith(line_end) or not chunk.endswith(line_end):
        raise DriveFault(400, "badContent", "multipart delimiters must be on lines of their own")
    chunk = chunk[len(line_end) : -len(line_end)]
    if chunk.startswith(line_end):  # a part without headers
        return chunk[len(line_end) :]
    index = chunk.find(line_end * 2)
    if index < 0:
        raise DriveFault(400, "badContent", "multipart part has no header/body separator")
    return chunk[index + 2 * len(line_end) :]


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
