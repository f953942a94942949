"""The ``gdrive`` entry point: registers the Google Drive transport with syft-flwr, and adds
``syft-flwr gdrive ...`` to the command line."""

from __future__ import annotations

from collections.abc import Callable, Sequence

from syft_flwr.hookspecs import hookimpl
from syft_flwr.registry import TransportRegistry
from syft_flwr_gdrive.transport import GDriveTransport

__all__ = ["syft_flwr_cli_commands", "syft_flwr_register_transports"]


@hookimpl
def syft_flwr_cli_commands() -> list[tuple[str, str, Callable[[Sequence[str]], int]]]:
    """``syft-flwr gdrive login ...``: the same command line as ``syft-flwr-gdrive``."""
    from syft_flwr_gdrive.cli import main

    return [("gdrive", "Google Drive transport tools (login)", main)]


@hookimpl
def syft_flwr_register_transports(registry: TransportRegistry) -> None:
    """Register ``gdrive``."""
    registry.register(GDriveTransport)
