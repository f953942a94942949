"""What a listed Drive object may be taken for: a message file, checked before it is trusted.

Every field of a listing was chosen by someone else: a file's owner picks its name, content and
``appProperties``, and anyone allowed to write into a folder can add objects of any kind to it.
So an object in an inbox endpoint folder that is named like a message becomes a
:class:`MessageFile` only if every part of it checks out:

- it is a file with content, not a folder or a Google Workspace object (which has no bytes to
  download) of the same name;
- its owner is the peer the pair folder is from: that is what makes the peer its sender;
- it has a size (checked against ``max_body_size`` before a byte is downloaded);
- its ``appProperties`` are ours or absent: an expiry that is not a number (``NaN`` would never
  expire) or a status we never write makes it foreign.

Otherwise it is :class:`Foreign`: the transport ignores it, warns once, and never routes it.
"""

from __future__ import annotations

import math
import re
import time
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from syft_flwr.transport import ReplyStatus
from syft_flwr_gdrive.folders import Endpoint, owner_of
from syft_flwr_gdrive.layout import (
    FOLDER_MIME,
    PROP_DETAIL,
    PROP_EXPIRES,
    PROP_STATUS,
    is_file_id,
    parse_message_name,
)

__all__ = ["Foreign", "MessageFile", "classify", "expiry"]

_WORKSPACE_MIME = "application/vnd.google-apps."
"""Prefix of folders, Docs, shortcuts...: objects without downloadable content."""
_SIZE_RE = re.compile(r"[0-9]{1,19}")


@dataclass(frozen=True)
class MessageFile:
    """A message file every listed part of which checked out.

    :param file_id: the Drive file id.
    :param message_id: the request or future id its name carries.
    :param kind: ``request`` or ``response``.
    :param endpoint: the inbox endpoint folder it is in (its peer is the file's owner).
    :param size: its listed size in bytes.
    :param created_at: when Drive says it was created (seconds since the epoch).
    :param expires_at: its expiry, ``inf`` when it has none (syft-flwr 0.5 writes none).
    :param rejected: it answers ``REJECTED`` (our ``syft_flwr_status`` property).
    :param detail: the ``syft_flwr_detail`` property, ``""`` if absent.
    """

    file_id: str
    message_id: str
    kind: str
    endpoint: Endpoint
    size: int
    created_at: float
    expires_at: float
    rejected: bool = False
    detail: str = ""


@dataclass(frozen=True)
class Foreign:
    """An object named like a message in an inbox endpoint folder that is not one.

    :param file_id: the Drive id, so it is warned about once.
    :param name: its name.
    :param endpoint: the folder it is in.
    :param reason: why it is not taken for a message.
    """

    file_id: str
    name: str
    endpoint: Endpoint
    reason: str


def classify(
    file: Mapping[str, Any], leaves: Mapping[str, Endpoint]
) -> MessageFile | Foreign | None:
    """What a listed object is to the transport.

    :param leaves: the inbox endpoint folders of the poll (folder id -> endpoint).
    :return: ``None`` for an object that is no business of the message path (outside the inbox
        endpoint folders, named otherwise, or without an id to remember it by); else a
        :class:`MessageFile`, or :class:`Foreign` with the reason it is not one.
    """
    file_id, name, parents = file.get("id"), file.get("name"), file.get("parents")
    if not is_file_id(file_id) or not isinstance(name, str) or not isinstance(parents, list):
        return None
    endpoint = leaves.get(parents[0]) if parents and isinstance(parents[0], str) else None
    parsed = parse_message_name(name)
    if endpoint is None or parsed is None:
        return None
    properties = file.get("appProperties") or {}
    reason = _distrust(file, endpoint, properties)
    if reason is not None:
        return Foreign(file_id, name, endpoint, reason)
    return MessageFile(
        file_id=file_id,
        message_id=parsed[0],
        kind=parsed[1],
        endpoint=endpoint,
        size=int(file["size"]),
        created_at=_created(file.get("createdTime")),
        expires_at=expiry(properties),
        rejected=properties.get(PROP_STATUS) == ReplyStatus.REJECTED.value,
        detail=properties.get(PROP_DETAIL, ""),
    )


def _distrust(file: Mapping[str, Any], endpoint: Endpoint, properties: Any) -> str | None:
    """Why a message-named object cannot be a message from ``endpoint.peer``, if it cannot."""
    mime = file.get("mimeType")
    if mime == FOLDER_MIME:
        return "it is a folder"
    if not isinstance(mime, str) or mime.startswith(_WORKSPACE_MIME):
        return f"it is a {mime!r} object, not a file with content"
    owner = owner_of(file)
    if not owner:
        # Drive lists shared-drive items without owners and may hide an owner's email; either
        # way nothing says the peer wrote it. No layout this transport learns puts messages
        # there (pair and chain folders must be owned by the peer or us), so refusing costs
        # nothing legitimate.
        return "Drive names no owner for it, so nothing says who wrote it"
    if owner != endpoint.peer.lower():
        return f"it was written by {owner}"
    size = file.get("size")
    if not isinstance(size, str) or not _SIZE_RE.fullmatch(size):
        return f"its listed size {size!r} is not a number of bytes"
    return _odd_properties(properties)


def _odd_properties(properties: Any) -> str | None:
    """Why ``appProperties`` are not ones we (or an older syft-flwr, writing none) write."""
    if not isinstance(properties, dict) or not all(
        isinstance(key, str) and isinstance(value, str) for key, value in properties.items()
    ):
        return "its appProperties are not a map of strings"
    if math.isnan(expiry(properties)):
        return f"its expiry {properties.get(PROP_EXPIRES)!r} is not a time"
    status = properties.get(PROP_STATUS)
    if status is not None and status != ReplyStatus.REJECTED.value:
        return f"its status {status!r} is not one this transport writes"
    return None


def expiry(properties: object) -> float:
    """The expiry ``appProperties`` hold: ``inf`` for none, ``nan`` for anything not a number."""
    raw = properties.get(PROP_EXPIRES) if isinstance(properties, dict) else None
    if raw is None:
        return math.inf
    try:
        return float(raw)
    except (TypeError, ValueError):
        return math.nan


def _created(raw: object) -> float:
    """Drive's ``createdTime`` as a timestamp (now, if it is not one)."""
    try:
        return datetime.fromisoformat(str(raw).replace("Z", "+00:00")).timestamp()
    except (ValueError, OverflowError, OSError):
        return time.time()
