"""``syftbox_flwr_client`` under syft-flwr 0.5.x's module path."""

from __future__ import annotations

from syft_flwr.client.app import syftbox_flwr_client

__all__ = ["syftbox_flwr_client"]
