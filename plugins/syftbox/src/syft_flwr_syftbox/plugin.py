"""The ``syftbox`` entry point: registers the SyftBox transport with syft-flwr."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from syft_flwr.hookspecs import hookimpl
from syft_flwr.registry import TransportRegistry
from syft_flwr.transport import TransportSettings
from syft_flwr_syftbox.keydocs import syft_flwr_fetch_key_document, syft_flwr_publish_key_document
from syft_flwr_syftbox.transport import SyftBoxTransport

__all__ = [
    "TRANSPORT_NAME",
    "create_transport",
    "syft_flwr_fetch_key_document",
    "syft_flwr_local_options",
    "syft_flwr_publish_key_document",
    "syft_flwr_register_transports",
]

TRANSPORT_NAME = "syftbox"


def create_transport(settings: TransportSettings) -> SyftBoxTransport:
    """SyftBox file RPC over a synced datasites folder, woken by filesystem events."""
    return SyftBoxTransport(settings)


@hookimpl
def syft_flwr_register_transports(registry: TransportRegistry) -> None:
    """Register ``syftbox``."""
    registry.register(TRANSPORT_NAME, create_transport)


@hookimpl
def syft_flwr_local_options(transport: str, workdir: Path) -> dict[str, Any] | None:
    """A fresh SyftBox folder under the run's private ``workdir``.

    Every participant of a local run (threads or processes) gets the same ``data_dir``, as
    datasites see one another's files when the SyftBox client syncs them into one folder.
    A separate process joins with these options, or with ``SYFTBOX_FOLDER=<data_dir>``.
    """
    if transport != TRANSPORT_NAME:
        return None
    data_dir = workdir / "SyftBox"
    (data_dir / "datasites").mkdir(parents=True, exist_ok=True)
    # Private keys of a local run stay in the run's workdir, never in the user's key store.
    return {"data_dir": str(data_dir), "key_dir": str(workdir / "keys")}
