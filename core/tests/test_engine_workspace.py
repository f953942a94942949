"""The run workspace: where it lives, run.json, and the folder of each run."""

from __future__ import annotations

import json
import stat
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from syft_flwr.config import ProjectConfig
from syft_flwr.errors import WorkspaceError
from syft_flwr.server import workspace
from syft_flwr.server.workspace import (
    RUNNING,
    RunInfo,
    RunWorkspace,
    Workspace,
)
from syft_flwr.workspace_location import workspace_root

# --- workspace_root -------------------------------------------------------------------------


def test_root_defaults_to_dot_syft_flwr_in_the_project(tmp_path: Path) -> None:
    assert workspace_root(ProjectConfig(), tmp_path, environ={}) == tmp_path / ".syft_flwr"


def test_root_is_none_without_a_project_dir_or_setting() -> None:
    assert workspace_root(ProjectConfig(), None, environ={}) is None


def test_relative_config_workspace_is_taken_from_the_project_dir(tmp_path: Path) -> None:
    config = ProjectConfig(workspace="state/ws")
    assert workspace_root(config, tmp_path, environ={}) == tmp_path / "state" / "ws"


def test_absolute_config_workspace_is_kept(tmp_path: Path) -> None:
    absolute = tmp_path / "elsewhere"
    config = ProjectConfig(workspace=str(absolute))
    assert workspace_root(config, tmp_path / "project", environ={}) == absolute


def test_relative_config_workspace_without_a_project_dir_stays_relative() -> None:
    assert workspace_root(ProjectConfig(workspace="ws"), None, environ={}) == Path("ws")


def test_config_workspace_expands_the_home_dir(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    config = ProjectConfig(workspace="~/ws")
    assert workspace_root(config, tmp_path, environ={}) == tmp_path / "home" / "ws"


def test_env_wins_over_config_and_project(tmp_path: Path) -> None:
    config = ProjectConfig(workspace="from-config")
    environ = {"SYFT_FLWR_WORKSPACE": f"  {tmp_path / 'from-env'}  "}
    assert workspace_root(config, tmp_path, environ=environ) == tmp_path / "from-env"


def test_env_wins_even_without_a_project_dir(tmp_path: Path) -> None:
    environ = {"SYFT_FLWR_WORKSPACE": str(tmp_path / "env")}
    assert workspace_root(ProjectConfig(), None, environ=environ) == tmp_path / "env"


@pytest.mark.parametrize("blank", ["", "   "])
def test_a_blank_env_value_is_ignored(tmp_path: Path, blank: str) -> None:
    environ = {"SYFT_FLWR_WORKSPACE": blank}
    config = ProjectConfig(workspace="cfg")
    assert workspace_root(config, tmp_path, environ=environ) == tmp_path / "cfg"
    assert workspace_root(ProjectConfig(), tmp_path, environ=environ) == tmp_path / ".syft_flwr"


def test_root_reads_the_process_environment_by_default(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("SYFT_FLWR_WORKSPACE", str(tmp_path / "process-env"))
    assert workspace_root(ProjectConfig(), tmp_path) == tmp_path / "process-env"
    monkeypatch.delenv("SYFT_FLWR_WORKSPACE")
    assert workspace_root(ProjectConfig(), tmp_path) == tmp_path / ".syft_flwr"


# --- RunInfo --------------------------------------------------------------------------------


def make_info(run_id: int = 1, **changes: Any) -> RunInfo:
    fields: dict[str, Any] = {
        "run_id": run_id,
        "app_name": "demo",
        "datasites": ("a@x.org", "b@x.org"),
        "transport": "memory",
        "started_at": 1000.0 + run_id,
        "updated_at": 1000.0 + run_id,
    }
    fields.update(changes)
    return RunInfo(**fields)


def test_run_info_defaults() -> None:
    info = RunInfo(run_id=1, app_name="a", datasites=("d",), transport="t")
    assert info.status == RUNNING
    assert info.round is None and info.num_rounds is None and info.style is None
    assert info.finished_at is None and info.error is None
    assert info.resumed == 0
    assert info.started_at > 0 and info.updated_at > 0


def test_run_info_json_round_trip() -> None:
    info = make_info(
        7,
        status="failed",
        finished_at=2000.5,
        error="boom",
        round=3,
        num_rounds=5,
        style="legacy",
        resumed=2,
    )
    value = info.to_json()
    assert value["datasites"] == ["a@x.org", "b@x.org"]
    again = RunInfo.from_json(json.loads(json.dumps(value)), Path("run.json"))
    assert again == info


run_infos = st.builds(
    RunInfo,
    run_id=st.integers(min_value=0, max_value=2**63 - 1),
    app_name=st.text(min_size=1, max_size=20),
    datasites=st.lists(st.emails(), max_size=4).map(tuple),
    transport=st.sampled_from(["memory", "syftbox", "gdrive"]),
    status=st.sampled_from(["running", "finished", "failed", "abandoned"]),
    started_at=st.floats(min_value=0, max_value=4e9),
    updated_at=st.floats(min_value=0, max_value=4e9),
    finished_at=st.none() | st.floats(min_value=0, max_value=4e9),
    error=st.none() | st.text(max_size=30),
    round=st.none() | st.integers(min_value=0, max_value=1000),
    num_rounds=st.none() | st.integers(min_value=0, max_value=1000),
    style=st.sampled_from([None, "message", "legacy"]),
    resumed=st.integers(min_value=0, max_value=100),
)


@given(info=run_infos)
def test_run_info_json_round_trip_property(info: RunInfo) -> None:
    value = json.loads(json.dumps(info.to_json()))
    assert RunInfo.from_json(value, Path("run.json")) == info


@pytest.mark.parametrize(
    ("value", "why"),
    [
        (["not", "an", "object"], "not an object"),
        ("a string", "not an object"),
        (None, "not an object"),
        ({"app_name": "a", "datasites": [], "transport": "t"}, "run_id"),
        ({"run_id": 1, "app_name": "a", "transport": "t"}, "datasites"),
        ({"run_id": 1, "datasites": [], "transport": "t"}, "app_name"),
        ({"run_id": 1, "app_name": "a", "datasites": None, "transport": "t"}, "NoneType"),
        ({"run_id": 1, "app_name": "a", "datasites": [], "transport": "t", "extra": 1}, "extra"),
        ({"run_id": "1", "app_name": "a", "datasites": [], "transport": "t"}, "bad run_id"),
        ({"run_id": 1.5, "app_name": "a", "datasites": [], "transport": "t"}, "bad run_id"),
        (
            {"run_id": 1, "app_name": "a", "datasites": [], "transport": "t", "status": "paused"},
            "paused",
        ),
    ],
    ids=[
        "list",
        "string",
        "null",
        "no-run-id",
        "no-datasites",
        "no-app-name",
        "null-datasites",
        "unknown-field",
        "string-run-id",
        "float-run-id",
        "unknown-status",
    ],
)
def test_run_info_validation_errors_name_the_file(value: object, why: str) -> None:
    where = Path("/ws/runs/1/run.json")
    with pytest.raises(WorkspaceError, match="is not a valid run description") as info:
        RunInfo.from_json(value, where)
    assert str(where) in str(info.value)
    assert why in str(info.value)


# --- Workspace.create_run -------------------------------------------------------------------


def test_create_run_makes_the_folder_and_run_json(tmp_path: Path) -> None:
    workspace = Workspace(tmp_path / "ws")
    info = make_info(42)
    run = workspace.create_run(info)
    assert run.path == tmp_path / "ws" / "runs" / "42"
    assert run.run_id == 42
    assert run.path.is_dir() and run.state_dir.is_dir()
    assert stat.S_IMODE(run.path.stat().st_mode) == 0o700
    assert stat.S_IMODE(run.state_dir.stat().st_mode) == 0o700
    assert stat.S_IMODE(run.run_file.stat().st_mode) == 0o600
    stored = run.info()
    assert replace(stored, updated_at=info.updated_at) == info
    assert stored.updated_at >= info.updated_at
    assert not (run.path / "config").exists()


def test_create_run_keeps_a_copy_of_the_config(tmp_path: Path) -> None:
    source = tmp_path / "project" / "pyproject.toml"
    source.parent.mkdir()
    source.write_text('[tool.syft_flwr]\napp_name = "demo"\n')
    run = Workspace(tmp_path / "ws").create_run(make_info(1), config_source=source)
    copy = run.path / "config" / "pyproject.toml"
    assert copy.read_text() == source.read_text()
    source.write_text("changed later")
    assert copy.read_text() == '[tool.syft_flwr]\napp_name = "demo"\n'


def test_create_run_with_a_missing_config_source_copies_nothing(tmp_path: Path) -> None:
    run = Workspace(tmp_path / "ws").create_run(make_info(1), tmp_path / "absent.toml")
    assert not (run.path / "config").exists()


def test_create_run_twice_is_a_workspace_error(tmp_path: Path) -> None:
    workspace = Workspace(tmp_path / "ws")
    first = workspace.create_run(make_info(5, app_name="first"))
    with pytest.raises(WorkspaceError, match="a run 5 exists already"):
        workspace.create_run(make_info(5, app_name="second"))
    assert first.info().app_name == "first"


def test_create_run_where_no_folder_can_be_made_is_a_workspace_error(tmp_path: Path) -> None:
    blocker = tmp_path / "ws"
    blocker.write_text("a file where the workspace should be")
    with pytest.raises(WorkspaceError, match="cannot create a run folder"):
        Workspace(blocker).create_run(make_info(1))


# --- Workspace.runs / latest / interrupted --------------------------------------------------


def test_no_runs_in_an_empty_or_missing_workspace(tmp_path: Path) -> None:
    workspace = Workspace(tmp_path / "never-created")
    assert workspace.runs() == []
    assert workspace.latest() is None
    assert workspace.interrupted("demo") is None


def test_runs_are_ordered_by_start_time_not_by_id(tmp_path: Path) -> None:
    workspace = Workspace(tmp_path)
    workspace.create_run(make_info(30, started_at=300.0))
    workspace.create_run(make_info(10, started_at=100.0))
    workspace.create_run(make_info(20, started_at=200.0))
    assert [run.run_id for run in workspace.runs()] == [10, 20, 30]
    latest = workspace.latest()
    assert latest is not None and latest.run_id == 30


def test_runs_skip_damaged_and_foreign_folders(tmp_path: Path) -> None:
    workspace = Workspace(tmp_path)
    workspace.create_run(make_info(1, started_at=1.0))
    workspace.create_run(make_info(2, started_at=2.0))
    (workspace.runs_dir / "3").mkdir()
    (workspace.runs_dir / "3" / "run.json").write_text('{"run_id": 3, "app_')  # torn
    (workspace.runs_dir / "4").mkdir()
    (workspace.runs_dir / "4" / "run.json").write_text('{"run_id": 4}')  # incomplete
    (workspace.runs_dir / "5").mkdir()  # a crash before run.json
    (workspace.runs_dir / "notes").mkdir()
    (workspace.runs_dir / "notes" / "run.json").write_text(json.dumps(make_info(6).to_json()))
    (workspace.runs_dir / "7").write_text("a file, not a folder")
    assert [run.run_id for run in workspace.runs()] == [1, 2]


def test_interrupted_is_the_latest_running_run_of_the_app(tmp_path: Path) -> None:
    workspace = Workspace(tmp_path)
    workspace.create_run(make_info(1, started_at=1.0))  # running, older
    workspace.create_run(make_info(2, started_at=2.0))  # running, newer: the one
    workspace.create_run(make_info(3, started_at=3.0, status="finished"))
    workspace.create_run(make_info(4, started_at=4.0, status="failed"))
    workspace.create_run(make_info(5, started_at=5.0, status="abandoned"))
    workspace.create_run(make_info(6, started_at=6.0, app_name="other"))
    found = workspace.interrupted("demo")
    assert found is not None and found.run_id == 2
    other = workspace.interrupted("other")
    assert other is not None and other.run_id == 6
    assert workspace.interrupted("unknown-app") is None


def test_no_interrupted_run_once_every_run_ended(tmp_path: Path) -> None:
    workspace = Workspace(tmp_path)
    run = workspace.create_run(make_info(1))
    assert workspace.interrupted("demo") is not None
    run.update(status="finished", finished_at=5.0)
    assert workspace.interrupted("demo") is None


def test_remove_deletes_a_run(tmp_path: Path) -> None:
    workspace = Workspace(tmp_path)
    run = workspace.create_run(make_info(1))
    run.write_metrics([{"round": 1}])
    workspace.remove(run)
    assert not run.path.exists()
    assert workspace.runs() == []
    workspace.remove(run)  # already gone: no error


# --- RunWorkspace ---------------------------------------------------------------------------


def test_run_workspace_layout(tmp_path: Path) -> None:
    run = RunWorkspace(tmp_path / "runs" / "9")
    assert run.run_id == 9
    assert run.state_dir == run.path / "state"
    assert run.run_file == run.path / "run.json"
    assert run.events_file == run.path / "events.jsonl"
    assert run.metrics_file == run.path / "metrics.jsonl"
    assert run.clients_file == run.path / "clients.json"
    assert run.snapshot_file == run.path / "state" / "snapshot.json"
    assert run.final_model_file == run.path / "final_model.sfwm"


def test_update_changes_fields_and_persists_them(tmp_path: Path) -> None:
    run = Workspace(tmp_path).create_run(make_info(1, updated_at=0.0))
    new = run.update(round=2, num_rounds=5, style="message")
    assert (new.round, new.num_rounds, new.style) == (2, 5, "message")
    stored = run.info()
    assert (stored.round, stored.num_rounds, stored.style) == (2, 5, "message")
    assert stored.app_name == "demo" and stored.datasites == ("a@x.org", "b@x.org")
    assert stored.updated_at > 0.0  # write_info stamps the update time


def test_update_with_an_unknown_field_fails_and_keeps_run_json(tmp_path: Path) -> None:
    run = Workspace(tmp_path).create_run(make_info(1))
    before = run.run_file.read_bytes()
    with pytest.raises(TypeError):
        run.update(no_such_field=1)
    assert run.run_file.read_bytes() == before


def test_info_of_a_damaged_run_json_is_a_workspace_error(tmp_path: Path) -> None:
    run = Workspace(tmp_path).create_run(make_info(1))
    run.run_file.write_text("{")
    with pytest.raises(WorkspaceError, match=r"run\.json"):
        run.info()


def test_events_are_appended_and_read_back(tmp_path: Path) -> None:
    run = Workspace(tmp_path).create_run(make_info(1))
    assert run.events() == []
    run.append_event({"name": "run_started", "run_id": 1})
    run.append_event({"name": "round_started", "round": 1})
    assert run.events() == [
        {"name": "run_started", "run_id": 1},
        {"name": "round_started", "round": 1},
    ]


def test_metrics_are_rewritten_whole_and_read_back(tmp_path: Path) -> None:
    run = Workspace(tmp_path).create_run(make_info(1))
    assert run.metrics() == []
    run.write_metrics([{"round": 1, "train": {"loss": 0.5}}])
    lines = [{"round": 1, "train": {"loss": 0.5}}, {"round": 2, "train": {"loss": 0.25}}]
    run.write_metrics(lines)
    run.write_metrics(lines)  # derived from the snapshot: writing it again changes nothing
    assert [entry["round"] for entry in run.metrics()] == [1, 2]
    assert run.metrics()[1]["train"] == {"loss": 0.25}


def test_a_later_metrics_write_appends_only_the_new_lines(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Committing round n writes its own line, not every earlier round's again (a rewrite per
    round would cost O(rounds) per round)."""
    run = Workspace(tmp_path).create_run(make_info(1))
    rewrites: list[Path] = []
    appended: list[Any] = []
    write_atomic, append_json_line = workspace.write_atomic, workspace.append_json_line

    def counting_write(path: Path, data: bytes, *, fsync: bool = True) -> None:
        rewrites.append(path)
        write_atomic(path, data, fsync=fsync)

    def counting_append(path: Path, value: Any, *, fsync: bool = False) -> None:
        appended.append(value)
        append_json_line(path, value, fsync=fsync)

    monkeypatch.setattr(workspace, "write_atomic", counting_write)
    monkeypatch.setattr(workspace, "append_json_line", counting_append)
    lines = [{"round": r, "train": {"loss": 1.0 / (r + 1)}} for r in range(6)]
    for n in range(1, len(lines) + 1):
        run.write_metrics(lines[:n])
    run.write_metrics(lines)  # the same lines again: nothing to write
    assert rewrites == [run.metrics_file]
    assert [line["round"] for line in appended] == [1, 2, 3, 4, 5]
    assert run.metrics() == lines


def test_metrics_that_do_not_extend_the_last_write_replace_the_file(tmp_path: Path) -> None:
    """A round committed again (its line replaced) or a fresh workspace object (a restarted
    server, maybe after a torn append) rewrites the file whole."""
    run = Workspace(tmp_path).create_run(make_info(1))
    run.write_metrics([{"round": 0}, {"round": 1, "loss": 0.5}])
    run.write_metrics([{"round": 0}, {"round": 1, "loss": 0.25}])
    assert run.metrics() == [{"round": 0}, {"round": 1, "loss": 0.25}]
    with run.metrics_file.open("ab") as handle:
        handle.write(b'{"round": 2, "lo')  # an append torn by a kill
    again = RunWorkspace(run.path)
    again.write_metrics([{"round": 0}, {"round": 1, "loss": 0.25}, {"round": 2}])
    assert again.metrics() == [{"round": 0}, {"round": 1, "loss": 0.25}, {"round": 2}]
    assert b"lo\n" not in again.metrics_file.read_bytes()


def test_clients_round_trip(tmp_path: Path) -> None:
    run = Workspace(tmp_path).create_run(make_info(1))
    assert run.clients() == {}
    clients = {"a@x.org": {"state": "active", "last_seen": 12.5, "node_id": 3}}
    run.write_clients(clients)
    assert run.clients() == clients
    assert stat.S_IMODE(run.clients_file.stat().st_mode) == 0o600
    run.write_clients({})
    assert run.clients() == {}


def test_clients_json_that_is_not_an_object_reads_as_empty(tmp_path: Path) -> None:
    run = Workspace(tmp_path).create_run(make_info(1))
    run.clients_file.write_text("[1, 2]")
    assert run.clients() == {}


def test_damaged_clients_json_is_a_workspace_error(tmp_path: Path) -> None:
    run = Workspace(tmp_path).create_run(make_info(1))
    run.clients_file.write_text("{not json")
    with pytest.raises(WorkspaceError, match=r"clients\.json"):
        run.clients()
