"""Deprecated path of :mod:`syft_flwr.server.engine` (removed in syft-flwr 0.2.0)."""

from __future__ import annotations

from syft_flwr.engine import warn_moved
from syft_flwr.server.engine import ClientInfo, ServerEngine, new_run_id

__all__ = ["ClientInfo", "ServerEngine", "new_run_id"]

warn_moved(__name__, "syft_flwr.server.engine")
