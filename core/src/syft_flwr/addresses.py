"""The one set of address checks every transport uses: datasite emails, apps, endpoints, ids.

The defaults are as strict as a file-based transport must be (no path separators, ``..`` or
control characters, bounded lengths), so a project that runs over an in-memory or database
transport in tests fails the same way it would over SyftBox, instead of passing there and
writing ``../`` paths here. A transport whose medium needs more says so with an explicit option
(``syft_url=True`` for names that go into ``syft://`` URLs, ``forbid="'"`` for a query language,
``max_segments`` for a folder depth) rather than keeping a copy of these rules with its own.
"""

from __future__ import annotations

import re

from syft_flwr.errors import InvalidAddressError

__all__ = [
    "MAX_EMAIL_LENGTH",
    "check_app",
    "check_datasite",
    "check_endpoint",
    "check_request_id",
    "is_datasite",
]

MAX_EMAIL_LENGTH = 254
"""RFC 5321's limit on a forward path; longer strings are not deliverable emails anywhere."""

_MAX_APP_LENGTH = 255
_SEGMENT_RE = re.compile(r"[A-Za-z0-9_][A-Za-z0-9._-]{0,127}")
_SYFT_EMAIL_RE = re.compile(r"[A-Za-z0-9_+-][A-Za-z0-9_.+-]*@[A-Za-z0-9-]+(?:\.[A-Za-z0-9-]+)+")
_ID_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9_-]{0,127}")


def _datasite_problem(datasite: object, syft_url: bool, forbid: str) -> str | None:
    if not isinstance(datasite, str):
        return "is not a string"
    local, at, domain = datasite.partition("@")
    if len(datasite) > MAX_EMAIL_LENGTH:
        return f"is longer than {MAX_EMAIL_LENGTH} characters"
    if not at or not local or not domain or "@" in domain:
        return "must be an email with exactly one '@' between non-empty parts"
    if any(ch.isspace() or not ch.isprintable() for ch in datasite):
        return "contains whitespace or control characters"
    if "/" in datasite or "\\" in datasite or ".." in datasite:
        return "contains a path separator or '..'"
    if syft_url and _SYFT_EMAIL_RE.fullmatch(datasite) is None:
        return (
            "is not an email a syft:// URL can carry: expected name@domain.tld with letters, "
            "digits, '_', '.', '+' or '-' (no leading '.')"
        )
    bad = sorted({ch for ch in datasite if ch in forbid})
    if bad:
        return f"must not contain {', '.join(repr(ch) for ch in bad)}"
    return None


def is_datasite(value: object, *, syft_url: bool = False, forbid: str = "") -> bool:
    """Whether :func:`check_datasite` with the same options accepts ``value``."""
    return _datasite_problem(value, syft_url, forbid) is None


def check_datasite(datasite: str, *, syft_url: bool = False, forbid: str = "") -> str:
    """Return ``datasite`` if it looks like an email that is safe as a folder name.

    :param syft_url: also require the pattern syft-core's ``SyftBoxURL`` accepts (letters,
        digits, ``_.+-`` around one ``@``, no leading ``.``, a dot in the domain), so the
        address can be written into a syft-rpc file and parsed back by the real SyftBox stack.
    :param forbid: characters the medium cannot carry unescaped (a Drive query's ``'``).
    :raises InvalidAddressError: it is not a string, is too long, has whitespace or control
        characters, path separators, ``..``, not exactly one ``@`` between non-empty parts, or
        breaks an option; the message says which.
    """
    problem = _datasite_problem(datasite, syft_url, forbid)
    if problem is not None:
        raise InvalidAddressError(f"datasite {datasite!r} {problem}")
    return datasite


def check_app(app: str, *, max_segments: int | None = None) -> str:
    """Return ``app`` if it is one or more ``/``-separated path-safe segments (``flwr/demo``).

    :param max_segments: the most segments (folder levels) the medium allows; unbounded when
        ``None``.
    :raises InvalidAddressError: empty, longer than 255 characters, a leading/trailing/double
        ``/``, too many segments, or a segment with characters other than letters, digits,
        ``.``, ``_``, ``-`` (or starting with ``.``, which rules out ``.`` and ``..``).
    """
    if not isinstance(app, str) or not app or len(app) > _MAX_APP_LENGTH:
        raise InvalidAddressError(
            f"app {app!r} must be a non-empty name of at most {_MAX_APP_LENGTH} characters"
        )
    segments = app.split("/")
    if max_segments is not None and len(segments) > max_segments:
        raise InvalidAddressError(
            f"app {app!r} has {len(segments)} '/'-separated segments; at most {max_segments} "
            "are allowed here"
        )
    if not all(_SEGMENT_RE.fullmatch(segment) for segment in segments):
        raise InvalidAddressError(
            f"app {app!r} must be '/'-separated segments of letters, digits, '.', '_' or '-' "
            "(no empty segment, no segment starting with '.')"
        )
    return app


def check_endpoint(endpoint: str) -> str:
    """Return ``endpoint`` if it is a single path-safe segment (``messages``).

    :raises InvalidAddressError: empty, containing ``/``, or any character ``check_app`` refuses.
    """
    if not isinstance(endpoint, str) or not _SEGMENT_RE.fullmatch(endpoint):
        raise InvalidAddressError(
            f"endpoint {endpoint!r} must be one segment of letters, digits, '.', '_' or '-' "
            "not starting with '.'"
        )
    return endpoint


def check_request_id(request_id: str) -> str:
    """Return ``request_id`` if it can name a ``<id>.request`` file unambiguously.

    Ids have no dots, so ``<id>.request`` and ``<id>.response`` split back into id and kind
    in exactly one way; syft-rpc's UUIDs (``8-4-4-4-12`` hex with dashes) pass.

    :raises InvalidAddressError: empty, longer than 128 characters, or characters other than
        letters, digits, ``_`` and ``-`` (first character alphanumeric).
    """
    if not isinstance(request_id, str) or not _ID_RE.fullmatch(request_id):
        raise InvalidAddressError(
            f"request id {request_id!r} must be 1 to 128 letters, digits, '_' or '-' "
            "starting with a letter or digit"
        )
    return request_id
