"""The ``memory`` entry point: registers the in-process transport with syft-flwr."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from syft_flwr.hookspecs import hookimpl
from syft_flwr.registry import TransportRegistry
from syft_flwr.transport import TransportSettings
from syft_flwr_memory.transport import MemoryTransport

__all__ = ["create_transport", "syft_flwr_local_options", "syft_flwr_register_transports"]

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
