"""The ``sqlite`` entry point: what syft-flwr loads to find this plugin's transport.

``pyproject.toml`` names this module in the ``syft_flwr`` entry-point group. syft-flwr
registers the module with its plugin manager, which calls the ``@hookimpl`` function below by
name. The transport class describes itself (``name``, ``description``, ``local_options``), so
registering the class is all a plugin does.
"""

from __future__ import annotations

from syft_flwr import hookimpl
from syft_flwr.registry import TransportRegistry

from syft_flwr_sqlite.transport import SqliteTransport

__all__ = ["syft_flwr_register_transports"]


@hookimpl
def syft_flwr_register_transports(registry: TransportRegistry) -> None:
    """Register ``sqlite`` (the registry reads its name and description from the class)."""
    registry.register(SqliteTransport)
