"""The ``gdrive`` entry point: registers the Google Drive transport with syft-flwr.

For ``syft-flwr demo --transport gdrive`` (:func:`syft_flwr_local_options`) there is no Google
account to use, so the hook starts a :class:`~syft_flwr_gdrive.testing.FakeDrive` on 127.0.0.1
in *open-accounts* mode and answers with one options table for every participant:
``auth = "local"`` makes each transport present the bearer token ``local:<its identity>``, which
only such a fake accepts (the transport refuses ``auth = "local"`` for any other host). Each
participant is thereby its own Drive account, sharing is enforced between them exactly as for
real accounts, and no secret has to be handed around. The fake stops itself once the run's
``workdir`` is removed.
"""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from syft_flwr.hookspecs import hookimpl
from syft_flwr.registry import TransportRegistry
from syft_flwr.transport import TransportSettings
from syft_flwr_gdrive.keydocs import syft_flwr_fetch_key_document, syft_flwr_publish_key_document
from syft_flwr_gdrive.testing import FakeDrive
from syft_flwr_gdrive.transport import GDriveTransport

__all__ = [
    "create_transport",
    "syft_flwr_cli_commands",
    "syft_flwr_fetch_key_document",
    "syft_flwr_local_options",
    "syft_flwr_publish_key_document",
    "syft_flwr_register_transports",
]

TRANSPORT_NAME = "gdrive"
_WATCH_INTERVAL = 0.25
_LOCAL_POLLING = {"poll_interval": 0.05, "max_poll_interval": 0.5, "discovery_interval": 1.0}


def create_transport(settings: TransportSettings) -> GDriveTransport:
    """Google Drive v3 (syft-flwr's p2p folder layout), polling; for Colab-style users."""
    return GDriveTransport(settings)


@hookimpl
def syft_flwr_cli_commands() -> list[tuple[str, str, Callable[[Sequence[str]], int]]]:
    """``syft-flwr gdrive login ...``: the same command line as ``syft-flwr-gdrive``."""
    from syft_flwr_gdrive.cli import main

    return [("gdrive", "Google Drive transport tools (login)", main)]


@hookimpl
def syft_flwr_register_transports(registry: TransportRegistry) -> None:
    """Register ``gdrive``."""
    registry.register(TRANSPORT_NAME, create_transport)


@hookimpl
def syft_flwr_local_options(transport: str, workdir: Path) -> dict[str, Any] | None:
    """A fake Drive for this run, living as long as ``workdir`` (see the module docstring).

    It polls every 50 ms unless ``SYFT_FLWR_POLL_INTERVAL`` says otherwise: the fake has no
    quota to protect.
    """
    if transport != TRANSPORT_NAME:
        return None
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
