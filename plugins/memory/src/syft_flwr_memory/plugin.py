"""The ``memory`` entry point: registers the in-process transport with syft-flwr."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from syft_flwr.hookspecs import hookimpl
from syft_flwr.registry import TransportRegistry
from syft_flwr.transport import Transport, TransportSettings
from syft_flwr_memory.transport import MemoryTransport

__all__ = [
    "create_transport",
    "syft_flwr_fetch_key_document",
    "syft_flwr_local_options",
    "syft_flwr_publish_key_document",
    "syft_flwr_register_transports",
]

TRANSPORT_NAME = "memory"


def create_transport(settings: TransportSettings) -> MemoryTransport:
    """In-process transport for tests, demos and simulation (one Python process)."""
    return MemoryTransport(settings)


@hookimpl
def syft_flwr_register_transports(registry: TransportRegistry) -> None:
    """Register ``memory``."""
    registry.register(TRANSPORT_NAME, create_transport)


@hookimpl
def syft_flwr_local_options(transport: str, workdir: Path) -> dict[str, Any] | None:
    """A network named after the run's private ``workdir``, so two local runs in one
    process never deliver to each other's (identically named) datasites."""
    if transport != TRANSPORT_NAME:
        return None
    return {"network": f"local-{workdir.name}"}


@hookimpl
def syft_flwr_publish_key_document(transport: Transport, document: bytes) -> bool | None:
    """Key documents live on the network, like a datasite's public folder."""
    if not isinstance(transport, MemoryTransport):
        return None
    transport.network.publish_key_document(transport.identity, document)
    return True


@hookimpl
def syft_flwr_fetch_key_document(transport: Transport, datasite: str) -> bytes | None:
    """The document ``datasite`` published on ``transport``'s network, if any."""
    if not isinstance(transport, MemoryTransport):
        return None
    return transport.network.key_document(datasite)
