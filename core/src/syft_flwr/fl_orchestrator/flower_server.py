"""``syftbox_flwr_server`` under syft-flwr 0.5.x's module path."""

from __future__ import annotations

from syft_flwr.server.app import syftbox_flwr_server

__all__ = ["syftbox_flwr_server"]
