"""The ``memory`` entry point: registers the in-process transport with syft-flwr."""

from __future__ import annotations

from syft_flwr.hookspecs import hookimpl
from syft_flwr.registry import TransportRegistry
from syft_flwr_memory.transport import MemoryTransport

__all__ = ["syft_flwr_register_transports"]


@hookimpl
def syft_flwr_register_transports(registry: TransportRegistry) -> None:
    """Register ``memory``."""
    registry.register(MemoryTransport)
