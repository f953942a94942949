"""Run Flower apps over syft-flwr transports (the reference API's ``fl_orchestrator``)."""

from syft_flwr.fl_orchestrator.flower_client import syftbox_flwr_client
from syft_flwr.fl_orchestrator.flower_server import syftbox_flwr_server
from syft_flwr.fl_orchestrator.syft_grid import SyftGrid

__all__ = ["SyftGrid", "syftbox_flwr_client", "syftbox_flwr_server"]
