"""``ServerEngine`` methods over the memory transport with real client runners."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from flwr.app import RecordDict

from syft_flwr.config import ProjectConfig
from syft_flwr.demo.apps import make_client_app
from syft_flwr.errors import AuxError, EngineError, JobStartError
from syft_flwr.server.engine import ServerEngine
from syft_flwr.server.workspace import Workspace
from syft_flwr.services.auxiliary import AuxStatus
from syft_flwr.testing.local import LocalFederation


@pytest.fixture
def engine(federation: LocalFederation, tmp_path: Path):
    config = ProjectConfig(job={"resources": {"cpus": 1}, "min_clients": 2, "start_timeout": 3})
    made = ServerEngine(
        federation.transport(federation.server_identity),
        federation.app_name,
        federation.datasites,
        workspace=Workspace(tmp_path / "ws"),
        config=config,
        plugin_manager=federation.manager,
    )
    yield made
    made.close()


def test_methods_need_an_open_run(engine: ServerEngine) -> None:
    with pytest.raises(EngineError, match="open_run"):
        engine.send_aux_request(None, "t", RecordDict(), 1.0)
    engine.open_run()
    with pytest.raises(EngineError, match="already open"):
        engine.open_run()


def test_clients_resources_and_job_start(federation: LocalFederation, engine: ServerEngine) -> None:
    federation.start_clients(lambda index: make_client_app(), skip=frozenset({2}))
    run_id = engine.open_run()
    before = {c.datasite: c for c in engine.get_clients()}
    assert {c.state for c in before.values()} == {"unknown"}
    assert {c.key_status for c in before.values()} == {"plaintext"}

    engine.grid.msg_timeout = 5
    report = engine.start_configured_job()
    assert report is not None and set(report.started) == set(federation.datasites[:2])
    clients = {c.datasite: c for c in engine.get_clients()}
    silent = federation.datasites[2]
    assert clients[silent].state == "dropped"
    assert {clients[d].state for d in federation.datasites[:2]} == {"active"}
    assert clients[federation.datasites[0]].resources["cpus"] >= 1
    assert engine.grid.datasites == federation.datasites[:2]
    with pytest.raises(AuxError):
        engine.send_aux_request([silent], "syft_flwr.ping", RecordDict(), 1.0)

    replies = engine.send_aux_request(None, "no.such.topic", RecordDict(), 5.0)
    assert {r.status for r in replies.values()} == {AuxStatus.UNKNOWN_TOPIC}
    engine.fire_event("custom_event", detail="x")
    engine.finish_run(None)
    engine.grid.send_stop_signal()
    federation.join_clients()
    run = engine.get_workspace()
    assert run is not None and run.run_id == run_id
    names = [e["name"] for e in run.events()]
    assert names[0] == "run_started" and "custom_event" in names
    assert names.index("run_finished") < names.index("stop_signal_sent")
    saved = json.loads(run.clients_file.read_text())
    assert saved[silent]["state"] == "dropped"


def test_a_job_nobody_can_take_fails_before_the_run(
    federation: LocalFederation, tmp_path: Path
) -> None:
    federation.start_clients(lambda index: make_client_app())
    engine = ServerEngine(
        federation.transport(federation.server_identity),
        federation.app_name,
        federation.datasites,
        config=ProjectConfig(job={"resources": {"cpus": 100000}, "start_timeout": 5}),
        plugin_manager=federation.manager,
    )
    try:
        engine.open_run()
        with pytest.raises(JobStartError, match="cpus"):
            engine.start_configured_job()
        engine.grid.send_stop_signal()
        federation.join_clients()
    finally:
        engine.close()
