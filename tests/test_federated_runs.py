"""Full federated runs over the memory transport, with both Flower strategy styles."""

from __future__ import annotations

import logging
import threading

import pytest
from flwr.app import ArrayRecord, ConfigRecord, Context, Message, RecordDict
from flwr.client import ClientApp
from flwr.common import ndarrays_to_parameters
from flwr.common.constant import ErrorCode
from flwr.server import ServerApp, ServerAppComponents, ServerConfig
from flwr.server.strategy import FedAvg as LegacyFedAvg
from flwr.serverapp import Grid
from flwr.serverapp.strategy import FedAvg

from syft_flwr.demo.apps import make_client_app, make_legacy_client_app
from syft_flwr.demo.model import LogisticRegression
from syft_flwr.hookspecs import hookimpl

pytestmark = pytest.mark.slow


def legacy_client_app(index: int) -> ClientApp:
    return make_legacy_client_app(index, 3)


class RecordingLegacyFedAvg(LegacyFedAvg):
    def __init__(self, **kwargs) -> None:
        super().__init__(**kwargs)
        self.losses: list[float] = []
        self.failures: list[int] = []

    def aggregate_evaluate(self, server_round, results, failures):
        loss, metrics = super().aggregate_evaluate(server_round, results, failures)
        self.losses.append(loss)
        self.failures.append(len(failures))
        return loss, metrics

    def aggregate_fit(self, server_round, results, failures):
        self.failures.append(len(failures))
        return super().aggregate_fit(server_round, results, failures)


def legacy_server_app(strategy: LegacyFedAvg, rounds: int = 3, round_timeout=None) -> ServerApp:
    config = ServerConfig(num_rounds=rounds, round_timeout=round_timeout)
    return ServerApp(
        server_fn=lambda context: ServerAppComponents(strategy=strategy, config=config)
    )


def legacy_strategy(**overrides) -> RecordingLegacyFedAvg:
    options = dict(
        fraction_fit=1.0,
        fraction_evaluate=1.0,
        min_fit_clients=3,
        min_evaluate_clients=3,
        min_available_clients=3,
        initial_parameters=ndarrays_to_parameters(LogisticRegression.zeros().to_arrays()),
    )
    options.update(overrides)
    return RecordingLegacyFedAvg(**options)


def test_legacy_server_fn_strategy_trains_with_falling_loss(federation):
    strategy = legacy_strategy()
    federation.start_clients(legacy_client_app)
    federation.run_server(legacy_server_app(strategy))
    federation.join_clients()
    assert len(strategy.losses) == 3
    assert strategy.losses[-1] < strategy.losses[0]
    assert set(strategy.failures) == {0}
    assert federation.stop_reasons == {email: "Server stopped" for email in federation.datasites}


def message_api_app(
    num_rounds: int, losses: list[float], timeout: float = 30.0, min_nodes: int = 3
) -> ServerApp:
    app = ServerApp()

    @app.main()
    def main(grid: Grid, context: Context) -> None:
        strategy = FedAvg(
            min_train_nodes=min_nodes, min_evaluate_nodes=min_nodes, min_available_nodes=3
        )
        result = strategy.start(
            grid=grid,
            initial_arrays=ArrayRecord(LogisticRegression.zeros().to_arrays()),
            num_rounds=num_rounds,
            timeout=timeout,
            train_config=ConfigRecord({"lr": 0.05, "local-epochs": 2}),
        )
        for server_round in sorted(result.evaluate_metrics_clientapp):
            losses.append(float(result.evaluate_metrics_clientapp[server_round]["eval_loss"]))

    return app


def test_message_api_strategy_trains_with_falling_loss(federation):
    losses: list[float] = []
    federation.start_clients(lambda index: make_client_app())
    federation.run_server(message_api_app(3, losses))
    federation.join_clients()
    assert len(losses) == 3
    assert losses[-1] < losses[0]
    assert all(reason == "Server stopped" for reason in federation.stop_reasons.values())


def raising_client_app(index: int) -> ClientApp:
    if index != 0:
        return legacy_client_app(index)
    app = ClientApp()

    @app.train()
    def train(message: Message, context: Context) -> Message:
        raise RuntimeError("disk on fire")

    @app.evaluate()
    def evaluate(message: Message, context: Context) -> Message:
        raise RuntimeError("disk on fire")

    return app


def test_raising_client_app_reaches_the_strategy_as_a_failure(federation):
    strategy = legacy_strategy(min_fit_clients=2, min_evaluate_clients=2, accept_failures=True)
    federation.start_clients(raising_client_app)
    federation.run_server(legacy_server_app(strategy, rounds=2))
    federation.join_clients()
    assert strategy.failures and all(count == 1 for count in strategy.failures)
    assert len(strategy.losses) == 2
    # the raising client kept serving and stopped on the stop signal like the others
    assert len(federation.stop_reasons) == 3


def test_error_reply_carries_client_app_raised_exception(federation):
    replies: list[Message] = []
    app = ServerApp()

    @app.main()
    def main(grid: Grid, context: Context) -> None:
        first_node = next(iter(grid.get_node_ids()))
        message = Message(RecordDict(), dst_node_id=first_node, message_type="train")
        replies.extend(grid.send_and_receive([message], timeout=20))

    federation.start_clients(raising_client_app)
    federation.run_server(app)
    federation.join_clients()
    assert len(replies) == 1 and replies[0].has_error()
    assert replies[0].error.code == ErrorCode.CLIENT_APP_RAISED_EXCEPTION
    assert "disk on fire" in replies[0].error.reason


def test_silent_client_ends_the_round_at_the_timeout(federation, monkeypatch):
    monkeypatch.setenv("SYFT_FLWR_MSG_TIMEOUT", "1.5")
    strategy = legacy_strategy(min_fit_clients=2, min_evaluate_clients=2, accept_failures=True)
    federation.start_clients(legacy_client_app, skip=frozenset({2}))
    finished = threading.Event()

    def run() -> None:
        federation.run_server(legacy_server_app(strategy, rounds=1))
        finished.set()

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    assert finished.wait(30), "the round hung on a silent client"
    federation.join_clients()
    assert strategy.failures == [1, 1]
    assert len(strategy.losses) == 1


def test_message_api_timeout_counts_the_silent_client_as_failed(federation):
    losses: list[float] = []
    federation.start_clients(lambda index: make_client_app(), skip=frozenset({1}))
    federation.run_server(message_api_app(1, losses, timeout=1.0, min_nodes=2))
    federation.join_clients()
    assert len(losses) == 1


class StopSignalRecorder:
    def __init__(self) -> None:
        self.sent: list[tuple[str, str]] = []
        self.received: list[tuple[str, str]] = []
        self.lock = threading.Lock()

    @hookimpl
    def syft_flwr_stop_signal_sent(self, run_id: int, datasite: str, reason: str) -> None:
        with self.lock:
            self.sent.append((datasite, reason))

    @hookimpl
    def syft_flwr_stop_signal_received(self, datasite: str, reason: str) -> None:
        with self.lock:
            self.received.append((datasite, reason))


def test_stop_signal_reaches_every_datasite_after_a_server_exception(federation, caplog):
    recorder = StopSignalRecorder()
    federation.manager.register(recorder)
    app = ServerApp()

    @app.main()
    def main(grid: Grid, context: Context) -> None:
        raise RuntimeError("strategy exploded")

    federation.start_clients(lambda index: make_client_app())
    original = Context(run_id=0, node_id=0, node_config={}, state=RecordDict(), run_config={})
    with caplog.at_level(logging.ERROR):
        returned = federation.run_server(app, original)
    federation.join_clients()
    assert returned is original
    assert "strategy exploded" in caplog.text
    assert sorted(d for d, _ in recorder.sent) == sorted(federation.datasites)
    assert sorted(d for d, _ in recorder.received) == sorted(federation.datasites)
    assert all("strategy exploded" in reason for _, reason in recorder.received)


def test_stop_signal_reaches_every_datasite_after_success(federation):
    recorder = StopSignalRecorder()
    federation.manager.register(recorder)
    federation.start_clients(lambda index: make_client_app())
    federation.run_server(message_api_app(1, []))
    federation.join_clients()
    assert sorted(d for d, _ in recorder.received) == sorted(federation.datasites)
    assert {reason for _, reason in recorder.received} == {"Server stopped"}


def test_updated_context_is_returned(federation):
    app = ServerApp()

    @app.main()
    def main(grid: Grid, context: Context) -> None:
        context.state["marker"] = ConfigRecord({"done": True})

    federation.start_clients(lambda index: make_client_app())
    context = federation.run_server(app)
    federation.join_clients()
    assert context.state["marker"]["done"] is True
    assert context.run_id > 1000


def test_clientapps_sharing_an_interpreter_run_one_at_a_time(federation):
    """Datasites served from one process call their ClientApps one at a time: threads gain
    nothing from overlapping under the GIL, and CPython 3.11's parser, which NumPy's
    ``np.load`` uses for every array Flower decodes, fails when two threads use it at once."""
    running, most = 0, 0
    lock = threading.Lock()

    def counting_client_app(index: int) -> ClientApp:
        app = ClientApp()

        @app.train()
        def train(message: Message, context: Context) -> Message:
            nonlocal running, most
            with lock:
                running += 1
                most = max(most, running)
            threading.Event().wait(0.05)  # long enough for the others' requests to arrive
            with lock:
                running -= 1
            return Message(RecordDict(), reply_to=message)

        return app

    replies: list[Message] = []
    app = ServerApp()

    @app.main()
    def main(grid: Grid, context: Context) -> None:
        messages = [
            Message(RecordDict(), dst_node_id=node, message_type="train")
            for node in grid.get_node_ids()
        ]
        replies.extend(grid.send_and_receive(messages, timeout=20))

    federation.start_clients(counting_client_app)
    federation.run_server(app)
    federation.join_clients()
    assert len(replies) == 3 and not any(reply.has_error() for reply in replies)
    assert most == 1
