"""The ``sqlite`` entry point: what syft-flwr loads to find this plugin's transport.

``pyproject.toml`` names this module in the ``syft_flwr`` entry-point group. syft-flwr
registers the module with its plugin manager, which calls the ``@hookimpl`` functions below
by name: one registers the transport factory, the other tells ``syft-flwr demo`` and the
conformance kit how to run the transport on one machine.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from syft_flwr import hookimpl
from syft_flwr.registry import TransportRegistry
from syft_flwr.transport import TransportSettings

from syft_flwr_sqlite.transport import SqliteTransport

__all__ = ["TRANSPORT_NAME", "create_transport"]

TRANSPORT_NAME = "sqlite"
"""What users write in ``[tool.syft_flwr] transport = "sqlite"``."""


def create_transport(settings: TransportSettings) -> SqliteTransport:
    """Processes on one machine exchanging messages through a shared SQLite database file."""
    return SqliteTransport(settings)


@hookimpl
def syft_flwr_register_transports(registry: TransportRegistry) -> None:
    """Register ``sqlite`` (the registry shows the factory's first docstring line)."""
    registry.register(TRANSPORT_NAME, create_transport)


@hookimpl
def syft_flwr_local_options(transport: str, workdir: Path) -> dict[str, Any] | None:
    """A database file in the run's private ``workdir``, shared by all its participants."""
    if transport != TRANSPORT_NAME:
        return None
    return {"database": str(workdir / "syft-flwr.sqlite3")}
