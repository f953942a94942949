"""quickstart-numpy: the ServerApp, federated averaging for ``num-server-rounds`` rounds."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
from flwr.app import ArrayRecord, ConfigRecord, Context
from flwr.serverapp import Grid, ServerApp
from flwr.serverapp.strategy import FedAvg

from quickstart_numpy.task import initial_weights

app = ServerApp()


@app.main()
def main(grid: Grid, context: Context) -> None:
    """Run FedAvg, then save the final model and the metrics of every round."""
    config = context.run_config
    strategy = FedAvg(
        fraction_train=float(config["fraction-train"]),
        fraction_evaluate=float(config["fraction-evaluate"]),
    )
    result = strategy.start(
        grid=grid,
        initial_arrays=ArrayRecord(initial_weights()),
        train_config=ConfigRecord(
            {"lr": float(config["learning-rate"]), "local-epochs": int(config["local-epochs"])}
        ),
        num_rounds=int(config["num-server-rounds"]),
    )
    np.savez("final_model.npz", *result.arrays.to_numpy_ndarrays())
    history = {
        "train": {rnd: dict(m) for rnd, m in result.train_metrics_clientapp.items()},
        "evaluate": {rnd: dict(m) for rnd, m in result.evaluate_metrics_clientapp.items()},
    }
    Path("history.json").write_text(json.dumps(history, indent=2))
