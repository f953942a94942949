"""The reference API's examples run as written, with clients served over the memory transport."""

from __future__ import annotations

import runpy
import threading
from pathlib import Path

import pytest
from flwr.app import Context, RecordDict

from syft_flwr.config import load_project_config
from syft_flwr.demo.apps import make_legacy_client_app
from syft_flwr.fl_orchestrator import syftbox_flwr_client

pytestmark = pytest.mark.slow

EXAMPLES = Path(__file__).parent / "seed_examples"
PROJECT = EXAMPLES / "project"


def serve_datasites() -> tuple[list[threading.Thread], dict[str, str | None]]:
    config = load_project_config(PROJECT)
    reasons: dict[str, str | None] = {}
    threads = []
    for index, email in enumerate(config.datasites):
        app = make_legacy_client_app(index, 3)
        context = Context(run_id=0, node_id=0, node_config={}, state=RecordDict(), run_config={})

        def serve(app=app, context=context, email=email) -> None:
            reasons[email] = syftbox_flwr_client(
                app, context, config.require_app_name(), PROJECT, email=email
            )

        thread = threading.Thread(target=serve, daemon=True)
        thread.start()
        threads.append(thread)
    return threads, reasons


@pytest.mark.parametrize(
    ("script", "expected"),
    [
        ("basic_server.py", "Training complete! Final context:"),
        ("complete_example.py", "=== Training Complete ==="),
    ],
)
def test_reference_example_runs_as_written(script, expected, capsys, monkeypatch):
    monkeypatch.setenv("SYFT_FLWR_MSG_TIMEOUT", "30")
    threads, reasons = serve_datasites()
    runpy.run_path(str(EXAMPLES / script), run_name="__main__")
    for thread in threads:
        thread.join(30)
        assert not thread.is_alive()
    output = capsys.readouterr().out
    assert expected in output
    assert reasons == {email: "Server stopped" for email in load_project_config(PROJECT).datasites}
    if script == "complete_example.py":
        assert output.count("=== Evaluation Round") == 10
        assert "Failures: 0" in output
