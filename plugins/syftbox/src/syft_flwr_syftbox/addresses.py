"""Address checks: every name that becomes part of a path is validated here first.

Emails, app names, endpoints and request ids are all joined into paths under the datasites
folder, and most of them come from someone else (a request's folder, a file name, a JSON
field). So each is matched against a whitelist pattern rather than a list of bad characters:
no path separators, no ``.``/``..`` components, no NUL or control characters, no absolute
paths, nothing a filesystem or a ``syft://`` URL could read differently than we do.

Emails follow the pattern syft-core's ``SyftBoxURL`` accepts (a dot in the domain), so every
address we write into a syft-rpc file is one the real SyftBox stack can parse back.
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

_MAX_APP_SEGMENTS = 8
_EMAIL_RE = re.compile(r"[A-Za-z0-9_+-][A-Za-z0-9_.+-]*@[A-Za-z0-9-]+(?:\.[A-Za-z0-9-]+)+")
_SEGMENT_RE = re.compile(r"[A-Za-z0-9_][A-Za-z0-9._-]{0,127}")
_ID_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9_-]{0,127}")


def is_datasite(value: object) -> bool:
    """Whether ``value`` is an email that is safe as a folder name (see :func:`check_datasite`)."""
    return (
        isinstance(value, str)
        and len(value) <= MAX_EMAIL_LENGTH
        and ".." not in value
        and _EMAIL_RE.fullmatch(value) is not None
    )


def check_datasite(datasite: str) -> str:
    """Return ``datasite`` if it is an email that is safe as a folder name.

    :raises InvalidAddressError: not a string, longer than 254 characters, characters outside
        ``[A-Za-z0-9_.+-]`` around one ``@``, a leading ``.``, ``..``, or no dot in the domain.
    """
    if not is_datasite(datasite):
        raise InvalidAddressError(
            f"datasite {datasite!r} is not a usable email: expected name@domain.tld with "
            "letters, digits, '_', '.', '+' or '-' (no '..', no leading '.', at most "
            f"{MAX_EMAIL_LENGTH} characters)"
        )
    return datasite


def check_app(app: str) -> str:
    """Return ``app`` if it is 1 to 8 ``/``-separated safe segments (``flwr/diabetes``).

    :raises InvalidAddressError: empty, a leading/trailing/double ``/``, too many segments, or a
        segment with characters other than letters, digits, ``.``, ``_``, ``-`` or starting
        with ``.`` (which rules out ``.`` and ``..``).
    """
    segments = app.split("/") if isinstance(app, str) else []
    if (
        not segments
        or len(segments) > _MAX_APP_SEGMENTS
        or not all(_SEGMENT_RE.fullmatch(segment) for segment in segments)
    ):
        raise InvalidAddressError(
            f"app {app!r} must be 1 to {_MAX_APP_SEGMENTS} '/'-separated segments of letters, "
            "digits, '.', '_' or '-', none empty or starting with '.'"
        )
    return app


def check_endpoint(endpoint: str) -> str:
    """Return ``endpoint`` if it is one safe segment (``messages``).

    :raises InvalidAddressError: empty, containing ``/``, or any segment :func:`check_app` refuses.
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
