"""The demo's Flower apps: a message-API ``ClientApp`` and a ``FedAvg`` ``ServerApp``."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass

from flwr.app import ArrayRecord, ConfigRecord, Context, Message, MetricRecord, RecordDict
from flwr.client import Client, NumPyClient
from flwr.clientapp import ClientApp
from flwr.common import NDArrays, Scalar
from flwr.serverapp import Grid, ServerApp
from flwr.serverapp.strategy import FedAvg

from syft_flwr.demo.data import central_test_set, partition
from syft_flwr.demo.model import LogisticRegression

__all__ = [
    "DemoNumPyClient",
    "RoundReport",
    "make_client_app",
    "make_legacy_client_app",
    "make_server_app",
]

LEARNING_RATE = 0.05
LOCAL_EPOCHS = 2


@dataclass(frozen=True)
class RoundReport:
    """What the server knows at the end of a round (round 0 is the initial model)."""

    server_round: int
    train_loss: float | None
    test_loss: float
    test_accuracy: float
    clients: int
    failures: int
    seconds: float


def _local_data(context: Context) -> tuple[int, int]:
    return int(context.node_config["partition-id"]), int(context.node_config["num-partitions"])


def make_client_app() -> ClientApp:
    """A ``ClientApp`` training and evaluating on its datasite's partition."""
    app = ClientApp()

    @app.train()
    def train(message: Message, context: Context) -> Message:
        train_data, _ = partition(*_local_data(context))
        model = LogisticRegression.from_arrays(
            message.content.array_records["arrays"].to_numpy_ndarrays()
        )
        config = message.content.config_records.get("config", ConfigRecord())
        epochs = config.get("local-epochs", LOCAL_EPOCHS)
        learning_rate = config.get("lr", LEARNING_RATE)
        if not isinstance(epochs, int) or not isinstance(learning_rate, (int, float)):
            raise TypeError("config 'local-epochs' must be an int and 'lr' a number")
        loss = model.fit(train_data, epochs=epochs, learning_rate=float(learning_rate))
        metrics = MetricRecord({"train_loss": loss, "num-examples": len(train_data)})
        content = RecordDict({"arrays": ArrayRecord(model.to_arrays()), "metrics": metrics})
        return Message(content=content, reply_to=message)

    @app.evaluate()
    def evaluate(message: Message, context: Context) -> Message:
        _, valid_data = partition(*_local_data(context))
        model = LogisticRegression.from_arrays(
            message.content.array_records["arrays"].to_numpy_ndarrays()
        )
        loss, accuracy = model.loss_and_accuracy(valid_data)
        metrics = MetricRecord(
            {"eval_loss": loss, "eval_acc": accuracy, "num-examples": len(valid_data)}
        )
        return Message(content=RecordDict({"metrics": metrics}), reply_to=message)

    return app


class _ReportingFedAvg(FedAvg):
    """``FedAvg`` that remembers each round's aggregated training loss and failures."""

    def __init__(self, **kwargs: object) -> None:
        super().__init__(**kwargs)  # type: ignore[arg-type]
        self.train_loss: dict[int, float] = {}
        self.outcome: dict[int, tuple[int, int]] = {}

    def aggregate_train(
        self, server_round: int, replies: Iterable[Message]
    ) -> tuple[ArrayRecord | None, MetricRecord | None]:
        replies = list(replies)
        failures = sum(1 for reply in replies if reply.has_error())
        self.outcome[server_round] = (len(replies) - failures, failures)
        arrays, metrics = super().aggregate_train(server_round, replies)
        if metrics is not None and "train_loss" in metrics:
            self.train_loss[server_round] = float(metrics["train_loss"])  # type: ignore[arg-type]
        return arrays, metrics


def make_server_app(
    num_datasites: int,
    num_rounds: int,
    on_round: Callable[[RoundReport], None] | None = None,
    round_timeout: float = 60.0,
) -> ServerApp:
    """A ``ServerApp`` running ``FedAvg`` with a central evaluation after every round."""
    app = ServerApp()
    test_set = central_test_set()

    @app.main()
    def main(grid: Grid, context: Context) -> None:
        strategy = _ReportingFedAvg(
            fraction_train=1.0,
            fraction_evaluate=1.0,
            min_train_nodes=num_datasites,
            min_evaluate_nodes=num_datasites,
            min_available_nodes=num_datasites,
        )
        started = time.perf_counter()

        def evaluate(server_round: int, arrays: ArrayRecord) -> MetricRecord:
            nonlocal started
            model = LogisticRegression.from_arrays(arrays.to_numpy_ndarrays())
            loss, accuracy = model.loss_and_accuracy(test_set)
            clients, failures = strategy.outcome.get(server_round, (0, 0))
            if on_round is not None:
                on_round(
                    RoundReport(
                        server_round=server_round,
                        train_loss=strategy.train_loss.get(server_round),
                        test_loss=loss,
                        test_accuracy=accuracy,
                        clients=clients,
                        failures=failures,
                        seconds=time.perf_counter() - started,
                    )
                )
            started = time.perf_counter()
            return MetricRecord({"test_loss": loss, "test_accuracy": accuracy})

        result = strategy.start(
            grid=grid,
            initial_arrays=ArrayRecord(LogisticRegression.zeros().to_arrays()),
            num_rounds=num_rounds,
            timeout=round_timeout,
            train_config=ConfigRecord({"lr": LEARNING_RATE, "local-epochs": LOCAL_EPOCHS}),
            evaluate_fn=evaluate,
        )
        context.state["final_arrays"] = result.arrays

    return app


class DemoNumPyClient(NumPyClient):
    """The demo's client for legacy ``server_fn`` strategies (Flower's ``NumPyClient`` API)."""

    def __init__(self, index: int, count: int) -> None:
        self.train, self.valid = partition(index, count)

    def get_parameters(self, config: dict[str, Scalar]) -> NDArrays:
        return LogisticRegression.zeros().to_arrays()

    def fit(
        self, parameters: NDArrays, config: dict[str, Scalar]
    ) -> tuple[NDArrays, int, dict[str, Scalar]]:
        model = LogisticRegression.from_arrays(parameters)
        model.fit(self.train, epochs=LOCAL_EPOCHS, learning_rate=LEARNING_RATE)
        return model.to_arrays(), len(self.train), {}

    def evaluate(
        self, parameters: NDArrays, config: dict[str, Scalar]
    ) -> tuple[float, int, dict[str, Scalar]]:
        loss, accuracy = LogisticRegression.from_arrays(parameters).loss_and_accuracy(self.valid)
        return loss, len(self.valid), {"accuracy": accuracy}


def make_legacy_client_app(index: int, count: int) -> ClientApp:
    """A ``ClientApp`` built from :class:`DemoNumPyClient` through a ``client_fn``."""

    def client_fn(context: Context) -> Client:
        return DemoNumPyClient(index, count).to_client()

    return ClientApp(client_fn=client_fn)
