"""syft-flwr-gdrive: a Google Drive transport for syft-flwr (``transport = "gdrive"``).

Messages travel as files in Drive folders laid out as syft-flwr 0.5.x's Drive ("p2p") mode lays
them out, so its Drive clients can join a run our server coordinates. ``syft_flwr_gdrive.testing``
holds the fake Drive v3 server the tests and the local demo run against.
"""

from __future__ import annotations

from syft_flwr_gdrive.errors import (
    CredentialsError,
    DriveContentError,
    DriveError,
    DrivePermissionError,
    DriveQuotaError,
    DriveRateLimitError,
)
from syft_flwr_gdrive.options import GDriveOptions
from syft_flwr_gdrive.transport import GDriveTransport

__all__ = [
    "CredentialsError",
    "DriveContentError",
    "DriveError",
    "DrivePermissionError",
    "DriveQuotaError",
    "DriveRateLimitError",
    "GDriveOptions",
    "GDriveTransport",
]
