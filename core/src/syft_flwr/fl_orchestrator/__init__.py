"""The public API, under the reference syft-flwr's import path.

``from syft_flwr.fl_orchestrator import syftbox_flwr_server`` is how the seed documents and
syft-flwr 0.5.x programs reach syft-flwr, so this package stays the top layer: it only
re-exports what :mod:`syft_flwr.server`, :mod:`syft_flwr.client` and :mod:`syft_flwr.grid`
define, and nothing in the library imports it.
"""

from __future__ import annotations

from syft_flwr.client.app import syftbox_flwr_client
from syft_flwr.grid.syft_grid import SyftGrid
from syft_flwr.server.app import syftbox_flwr_server
from syft_flwr.transport_setup import create_client

__all__ = ["SyftGrid", "create_client", "syftbox_flwr_client", "syftbox_flwr_server"]
