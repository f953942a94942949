"""Address checks every transport can share: datasite emails, app names and endpoints.

They are as strict as a file-based transport must be (no path separators, ``..`` or control
characters), so a project that runs over an in-memory or database transport in tests fails the
same way it would over SyftBox, instead of passing there and writing ``../`` paths here.
"""

from __future__ import annotations

import re

from syft_flwr.errors import InvalidAddressError

__all__ = ["MAX_EMAIL_LENGTH", "check_app", "check_datasite", "check_endpoint"]

MAX_EMAIL_LENGTH = 254
"""RFC 5321's limit on a forward path; longer strings are not deliverable emails anywhere."""

_MAX_APP_LENGTH = 255
_SEGMENT_RE = re.compile(r"[A-Za-z0-9_][A-Za-z0-9._-]{0,127}")


def check_datasite(datasite: str) -> str:
    """Return ``datasite`` if it looks like an email that is safe as a folder name.

    :raises InvalidAddressError: it is not a string, is too long, has whitespace or control
        characters, path separators, ``..``, or not exactly one ``@`` between non-empty parts.
    """
    if not isinstance(datasite, str):
        raise InvalidAddressError(f"datasite {datasite!r} is not a string")
    local, at, domain = datasite.partition("@")
    problem = None
    if len(datasite) > MAX_EMAIL_LENGTH:
        problem = f"is longer than {MAX_EMAIL_LENGTH} characters"
    elif not at or not local or not domain or "@" in domain:
        problem = "must be an email with exactly one '@' between non-empty parts"
    elif any(ch.isspace() or not ch.isprintable() for ch in datasite):
        problem = "contains whitespace or control characters"
    elif "/" in datasite or "\\" in datasite or ".." in datasite:
        problem = "contains a path separator or '..'"
    if problem is not None:
        raise InvalidAddressError(f"datasite {datasite!r} {problem}")
    return datasite


def check_app(app: str) -> str:
    """Return ``app`` if it is one or more ``/``-separated path-safe segments (``flwr/demo``).

    :raises InvalidAddressError: empty, too long, a leading/trailing/double ``/``, or a segment
        with characters other than letters, digits, ``.``, ``_``, ``-`` (or starting with ``.``).
    """
    if not isinstance(app, str) or not app or len(app) > _MAX_APP_LENGTH:
        raise InvalidAddressError(
            f"app {app!r} must be a non-empty name of at most {_MAX_APP_LENGTH} characters"
        )
    if not all(_SEGMENT_RE.fullmatch(segment) for segment in app.split("/")):
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
