"""Resuming interrupted runs in-process over the memory transport (the SyftBox crash test
kills real processes; see plugins/syftbox/tests/test_engine_crash.py).

An interruption is a ``KeyboardInterrupt`` raised from the strategy in round 2: the server
returns without sending the stop signal, so the client threads keep serving, and calling the
server again resumes the run after round 1. The memory transport keeps no futures across
restarts, so the interrupted round is sent again; everything committed is not.
"""

from __future__ import annotations

import json
import os
import threading
from collections.abc import Collection
from pathlib import Path
from typing import Any

import pytest
from flwr.app import ArrayRecord, ConfigRecord, Message, RecordDict
from flwr.server import ServerApp, ServerAppComponents, ServerConfig
from flwr.supercore.task_identity import TaskIdentity

from syft_flwr.errors import WorkspaceError
from syft_flwr.grid.syft_grid import SERVER_NODE_ID, SyftGrid
from syft_flwr.node_ids import node_id_for
from syft_flwr.server.journal import FutureJournal
from syft_flwr.server.workspace import Workspace
from syft_flwr.testing.local import LocalFederation
from syft_flwr.testing.ports import RecordingPort
from syft_flwr.transport import Request, TransportSettings
from syft_flwr.wire import decode_message, encode_message
from syft_flwr_memory.network import MemoryNetwork
from syft_flwr_memory.transport import MemoryTransport
from tests.test_federated_runs import (
    RecordingLegacyFedAvg,
    legacy_client_app,
    legacy_strategy,
    message_api_app,
)

pytestmark = pytest.mark.slow

ROUNDS = 3


class InterruptedFedAvg(RecordingLegacyFedAvg):
    """Stops the server process (as Ctrl-C would) during round ``at``."""

    def __init__(self, at: int, **kwargs: object) -> None:
        super().__init__(**kwargs)
        self.at = at

    def evaluate(self, server_round, parameters):
        if server_round == self.at:
            raise KeyboardInterrupt
        return super().evaluate(server_round, parameters)


def app_of(strategy: RecordingLegacyFedAvg) -> ServerApp:
    config = ServerConfig(num_rounds=ROUNDS)
    return ServerApp(
        server_fn=lambda context: ServerAppComponents(strategy=strategy, config=config)
    )


def latest_run() -> Path:
    latest = Workspace(Path(os.environ["SYFT_FLWR_WORKSPACE"])).latest()
    assert latest is not None
    return latest.path


def test_legacy_server_fn_run_resumes_after_the_last_committed_round(
    federation: LocalFederation,
) -> None:
    reference = legacy_strategy()
    with LocalFederation("memory", 3) as other:
        other.start_clients(legacy_client_app)
        other.run_server(app_of(reference))
        other.join_clients()

    federation.start_clients(legacy_client_app)
    first = InterruptedFedAvg(2, **_legacy_options())
    with pytest.raises(KeyboardInterrupt):
        federation.run_server(app_of(first))
    folder = latest_run()
    info = json.loads((folder / "run.json").read_text())
    assert (info["status"], info["round"], info["style"]) == ("running", 1, "legacy")

    second = legacy_strategy()
    federation.run_server(app_of(second))
    federation.join_clients()
    info = json.loads((folder / "run.json").read_text())
    assert (info["status"], info["resumed"], info["round"]) == ("finished", 1, ROUNDS)
    metrics = [json.loads(line) for line in (folder / "metrics.jsonl").read_text().splitlines()]
    assert [m["round"] for m in metrics] == [0, 1, 2, 3]
    # the resumed server ran rounds 2 and 3 only, from the committed parameters of round 1
    assert len(second.losses) == 2
    assert second.losses == pytest.approx(reference.losses[1:], abs=1e-9)
    assert [m["evaluate"]["loss"] for m in metrics[1:]] == pytest.approx(reference.losses)
    assert federation.stop_reasons == {email: "Server stopped" for email in federation.datasites}


def _legacy_options() -> dict[str, object]:
    strategy = legacy_strategy()
    return {
        "fraction_fit": 1.0,
        "fraction_evaluate": 1.0,
        "min_fit_clients": 3,
        "min_evaluate_clients": 3,
        "min_available_clients": 3,
        "initial_parameters": strategy.initial_parameters,
    }


def test_a_finished_run_is_not_resumed(federation: LocalFederation) -> None:
    from syft_flwr.demo.apps import make_client_app

    federation.start_clients(lambda index: make_client_app())
    losses: list[float] = []
    federation.run_server(message_api_app(2, losses))
    federation.join_clients()
    runs = Workspace(Path(os.environ["SYFT_FLWR_WORKSPACE"])).runs()
    assert [run.info().status for run in runs] == ["finished"]
    assert Workspace(Path(os.environ["SYFT_FLWR_WORKSPACE"])).interrupted("test") is None


def test_fresh_abandons_the_interrupted_run(federation: LocalFederation) -> None:
    from syft_flwr.fl_orchestrator import syftbox_flwr_server
    from syft_flwr.testing.local import empty_context

    federation.start_clients(legacy_client_app)
    with pytest.raises(KeyboardInterrupt):
        federation.run_server(app_of(InterruptedFedAvg(2, **_legacy_options())))
    syftbox_flwr_server(
        app_of(legacy_strategy()),
        empty_context(),
        federation.datasites,
        federation.app_name,
        transport=federation.transport(federation.server_identity),
        plugin_manager=federation.manager,
        fresh=True,
    )
    federation.join_clients()
    runs = Workspace(Path(os.environ["SYFT_FLWR_WORKSPACE"])).runs()
    assert [run.info().status for run in runs] == ["abandoned", "finished"]
    assert runs[1].info().resumed == 0
    assert [m["round"] for m in runs[1].metrics()] == [0, 1, 2, 3]


def test_resuming_with_other_datasites_is_refused(federation: LocalFederation) -> None:
    from syft_flwr.fl_orchestrator import syftbox_flwr_server
    from syft_flwr.testing.local import empty_context

    federation.start_clients(legacy_client_app)
    with pytest.raises(KeyboardInterrupt):
        federation.run_server(app_of(InterruptedFedAvg(2, **_legacy_options())))
    with pytest.raises(WorkspaceError, match="--fresh"):
        syftbox_flwr_server(
            app_of(legacy_strategy()),
            empty_context(),
            federation.datasites[:2],
            federation.app_name,
            transport=federation.transport(federation.server_identity),
            plugin_manager=federation.manager,
        )
    federation.run_server(app_of(legacy_strategy()))  # the same datasites resume it
    federation.join_clients()


class NoNotifications(MemoryTransport):
    """Records every future the grid waits on (a reply that landed earlier wakes nobody)."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.waited_for: set[str] = set()

    def wait_ready(self, future_ids: Collection[str], timeout: float) -> set[str]:
        self.waited_for |= set(future_ids)
        return super().wait_ready(future_ids, timeout)


def test_a_claimed_message_whose_reply_is_in_is_collected_without_waiting(
    tmp_path: Path,
) -> None:
    """A restarted server's transport was not watching when the reply landed, so no
    notification will come for it: the grid collects it instead of waiting for one."""
    network = MemoryNetwork()
    server = NoNotifications(TransportSettings("server@claim.test"), network=network)
    client = MemoryTransport(TransportSettings("ds@claim.test"), network=network)

    def answer(request: Request) -> bytes:
        message = decode_message(request.body)
        return encode_message(Message(RecordDict({"m": ConfigRecord({"ok": 1})}), reply_to=message))

    def grid() -> SyftGrid:
        port = RecordingPort(journal=FutureJournal(tmp_path / "state"), epoch=3)
        made = SyftGrid("flwr/claim", ["ds@claim.test"], server, port=port)
        made.set_run(5)
        return made

    def train() -> Message:
        return Message(
            RecordDict({"arrays": ArrayRecord()}),
            dst_node_id=node_id_for("ds@claim.test"),
            message_type="train",
        )

    TaskIdentity.run_id, TaskIdentity.node_id = 5, SERVER_NODE_ID
    before_crash = grid()
    (message_id,) = before_crash.push_messages([train()])
    client.serve("flwr/claim", "messages", answer)
    serving = threading.Thread(target=client.run, daemon=True)
    serving.start()
    try:
        (early,) = server.wait_ready([before_crash._pending[message_id].future_id], 10)
        server.waited_for.clear()
        resumed = grid()  # a new grid on the crashed process's journal
        (reply,) = resumed.send_and_receive([train()], timeout=30)
    finally:
        client.stop()
        serving.join(10)
    assert not reply.has_error() and reply.metadata.reply_to_message_id == message_id
    assert early not in server.waited_for, "the grid waited for a reply that was already in"
