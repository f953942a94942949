"""A local Drive for ``syft-flwr demo --transport gdrive`` and the conformance kit.

There is no Google account to use, so :func:`local_options` starts a
:class:`~syft_flwr_gdrive.testing.FakeDrive` on 127.0.0.1 in *open-accounts* mode and answers
with one options table for every participant: ``auth = "local"`` makes each transport present
the bearer token ``local:<its identity>``, which only such a fake accepts (the transport refuses
``auth = "local"`` for any other host). Each participant is thereby its own Drive account,
sharing is enforced between them exactly as for real accounts, and no secret has to be handed
around. The fake stops itself once the run's ``workdir`` is removed.
"""

from __future__ import annotations

import os
import threading
import time
from pathlib import Path
from typing import Any

from syft_flwr_gdrive.testing import FakeDrive

__all__ = ["local_options"]

_WATCH_INTERVAL = 0.25
_LOCAL_POLLING = {"poll_interval": 0.05, "max_poll_interval": 0.5, "discovery_interval": 1.0}


def local_options(workdir: Path) -> dict[str, Any]:
    """A fake Drive for this run, living as long as ``workdir`` (see the module docstring).

    It polls every 50 ms unless ``SYFT_FLWR_POLL_INTERVAL`` says otherwise: the fake has no
    quota to protect.
    """
    drive = FakeDrive(open_accounts=True)
    threading.Thread(
        target=_close_when_removed, args=(drive, workdir), name="fake-drive-watch", daemon=True
    ).start()
    options: dict[str, Any] = {
        "api_root": drive.url,
        "auth": "local",
        "key_dir": str(workdir / "keys"),
        **_LOCAL_POLLING,
    }
    if os.environ.get("SYFT_FLWR_POLL_INTERVAL"):
        del options["poll_interval"]
    return options


def _close_when_removed(drive: FakeDrive, workdir: Path) -> None:
    while workdir.exists():
        time.sleep(_WATCH_INTERVAL)
    drive.close()
