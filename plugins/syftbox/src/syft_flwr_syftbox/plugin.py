"""The ``syftbox`` entry point: registers the SyftBox transport with syft-flwr."""

from __future__ import annotations

from syft_flwr.hookspecs import hookimpl
from syft_flwr.registry import TransportRegistry
from syft_flwr_syftbox.transport import SyftBoxTransport

__all__ = ["syft_flwr_register_transports"]


@hookimpl
def syft_flwr_register_transports(registry: TransportRegistry) -> None:
    """Register ``syftbox``."""
    registry.register(SyftBoxTransport)
