"""Deprecated path of :mod:`syft_flwr.server.workspace` (removed in syft-flwr 0.2.0)."""

from __future__ import annotations

from syft_flwr.engine import warn_moved
from syft_flwr.server.workspace import *  # noqa: F403 - the whole public surface, as it was
from syft_flwr.server.workspace import __all__ as _workspace_all
from syft_flwr.workspace_location import workspace_root

__all__ = [*_workspace_all, "workspace_root"]

warn_moved(__name__, "syft_flwr.server.workspace (workspace_root: syft_flwr.workspace_location)")
