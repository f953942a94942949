"""The gdrive plugin's errors: core error types, narrowed to what a Drive user must fix.

Each derives from the core hierarchy (:class:`~syft_flwr.errors.SyftFlwrError`), so callers
that catch ``TransportError`` or ``ConfigError`` keep working, and each message names the fix.
"""

from __future__ import annotations

from syft_flwr.errors import ConfigError, TransportError

__all__ = [
    "CredentialsError",
    "DriveContentError",
    "DriveError",
    "DrivePermissionError",
    "DriveQuotaError",
    "DriveRateLimitError",
]


class CredentialsError(ConfigError):
    """No usable Google credentials: the message says what to provide."""


class DriveError(TransportError):
    """Drive refused an operation or kept failing after every retry.

    :param status: the HTTP status of the last answer, ``None`` for a network failure.
    :param reason: Drive's error reason (``notFound``, ``storageQuotaExceeded``...), or ``""``.
    """

    def __init__(self, message: str, *, status: int | None = None, reason: str = "") -> None:
        super().__init__(message)
        self.status = status
        self.reason = reason


class DriveContentError(DriveError):
    """A file's content disagrees with its listing (more or fewer bytes than its listed size).

    Not back-pressure, so never retried: the file was changed since it was listed, or the
    server is not telling the truth, and either way its bytes are not taken for a message.
    """


class DrivePermissionError(DriveError):
    """A folder or file is not shared with this account, or not writable by it."""


class DriveQuotaError(DriveError):
    """The account's Drive storage is full (service accounts have none of their own)."""


class DriveRateLimitError(DriveError):
    """Drive kept pushing back (429, 5xx, rate-limit 403s) for longer than the retry budget."""
