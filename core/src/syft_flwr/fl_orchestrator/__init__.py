"""Run Flower apps over syft-flwr transports (the reference API's ``fl_orchestrator``).

The names are loaded on first use (PEP 562), so importing a submodule such as
``syft_flwr.fl_orchestrator.syft_grid`` (which the server engine does) does not import the
orchestrators, which import the engine: ``from syft_flwr.engine.server_engine import
ServerEngine`` works on a fresh interpreter.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from syft_flwr.fl_orchestrator.flower_client import syftbox_flwr_client
    from syft_flwr.fl_orchestrator.flower_server import syftbox_flwr_server
    from syft_flwr.fl_orchestrator.syft_grid import SyftGrid
    from syft_flwr.fl_orchestrator.transport_setup import create_client

__all__ = ["SyftGrid", "create_client", "syftbox_flwr_client", "syftbox_flwr_server"]

_HOMES = {
    "SyftGrid": "syft_flwr.fl_orchestrator.syft_grid",
    "create_client": "syft_flwr.fl_orchestrator.transport_setup",
    "syftbox_flwr_client": "syft_flwr.fl_orchestrator.flower_client",
    "syftbox_flwr_server": "syft_flwr.fl_orchestrator.flower_server",
}


def __getattr__(name: str) -> Any:
    home = _HOMES.get(name)
    if home is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(home), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted([*globals(), *__all__])
