"""Names on Drive, compatible with syft-flwr 0.5.x's Drive ("p2p") mode.

::

    SyftBox/                                          (root_folder_name, in My Drive)
      syft_outbox_inbox_<sender>_to_<recipient>/      (owned by sender, shared with recipient)
        <app>/rpc/<endpoint>/<id>.request             (sender -> recipient)
      syft_outbox_inbox_<recipient>_to_<sender>/
        <app>/rpc/<endpoint>/<id>.response            (the answer travels back the same way)

``<app>`` is one folder even when it contains ``/`` (``flwr/demo``), as syft-flwr writes it.
Our files also carry ``appProperties`` (expiry, status): syft-flwr ignores them, and they let a
peer skip expired requests and let us find our own leftovers with one indexed query.

Addresses are checked with the core's :mod:`syft_flwr.addresses` (as strictly as a file-system
transport checks them, so a run that works here works on every transport), emails also without
the quote a Drive query would have to escape (:data:`QUERY_UNSAFE`). Every name read back from
Drive goes through the same checks before it is routed.
"""

from __future__ import annotations

import re
from typing import Final, TypeGuard

from syft_flwr.addresses import check_datasite, check_request_id
from syft_flwr.errors import InvalidAddressError

__all__ = [
    "FOLDER_MIME",
    "KIND_REQUEST",
    "KIND_RESPONSE",
    "MARKER",
    "PAIR_PREFIX",
    "PROP_DETAIL",
    "PROP_EXPIRES",
    "PROP_STATUS",
    "QUERY_UNSAFE",
    "is_file_id",
    "message_name",
    "pair_name",
    "parse_message_name",
    "peer_of_inbox",
    "quote",
]

FOLDER_MIME: Final = "application/vnd.google-apps.folder"
PAIR_PREFIX: Final = "syft_outbox_inbox_"
KIND_REQUEST: Final = "request"
KIND_RESPONSE: Final = "response"

MARKER: Final = ("syft_flwr", "1")
"""An ``appProperties`` entry on every file we write (queryable with ``appProperties has``)."""
PROP_EXPIRES: Final = "syft_flwr_expires"
PROP_STATUS: Final = "syft_flwr_status"
PROP_DETAIL: Final = "syft_flwr_detail"

QUERY_UNSAFE: Final = "'"
"""What an email must not contain here: every Drive query naming its pair folder would have to
escape it (``check_datasite(email, forbid=QUERY_UNSAFE)``)."""

_MESSAGE_RE = re.compile(r"(?P<id>[A-Za-z0-9][A-Za-z0-9_-]{0,127})\.(?P<kind>request|response)")
_FILE_ID_RE = re.compile(r"[A-Za-z0-9_-]{1,256}")


def is_file_id(value: object) -> TypeGuard[str]:
    """Whether ``value`` looks like a Drive file id (safe in a URL path and a log line)."""
    return isinstance(value, str) and _FILE_ID_RE.fullmatch(value) is not None


def pair_name(sender: str, recipient: str) -> str:
    """The folder carrying messages from ``sender`` to ``recipient``."""
    return f"{PAIR_PREFIX}{sender}_to_{recipient}"


def peer_of_inbox(name: str, me: str) -> str | None:
    """The sender if ``name`` is a pair folder addressed to ``me``, else ``None``.

    Parsed against our own (known) email rather than by splitting on ``_``, so emails with
    underscores or ``_to_`` in them are read correctly.
    """
    suffix = f"_to_{me}".lower()
    lowered = name.lower()
    if not lowered.startswith(PAIR_PREFIX) or not lowered.endswith(suffix):
        return None
    return _valid_email(name[len(PAIR_PREFIX) : len(name) - len(suffix)])


def _valid_email(candidate: str) -> str | None:
    try:
        return check_datasite(candidate, forbid=QUERY_UNSAFE)
    except InvalidAddressError:
        return None


def message_name(message_id: str, kind: str) -> str:
    """``<id>.request`` or ``<id>.response``.

    :raises InvalidAddressError: the id is not a safe file-name stem.
    """
    return f"{check_request_id(message_id)}.{kind}"


def parse_message_name(name: str) -> tuple[str, str] | None:
    """``(id, kind)`` for a message file name, ``None`` for anything else."""
    match = _MESSAGE_RE.fullmatch(name)
    return (match["id"], match["kind"]) if match else None


def quote(value: str) -> str:
    """``value`` as a string literal of Drive's query language."""
    return "'" + value.replace("\\", "\\\\").replace("'", "\\'") + "'"
