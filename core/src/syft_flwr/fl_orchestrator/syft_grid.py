"""``SyftGrid`` under the reference API's path (``syft_flwr.fl_orchestrator.syft_grid``)."""

from __future__ import annotations

from syft_flwr.grid.syft_grid import SyftGrid

__all__ = ["SyftGrid"]
