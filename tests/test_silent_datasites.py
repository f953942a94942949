"""A run in which some datasite never answered does not pass for a success.

Over the memory transport: three datasites configured, one never serving. The strategy goes on
with the others (it tolerates failures), but the run ends ``failed``, naming the silent
datasite, and ``syft-flwr run`` exits 1, unless the project sets ``tolerate_dropouts``. A
datasite that refused everything is named with what it said.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from syft_flwr.demo.apps import make_client_app, make_server_app
from syft_flwr.server.workspace import Workspace
from syft_flwr.testing.local import LocalFederation

pytestmark = pytest.mark.slow


def latest() -> dict[str, object]:
    run = Workspace(Path(os.environ["SYFT_FLWR_WORKSPACE"])).latest()
    assert run is not None
    info: dict[str, object] = json.loads(run.run_file.read_text())
    return info


def test_a_datasite_that_never_answered_fails_the_run(federation: LocalFederation) -> None:
    federation.start_clients(lambda index: make_client_app(), skip=frozenset({2}))
    federation.run_server(make_server_app(2, 2, round_timeout=1.0))
    federation.join_clients()
    info = latest()
    silent = federation.datasites[2]
    assert info["status"] == "failed" and info["round"] == 2
    assert f"1 of 3 datasite(s) never answered: {silent}: it never answered" in str(info["error"])
    assert "tolerate_dropouts" in str(info["error"])
    assert set(info["answered"]) == set(federation.datasites[:2])  # type: ignore[call-overload]


def test_a_datasite_that_refused_everything_is_named_with_its_reason(
    federation: LocalFederation,
) -> None:
    refusing = federation.datasites[2]
    federation.start_clients(lambda index: make_client_app(), skip=frozenset({2}))
    transport = federation.transport(refusing)
    from syft_flwr.client.runner import ClientRunner
    from syft_flwr.testing.local import empty_context

    # it trusts another aggregator only: every message of this run is refused
    runner = ClientRunner(
        make_client_app(),
        empty_context(),
        transport,
        f"flwr/{federation.app_name}",
        trusted_aggregators=["someone-else@federation.test"],
    )
    import threading

    thread = threading.Thread(target=runner.run, daemon=True)
    thread.start()
    try:
        federation.run_server(make_server_app(2, 1, round_timeout=5.0))
    finally:
        transport.stop()
        thread.join(10)
    federation.join_clients()
    error = str(latest()["error"])
    assert f"{refusing}: " in error and "is not a trusted aggregator" in error


def test_tolerate_dropouts_lets_the_run_finish(federation: LocalFederation, tmp_path: Path) -> None:
    from syft_flwr.fl_orchestrator import syftbox_flwr_server
    from syft_flwr.testing.local import empty_context

    project = tmp_path / "project"
    project.mkdir()
    (project / "pyproject.toml").write_text(
        f'[tool.syft_flwr]\napp_name = "{federation.app_name}"\ntolerate_dropouts = true\n'
    )
    federation.start_clients(lambda index: make_client_app(), skip=frozenset({2}))
    syftbox_flwr_server(
        make_server_app(2, 1, round_timeout=1.0),
        empty_context(),
        federation.datasites,
        federation.app_name,
        project,
        transport=federation.transport(federation.server_identity),
        plugin_manager=federation.manager,
    )
    federation.join_clients()
    assert latest()["status"] == "finished"
