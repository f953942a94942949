"""Every lifecycle hook (derived from its event) and every event fires with the right
arguments during a real run."""

from __future__ import annotations

import threading
import time

from flwr.app import ArrayRecord, ConfigRecord, Context, Message, Metadata, RecordDict
from flwr.serverapp import Grid, ServerApp
from flwr.serverapp.strategy import FedAvg

from syft_flwr.demo.apps import make_client_app
from syft_flwr.demo.model import LogisticRegression
from syft_flwr.events import EngineEvent, ExchangeFinished, LifecycleEvent
from syft_flwr.hookspecs import hookimpl
from syft_flwr.message_factory import message_with_metadata


class Recorder:
    """Records every event hook call as (hook name, arguments)."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, dict[str, object]]] = []
        self.lock = threading.Lock()

    def record(self, name: str, **kwargs: object) -> None:
        with self.lock:
            self.calls.append((name, kwargs))

    def named(self, name: str) -> list[dict[str, object]]:
        return [kwargs for hook, kwargs in self.calls if hook == name]

    @hookimpl
    def syft_flwr_server_started(self, run_id, app_name, datasites):
        self.record(
            "syft_flwr_server_started", run_id=run_id, app_name=app_name, datasites=datasites
        )

    @hookimpl
    def syft_flwr_server_finished(self, run_id, error):
        self.record("syft_flwr_server_finished", run_id=run_id, error=error)

    @hookimpl
    def syft_flwr_message_pushed(self, run_id, message_id, datasite, message_type, group_id):
        self.record(
            "syft_flwr_message_pushed",
            run_id=run_id,
            message_id=message_id,
            datasite=datasite,
            message_type=message_type,
            group_id=group_id,
        )

    @hookimpl
    def syft_flwr_reply_pulled(self, run_id, message_id, datasite, error_code):
        self.record(
            "syft_flwr_reply_pulled",
            run_id=run_id,
            message_id=message_id,
            datasite=datasite,
            error_code=error_code,
        )

    @hookimpl
    def syft_flwr_event(self, event):
        if isinstance(event, ExchangeFinished):  # no lifecycle hook of its own: the event
            self.record("exchange_finished", **event.fields())


def fedavg_app(rounds: int) -> ServerApp:
    app = ServerApp()

    @app.main()
    def main(grid: Grid, context: Context) -> None:
        FedAvg(min_available_nodes=3, min_train_nodes=3, min_evaluate_nodes=3).start(
            grid=grid,
            initial_arrays=ArrayRecord(LogisticRegression.zeros().to_arrays()),
            num_rounds=rounds,
            timeout=30,
        )

    return app


def test_lifecycle_hooks_describe_the_run(federation):
    recorder = Recorder()
    federation.manager.register(recorder)
    federation.start_clients(lambda index: make_client_app())
    context = federation.run_server(fedavg_app(rounds=2))
    federation.join_clients()

    (started,) = recorder.named("syft_flwr_server_started")
    assert started == {
        "run_id": context.run_id,
        "app_name": "test",
        "datasites": federation.datasites,
    }
    (finished,) = recorder.named("syft_flwr_server_finished")
    assert finished == {"run_id": context.run_id, "error": None}

    pushed = recorder.named("syft_flwr_message_pushed")
    pulled = recorder.named("syft_flwr_reply_pulled")
    assert len(pushed) == 2 * 2 * 3  # rounds x (train, evaluate) x datasites
    assert {p["message_type"] for p in pushed} == {"train", "evaluate"}
    assert {p["message_id"] for p in pushed} == {p["message_id"] for p in pulled}
    assert all(p["error_code"] is None for p in pulled)
    assert {p["datasite"] for p in pulled} == set(federation.datasites)

    rounds = recorder.named("exchange_finished")
    assert [(r["replies"], r["failures"]) for r in rounds] == [(3, 0)] * 4  # train+evaluate x2
    assert {r["group_id"] for r in rounds} == {p["group_id"] for p in pushed}
    names = [name for name, _ in recorder.calls]
    assert names[0] == "syft_flwr_server_started"
    assert names.index("syft_flwr_server_finished") > max(
        i for i, n in enumerate(names) if n == "syft_flwr_reply_pulled"
    )


def test_server_finished_reports_the_error(federation):
    recorder = Recorder()
    federation.manager.register(recorder)
    app = ServerApp()

    @app.main()
    def main(grid: Grid, context: Context) -> None:
        raise ValueError("bad strategy")

    federation.start_clients(lambda index: make_client_app())
    federation.run_server(app)
    federation.join_clients()
    (finished,) = recorder.named("syft_flwr_server_finished")
    assert isinstance(finished["error"], ValueError)


class ShutdownRecogniser:
    """Recognises another system's stop message: a ``query`` carrying ``{"shutdown": True}``."""

    @hookimpl
    def syft_flwr_stop_reason(self, message: Message) -> str | None:
        if not message.has_content():
            return None
        config = message.content.config_records.get("control")
        return "remote shutdown" if config and config.get("shutdown") is True else None


def test_stop_reason_hook_lets_a_plugin_recognise_other_stop_messages(federation):
    federation.manager.register(ShutdownRecogniser())
    app = ServerApp()

    @app.main()
    def main(grid: Grid, context: Context) -> None:
        for node_id in grid.get_node_ids():
            metadata = Metadata(
                run_id=grid.run.run_id,
                message_id="",
                src_node_id=1,
                dst_node_id=node_id,
                reply_to_message_id="",
                group_id="x",
                created_at=time.time(),
                ttl=30.0,
                message_type="query",
            )
            content = RecordDict({"control": ConfigRecord({"shutdown": True})})
            grid.push_messages([message_with_metadata(metadata, content=content)])

    federation.start_clients(lambda index: make_client_app())
    federation.run_server(app)
    federation.join_clients()
    # the plugin's recogniser ran before the built-in one: the first stop message wins
    assert set(federation.stop_reasons.values()) == {"remote shutdown"}


class EventRecorder:
    """Records every engine event delivered through ``syft_flwr_event``."""

    def __init__(self) -> None:
        self.events: list[object] = []
        self.lock = threading.Lock()

    @hookimpl
    def syft_flwr_event(self, event):
        with self.lock:
            self.events.append(event)


class RaisingEventObserver:
    @hookimpl
    def syft_flwr_event(self, event):
        raise RuntimeError(f"observer bug on {event.name}")


def test_engine_events_describe_the_run_and_a_raising_observer_changes_nothing(federation):
    recorder = EventRecorder()
    federation.manager.register(RaisingEventObserver())
    federation.manager.register(recorder)
    federation.start_clients(lambda index: make_client_app())
    context = federation.run_server(fedavg_app(rounds=2))
    federation.join_clients()

    engine_events = [e for e in recorder.events if isinstance(e, EngineEvent)]
    lifecycle = [e for e in recorder.events if isinstance(e, LifecycleEvent)]
    names = [event.name for event in recorder.events]
    engine_names = [event.name for event in engine_events]
    assert engine_names[0] == "run_started"
    assert {event.run_id for event in engine_events} == {context.run_id}
    # one channel: the grid's and the clients' lifecycle events arrive on it too, once each
    assert {e.run_id for e in lifecycle if e.name != "stop_signal_received"} == {context.run_id}
    assert names.count("exchange_finished") == 2 * 2 and names.count("message_pushed") == 12
    assert names.count("stop_signal_received") == 3
    rounds = [(e.name, e.data["round"]) for e in engine_events if "round_" in e.name]
    assert rounds == [
        ("round_started", 1),
        ("round_finished", 1),
        ("round_started", 2),
        ("round_finished", 2),
    ]
    assert names.count("message_sent") == names.count("message_received") == 2 * 2 * 3
    assert "message_failed" not in names
    joined = {e.data["datasite"] for e in recorder.events if e.name == "client_joined"}
    assert joined == set(federation.datasites)
    assert names.index("run_finished") < names.index("stop_signal_sent")
    assert names.count("stop_signal_sent") == 3  # the grid's event; the engine only records it
    assert names.index("server_finished") < names.index("stop_signal_sent")
    assert federation.stop_reasons == {email: "Server stopped" for email in federation.datasites}
