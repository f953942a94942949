"""``syft-flwr status``: a run's state read from its workspace, as data, text and on the CLI."""

from __future__ import annotations

import json
import os
import re
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from flwr.app import Array, ArrayRecord

from syft_flwr.cli import main
from syft_flwr.config import ProjectConfig, load_project_config
from syft_flwr.errors import WorkspaceError
from syft_flwr.node_ids import node_id_for
from syft_flwr.server.snapshot import SnapshotStore
from syft_flwr.server.status import run_status, status_text
from syft_flwr.server.workspace import RunInfo, RunWorkspace, Workspace

A = "alice@x.org"
B = "bob@x.org"
C = "carol@x.org"
DATE = re.compile(r"\d{4}-\d{2}-\d{2} \d{2}:\d{2}:\d{2}")


@pytest.fixture
def project(tmp_path: Path) -> Path:
    directory = tmp_path / "project"
    directory.mkdir()
    (directory / "pyproject.toml").write_text('[tool.syft_flwr]\napp_name = "x"\n')
    return directory


@pytest.fixture
def workspace() -> Workspace:
    """The workspace ``status`` reads: the repository-wide fixture sets SYFT_FLWR_WORKSPACE."""
    return Workspace(Path(os.environ["SYFT_FLWR_WORKSPACE"]))


def make_info(run_id: int, **changes: Any) -> RunInfo:
    fields: dict[str, Any] = {
        "run_id": run_id,
        "app_name": "x",
        "datasites": (A, B, C),
        "transport": "memory",
        "started_at": 1_700_000_000.0 + run_id,
        "updated_at": 1_700_000_000.0 + run_id,
    }
    fields.update(changes)
    return RunInfo(**fields)


def commit(run: RunWorkspace, round_: int, metrics: dict[str, Any], num_rounds: int = 5) -> None:
    """Commit ``round_`` the way the engine does: the snapshot carries its metrics line."""
    SnapshotStore(run).save(round_, num_rounds, "message", ArrayRecord(), {}, metrics)


def make_running_run(workspace: Workspace, run_id: int = 11) -> RunWorkspace:
    """A run killed after round 2 of 5: metrics for rounds 0-2, two datasites known."""
    run = workspace.create_run(make_info(run_id, resumed=1))
    commit(run, 0, {"time": 1.0})
    commit(run, 1, {"time": 2.0, "train": {"loss": 0.5, "num-examples": 30}})
    commit(
        run,
        2,
        {
            "time": 3.0,
            "train": {"loss": 0.123456},
            "evaluate": {"accuracy": 0.875},
            "server": {"val_loss": 0.3},
        },
    )
    run.write_clients(
        {
            A: {"node_id": 1, "state": "active", "last_seen": 1_700_000_100.0, "key_status": "ok"},
            B: {"node_id": 2, "state": "lost", "last_seen": None, "key_status": ""},
            "stranger@x.org": {"node_id": 3, "state": "active", "last_seen": None},
        }
    )
    run.update(round=2, num_rounds=5, style="message")
    return run


def make_finished_run(workspace: Workspace, run_id: int = 12) -> RunWorkspace:
    run = workspace.create_run(make_info(run_id))
    model = ArrayRecord({"w": Array(np.ones((2, 2), dtype=np.float32))})
    store = SnapshotStore(run)
    store.write_final_model(store.save(3, 3, "legacy", model, {}, {"train": {"loss": 0.1}}))
    run.update(status="finished", round=3, num_rounds=3, style="legacy", finished_at=5.0)
    return run


# --- run_status -----------------------------------------------------------------------------


def test_status_of_a_running_run(project: Path, workspace: Workspace) -> None:
    run = make_running_run(workspace)
    report = run_status(load_project_config(project), project)
    assert report["run_id"] == 11
    assert report["app_name"] == "x"
    assert report["status"] == "running"
    assert report["resumable"] is True
    assert report["round"] == 2 and report["num_rounds"] == 5
    assert report["style"] == "message" and report["resumed"] == 1
    assert report["transport"] == "memory"
    assert report["datasites"] == [A, B, C]
    assert report["workspace"] == str(run.path)
    assert report["final_model"] is None
    assert [entry["round"] for entry in report["rounds"]] == [0, 1, 2]
    assert report["rounds"][2]["evaluate"] == {"accuracy": 0.875}


def test_datasite_states_come_from_clients_json(project: Path, workspace: Workspace) -> None:
    make_running_run(workspace)
    states = run_status(load_project_config(project), project)["datasite_states"]
    assert list(states) == [A, B, C]  # the run's datasites only, in the run's order
    assert states[A]["state"] == "active" and states[A]["key_status"] == "ok"
    assert states[B]["state"] == "lost"
    assert states[C] == {"node_id": node_id_for(C), "state": "unknown", "last_seen": None}


def test_a_run_without_clients_json_shows_every_datasite_unknown(
    project: Path, workspace: Workspace
) -> None:
    workspace.create_run(make_info(1))
    states = run_status(load_project_config(project), project)["datasite_states"]
    assert {ds: s["state"] for ds, s in states.items()} == {
        A: "unknown",
        B: "unknown",
        C: "unknown",
    }
    assert states[A]["node_id"] == node_id_for(A)


def test_status_of_a_finished_run(project: Path, workspace: Workspace) -> None:
    run = make_finished_run(workspace)
    report = run_status(load_project_config(project), project)
    assert report["status"] == "finished"
    assert report["resumable"] is False
    assert report["final_model"] == str(run.final_model_file)
    assert Path(report["final_model"]).is_file()
    assert report["finished_at"] == 5.0


def test_the_latest_run_is_shown_by_default(project: Path, workspace: Workspace) -> None:
    make_running_run(workspace, run_id=11)  # started at ...011
    make_finished_run(workspace, run_id=12)  # started at ...012: the latest
    assert run_status(load_project_config(project), project)["run_id"] == 12


def test_run_id_selects_a_run(project: Path, workspace: Workspace) -> None:
    make_running_run(workspace, run_id=11)
    make_finished_run(workspace, run_id=12)
    report = run_status(load_project_config(project), project, run_id=11)
    assert report["run_id"] == 11 and report["status"] == "running"


def test_an_unknown_run_id_is_a_workspace_error(project: Path, workspace: Workspace) -> None:
    make_running_run(workspace, run_id=11)
    with pytest.raises(WorkspaceError, match="run 99 in") as info:
        run_status(load_project_config(project), project, run_id=99)
    assert str(workspace.runs_dir) in str(info.value)


def test_no_runs_is_a_workspace_error(project: Path, workspace: Workspace) -> None:
    with pytest.raises(WorkspaceError, match=r"no runs in .*start one with `syft-flwr run`"):
        run_status(load_project_config(project), project)


def test_a_damaged_run_is_not_shown(project: Path, workspace: Workspace) -> None:
    make_running_run(workspace, run_id=11)
    broken = workspace.runs_dir / "50"
    broken.mkdir()
    (broken / "run.json").write_text("{")
    assert run_status(load_project_config(project), project)["run_id"] == 11


def test_status_follows_the_config_workspace(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("SYFT_FLWR_WORKSPACE")
    project = tmp_path / "p"
    project.mkdir()
    (project / "pyproject.toml").write_text('[tool.syft_flwr]\napp_name = "x"\nworkspace = "ws"\n')
    make_finished_run(Workspace(project / "ws"), run_id=4)
    report = run_status(load_project_config(project), project)
    assert report["run_id"] == 4
    assert report["workspace"] == str(project / "ws" / "runs" / "4")


def test_status_defaults_to_the_project_dot_syft_flwr(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("SYFT_FLWR_WORKSPACE")
    project = tmp_path / "p"
    project.mkdir()
    make_running_run(Workspace(project / ".syft_flwr"), run_id=8)
    assert run_status(ProjectConfig(app_name="x"), project)["run_id"] == 8


# --- status_text ----------------------------------------------------------------------------


def test_text_of_a_running_run(project: Path, workspace: Workspace) -> None:
    make_running_run(workspace)
    text = status_text(run_status(load_project_config(project), project))
    lines = text.splitlines()
    assert lines[0] == "run 11 of x: running (resumed 1x)"
    assert lines[1] == "  round 2/5 (message-style ServerApp), transport memory"
    assert DATE.search(lines[2]) and lines[2].startswith("  started ")
    assert "resume it with: syft-flwr run PROJECT_DIR" in text
    assert "datasites:" in lines
    alice = next(line for line in lines if A in line)
    assert "active" in alice and DATE.search(alice) and "keys ok" in alice
    bob = next(line for line in lines if B in line)
    assert "lost" in bob and "last seen never" in bob and "keys" not in bob
    carol = next(line for line in lines if C in line)
    assert "unknown" in carol and "last seen never" in carol
    assert "stranger@x.org" not in text
    assert "rounds:" in lines
    assert "    0  (no metrics)" in lines
    assert "    1  train loss=0.5, num-examples=30" in lines
    assert "    2  train loss=0.1235  evaluate accuracy=0.875  server val_loss=0.3" in lines
    assert "final model" not in text


def test_text_of_a_finished_run(project: Path, workspace: Workspace) -> None:
    run = make_finished_run(workspace)
    text = status_text(run_status(load_project_config(project), project))
    assert text.splitlines()[0] == "run 12 of x: finished"
    assert "  round 3/3 (legacy-style ServerApp), transport memory" in text
    assert "resume it with" not in text
    assert text.splitlines()[-1] == f"final model: {run.final_model_file}"


def test_text_of_a_failed_run_shows_the_error(project: Path, workspace: Workspace) -> None:
    workspace.create_run(make_info(3, status="failed", error="too few clients"))
    text = status_text(run_status(load_project_config(project), project))
    assert "run 3 of x: failed" in text
    assert "  error: too few clients" in text
    assert "rounds:" not in text


def test_text_before_any_round(project: Path, workspace: Workspace) -> None:
    workspace.create_run(make_info(3))
    text = status_text(run_status(load_project_config(project), project))
    assert "  round -/?, transport memory" in text.splitlines()


def test_text_shows_only_the_last_five_rounds(project: Path, workspace: Workspace) -> None:
    run = workspace.create_run(make_info(3))
    for round_ in range(1, 9):
        commit(run, round_, {"train": {"step": round_}}, num_rounds=8)
    lines = status_text(run_status(load_project_config(project), project)).splitlines()
    shown = [line for line in lines if "train step=" in line]
    assert [int(line.split()[0]) for line in shown] == [4, 5, 6, 7, 8]


# --- the CLI --------------------------------------------------------------------------------


def test_cli_status_prints_the_text(
    project: Path, workspace: Workspace, capsys: pytest.CaptureFixture[str]
) -> None:
    make_running_run(workspace)
    assert main(["status", str(project)]) == 0
    out = capsys.readouterr().out
    assert out.splitlines()[0] == "run 11 of x: running (resumed 1x)"
    assert A in out and "train loss=0.5" in out


def test_cli_status_json(
    project: Path, workspace: Workspace, capsys: pytest.CaptureFixture[str]
) -> None:
    make_running_run(workspace, run_id=11)
    make_finished_run(workspace, run_id=12)
    assert main(["status", str(project), "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report == json.loads(json.dumps(run_status(load_project_config(project), project)))
    assert report["run_id"] == 12 and report["final_model"]


def test_cli_status_selects_a_run(
    project: Path, workspace: Workspace, capsys: pytest.CaptureFixture[str]
) -> None:
    make_running_run(workspace, run_id=11)
    make_finished_run(workspace, run_id=12)
    assert main(["status", str(project), "--run", "11", "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["run_id"] == 11 and report["status"] == "running"
    assert report["resumable"] is True


def test_cli_status_of_an_unknown_run_fails(
    project: Path, workspace: Workspace, capsys: pytest.CaptureFixture[str]
) -> None:
    make_running_run(workspace, run_id=11)
    assert main(["status", str(project), "--run", "12"]) == 2
    captured = capsys.readouterr()
    assert captured.out == ""
    assert captured.err.startswith("syft-flwr: error: run 12 in")


def test_cli_status_without_runs_fails(
    project: Path, workspace: Workspace, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["status", str(project)]) == 2
    assert "syft-flwr: error: no runs in" in capsys.readouterr().err


def test_cli_status_without_a_project_fails(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["status", str(tmp_path / "missing")]) == 2
    assert "no pyproject.toml" in capsys.readouterr().err


def test_cli_status_finds_the_config_workspace(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.delenv("SYFT_FLWR_WORKSPACE")
    project = tmp_path / "p"
    project.mkdir()
    (project / "pyproject.toml").write_text(
        '[tool.syft_flwr]\napp_name = "x"\nworkspace = "state"\n'
    )
    make_finished_run(Workspace(project / "state"), run_id=21)
    monkeypatch.chdir(tmp_path)
    assert main(["status", "p", "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["run_id"] == 21
    assert report["workspace"] == str((project / "state" / "runs" / "21").resolve())


def test_cli_status_rejects_a_non_integer_run(project: Path) -> None:
    with pytest.raises(SystemExit) as info:
        main(["status", str(project), "--run", "latest"])
    assert info.value.code == 2
