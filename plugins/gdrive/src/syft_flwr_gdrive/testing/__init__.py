"""A fake Google Drive v3 server for offline tests and the local demo (127.0.0.1 only).

``FakeDrive`` runs the HTTP API the real ``googleapiclient`` talks to, with accounts told apart
by bearer token, folder sharing enforced, request counting, and fault injection::

    with FakeDrive() as drive:
        alice = drive.add_account("alice@example.org")
        options = {"api_root": drive.url, "access_token": alice.token}
        drive.faults = FaultPlan(rate=0.3, seed=1)   # 403/429/5xx/dropped connections
        ...
        drive.counts("alice@example.org")            # {"files.list": 12, ...}
"""

from __future__ import annotations

from syft_flwr_gdrive.testing.faults import Fault, FaultPlan
from syft_flwr_gdrive.testing.server import DRIVE_SCOPE, FakeDrive
from syft_flwr_gdrive.testing.store import Account

__all__ = ["DRIVE_SCOPE", "Account", "FakeDrive", "Fault", "FaultPlan"]
