"""The ``[tool.syft_flwr.sqlite]`` options table, checked once when a transport is built.

Options come from a user's ``pyproject.toml``, so every mistake is reported as a
:class:`~syft_flwr.errors.ConfigError` that names the option and says what is expected,
and an unknown key is an error rather than silently ignored (a misspelt ``databse`` would
otherwise fall back to a default nobody asked for).
"""

from __future__ import annotations

import math
import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from syft_flwr.errors import ConfigError
from syft_flwr.transport import TransportSettings

__all__ = [
    "DEFAULT_BUSY_TIMEOUT",
    "DEFAULT_CLEANUP_INTERVAL",
    "DEFAULT_MAX_BODY_SIZE",
    "DEFAULT_RETENTION",
    "SQLITE_MAX_LENGTH",
    "SqliteOptions",
]

DEFAULT_MAX_BODY_SIZE = 64 * 1024 * 1024
"""64 MiB: room for a mid-sized model's weights without letting one row swallow the disk."""

SQLITE_MAX_LENGTH = 1_000_000_000
"""SQLite's default ``SQLITE_MAX_LENGTH``: no BLOB can be larger, whatever we allow."""

DEFAULT_BUSY_TIMEOUT = 10.0
"""Seconds a statement waits for another process's write lock before giving up."""

DEFAULT_RETENTION = 24 * 3600.0
"""Seconds a request (and its reply) is kept after it expired, for late or restarted pollers."""

DEFAULT_CLEANUP_INTERVAL = 60.0
"""Seconds between two clean-ups of old rows by one transport instance."""


@dataclass(frozen=True)
class SqliteOptions:
    """Validated options of one transport instance.

    :param database: the database file every participant opens (required).
    :param max_body_size: largest request or reply body in bytes.
    :param busy_timeout: seconds to wait for a lock held by another connection.
    :param retention: seconds to keep rows after their request expired.
    :param cleanup_interval: seconds between clean-ups of old rows.
    """

    database: Path
    max_body_size: int = DEFAULT_MAX_BODY_SIZE
    busy_timeout: float = DEFAULT_BUSY_TIMEOUT
    retention: float = DEFAULT_RETENTION
    cleanup_interval: float = DEFAULT_CLEANUP_INTERVAL

    @classmethod
    def from_settings(cls, settings: TransportSettings) -> SqliteOptions:
        """Parse ``settings.options``.

        A relative ``database`` is resolved against ``settings.project_dir`` when there is
        one, so the server and the clients of a project find the same file whichever
        directory they were started from.

        :raises ConfigError: an option is missing, unknown or malformed.
        """
        options = settings.options
        unknown = sorted(set(options) - _KNOWN)
        if unknown:
            raise ConfigError(
                f"unknown sqlite transport option(s) {', '.join(unknown)}; "
                f"known options: {', '.join(sorted(_KNOWN))}"
            )
        return cls(
            database=_database(options, settings.project_dir),
            max_body_size=_max_body_size(options),
            busy_timeout=_seconds(options, "busy_timeout", DEFAULT_BUSY_TIMEOUT),
            retention=_seconds(options, "retention", DEFAULT_RETENTION),
            cleanup_interval=_seconds(options, "cleanup_interval", DEFAULT_CLEANUP_INTERVAL),
        )


_KNOWN = frozenset({"database", "max_body_size", "busy_timeout", "retention", "cleanup_interval"})


def _database(options: Mapping[str, Any], project_dir: Path | None) -> Path:
    raw = options.get("database")
    if raw is None:
        raise ConfigError(
            "the sqlite transport needs the option 'database': the path of the database file "
            "shared by every participant, e.g. [tool.syft_flwr.sqlite] database = "
            '"/var/lib/syft-flwr/federation.sqlite3"'
        )
    if not isinstance(raw, str | os.PathLike) or not str(raw):
        raise ConfigError(f"sqlite transport option database={raw!r} must be a non-empty path")
    path = Path(raw).expanduser()
    if not path.is_absolute() and project_dir is not None:
        path = project_dir / path
    if not path.parent.is_dir():
        raise ConfigError(
            f"sqlite transport option database={str(raw)!r}: directory {str(path.parent)!r} "
            "does not exist (the transport creates the file, not its directory)"
        )
    return path


def _max_body_size(options: Mapping[str, Any]) -> int:
    limit = options.get("max_body_size", DEFAULT_MAX_BODY_SIZE)
    if isinstance(limit, bool) or not isinstance(limit, int) or not 0 <= limit <= SQLITE_MAX_LENGTH:
        raise ConfigError(
            f"sqlite transport option max_body_size={limit!r} must be a whole number of bytes "
            f"between 0 and {SQLITE_MAX_LENGTH} (SQLite's largest BLOB)"
        )
    return limit


def _seconds(options: Mapping[str, Any], name: str, default: float) -> float:
    value = options.get(name, default)
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise ConfigError(f"sqlite transport option {name}={value!r} must be a number of seconds")
    if value < 0:
        raise ConfigError(f"sqlite transport option {name}={value!r} must not be negative")
    return float(value)
