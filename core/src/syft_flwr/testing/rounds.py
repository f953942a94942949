"""The resumable training loops with no clients: what a round's bookkeeping and commit cost.

:func:`run_rounds` drives the real loops (``run_message_rounds`` for the message API, the
legacy ``ResumableServer``) against any round keeper, with stub strategies that aggregate each
round to a few metrics at no cost (no clients, no training), so whatever a round costs is the
loop's and the keeper's. ``bench/commit.py`` measures it; the core's tests count it.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from flwr.app import Array, ArrayRecord, ConfigRecord, Message, MetricRecord
from flwr.common import ndarrays_to_parameters
from flwr.server.client_manager import SimpleClientManager
from flwr.server.strategy import FedAvg as LegacyFedAvg
from flwr.serverapp import Grid
from flwr.serverapp.strategy import FedAvg

from syft_flwr.server.resume import LEGACY, MESSAGE, ResumableServer, run_message_rounds
from syft_flwr.server.rounds import RoundKeeper

__all__ = ["STYLES", "round_metrics", "run_rounds"]

STYLES = (MESSAGE, LEGACY)
"""The two loops, by the style name their snapshots carry."""


def round_metrics(round_: int) -> dict[str, Any]:
    """A few metrics of round ``round_``, as a real app reports them."""
    return {"loss": 1.0 / (round_ + 1), "accuracy": 0.5 + round_ * 1e-4, "num-examples": 640}


class _StubFedAvg(FedAvg):
    """Flower's FedAvg with no clients: each round aggregates to a few metrics."""

    def configure_train(
        self, server_round: int, arrays: ArrayRecord, config: ConfigRecord, grid: Grid
    ) -> list[Message]:
        return []

    def aggregate_train(
        self, server_round: int, replies: Any
    ) -> tuple[ArrayRecord | None, MetricRecord | None]:
        return None, MetricRecord(round_metrics(server_round))

    def configure_evaluate(
        self, server_round: int, arrays: ArrayRecord, config: ConfigRecord, grid: Grid
    ) -> list[Message]:
        return []

    def aggregate_evaluate(self, server_round: int, replies: Any) -> MetricRecord | None:
        return MetricRecord(round_metrics(server_round))


class _StubGrid:
    """Answers the loop's (empty) rounds with no replies."""

    def send_and_receive(self, messages: Any, *, timeout: float | None = None) -> list[Message]:
        return []


class _StubLegacyFedAvg(LegacyFedAvg):
    """Flower's legacy FedAvg whose centralized evaluation reports a few metrics."""

    def evaluate(self, server_round: int, parameters: Any) -> tuple[float, dict[str, Any]]:
        return 1.0 / (server_round + 1), round_metrics(server_round)


class _StubServer(ResumableServer):
    """The legacy loop with no clients: fit and evaluate rounds aggregate to a few metrics."""

    def fit_round(self, server_round: int, timeout: float | None) -> Any:
        return self.parameters, round_metrics(server_round), ([], [])

    def evaluate_round(self, server_round: int, timeout: float | None) -> Any:
        return 0.5, round_metrics(server_round), ([], [])


def run_rounds(style: str, keeper: RoundKeeper, num_rounds: int) -> None:
    """Run ``num_rounds`` rounds of ``style``'s loop, committing each to ``keeper`` (resuming
    after its last committed round, as the real loops do)."""
    model = np.zeros(16, dtype=np.float32)
    if style == MESSAGE:
        grid: Any = _StubGrid()
        run_message_rounds(
            _StubFedAvg(), keeper, grid, ArrayRecord({"w": Array(model)}), num_rounds,
            evaluate_fn=lambda round_, arrays: MetricRecord(round_metrics(round_)),
        )  # fmt: skip
    else:
        strategy = _StubLegacyFedAvg(initial_parameters=ndarrays_to_parameters([model]))
        server = _StubServer(client_manager=SimpleClientManager(), strategy=strategy, keeper=keeper)
        server.fit(num_rounds, timeout=None)
