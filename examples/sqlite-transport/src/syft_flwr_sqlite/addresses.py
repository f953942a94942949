"""Address checks: which datasite emails, app names and endpoints the transport accepts.

SQLite binds every value as a parameter, so nothing here protects the database from
injection. The checks exist because addresses outlive this transport: the same project may
run over a file-based transport tomorrow, where ``../`` in an email is a path traversal. A
transport that accepts what another would refuse lets a bug pass here and fail there, so
this one is exactly as strict as a file-based transport must be.
"""

from __future__ import annotations

import re

from syft_flwr.errors import InvalidAddressError

__all__ = ["check_app", "check_datasite", "check_endpoint"]

MAX_EMAIL_LENGTH = 254
"""RFC 5321's limit on a forward path: a longer string is not a deliverable email anywhere."""

MAX_APP_LENGTH = 255

_SEGMENT_RE = re.compile(r"[A-Za-z0-9_][A-Za-z0-9._-]{0,127}")
"""One path-safe name: letters, digits, ``.``, ``_``, ``-``, not starting with ``.``."""


def check_datasite(datasite: str) -> str:
    """Return ``datasite`` if it is an email that would also be safe as a folder name.

    :raises InvalidAddressError: it is not a string, is too long, contains whitespace or
        control characters, a path separator or ``..``, or is not ``local@domain``.
    """
    if not isinstance(datasite, str):
        raise InvalidAddressError(f"datasite {datasite!r} is not a string")
    local, at, domain = datasite.partition("@")
    if len(datasite) > MAX_EMAIL_LENGTH:
        problem = f"is longer than {MAX_EMAIL_LENGTH} characters"
    elif not at or not local or not domain or "@" in domain:
        problem = "must be an email with exactly one '@' between non-empty parts"
    elif any(ch.isspace() or not ch.isprintable() for ch in datasite):
        problem = "contains whitespace or control characters"
    elif "/" in datasite or "\\" in datasite or ".." in datasite:
        problem = "contains a path separator or '..'"
    else:
        return datasite
    raise InvalidAddressError(f"datasite {datasite!r} {problem}")


def check_app(app: str) -> str:
    """Return ``app`` if it is one or more ``/``-separated safe segments (``flwr/demo``).

    :raises InvalidAddressError: empty, too long, an empty segment (leading, trailing or
        double ``/``), or a segment that is not a safe name.
    """
    if not isinstance(app, str) or not app or len(app) > MAX_APP_LENGTH:
        raise InvalidAddressError(
            f"app {app!r} must be a non-empty name of at most {MAX_APP_LENGTH} characters"
        )
    if not all(_SEGMENT_RE.fullmatch(segment) for segment in app.split("/")):
        raise InvalidAddressError(
            f"app {app!r} must be '/'-separated segments of letters, digits, '.', '_' or '-' "
            "(no empty segment, no segment starting with '.')"
        )
    return app


def check_endpoint(endpoint: str) -> str:
    """Return ``endpoint`` if it is a single safe segment (``messages``).

    :raises InvalidAddressError: empty, containing ``/``, or not a safe name.
    """
    if not isinstance(endpoint, str) or not _SEGMENT_RE.fullmatch(endpoint):
        raise InvalidAddressError(
            f"endpoint {endpoint!r} must be one segment of letters, digits, '.', '_' or '-', "
            "not starting with '.'"
        )
    return endpoint
