"""What ``syft-flwr status`` shows: a run's state, read from its workspace only.

Reading the workspace (not asking the transport) keeps ``status`` instant and usable while the
server is down, which is when one most wants to know where an interrupted run stands. Rounds
and the last round come from the committed snapshot (the one commit point of a round), never
from files a kill could have left one round behind or ahead.
"""

from __future__ import annotations

import datetime
from pathlib import Path
from typing import Any

from syft_flwr.config import ProjectConfig
from syft_flwr.errors import WorkspaceError
from syft_flwr.node_ids import node_id_for
from syft_flwr.server.snapshot import SnapshotStore
from syft_flwr.server.workspace import FINISHING, RESUMABLE, Workspace
from syft_flwr.workspace_location import workspace_root

__all__ = ["run_status", "status_text"]

_SHOWN_ROUNDS = 5


def run_status(
    config: ProjectConfig, project_dir: Path, run_id: int | None = None
) -> dict[str, Any]:
    """The status of run ``run_id`` (default: the latest) of the project, as JSON data.

    :raises WorkspaceError: the project has no runs (or not that one).
    """
    root = workspace_root(config, project_dir)
    if root is None:
        raise WorkspaceError(f"{project_dir} has no workspace")
    workspace = Workspace(root)
    runs = workspace.runs()
    if run_id is not None:
        runs = [run for run in runs if run.run_id == run_id]
    if not runs:
        which = f"run {run_id}" if run_id is not None else "no runs"
        raise WorkspaceError(
            f"{which} in {workspace.runs_dir}"
            + (" (start one with `syft-flwr run`)" if run_id is None else "")
        )
    run = runs[-1]
    info = run.info()
    snapshot = SnapshotStore(run).load()
    clients = run.clients()
    datasites = {
        datasite: clients.get(
            datasite, {"node_id": node_id_for(datasite), "state": "unknown", "last_seen": None}
        )
        for datasite in info.datasites
    }
    return {
        **info.to_json(),
        "answered": sorted(run.answered()),
        "stop_pending": list(run.stop_pending()),
        "round": None if snapshot is None else snapshot.round,
        "num_rounds": info.num_rounds if snapshot is None else snapshot.num_rounds,
        "workspace": str(run.path),
        "resumable": info.status in RESUMABLE or info.status == FINISHING,
        "datasite_states": datasites,
        "rounds": [] if snapshot is None else [dict(m) for m in snapshot.metrics],
        "final_model": str(run.final_model_file) if run.final_model_file.exists() else None,
    }


def status_text(report: dict[str, Any]) -> str:
    """A few readable lines from :func:`run_status`'s data."""
    rounds = report["rounds"]
    done = report["round"] if report["round"] is not None else "-"
    total = report["num_rounds"] if report["num_rounds"] is not None else "?"
    lines = [
        f"run {report['run_id']} of {report['app_name']}: {report['status']}"
        + (f" (resumed {report['resumed']}x)" if report["resumed"] else ""),
        f"  round {done}/{total}"
        + (f" ({report['style']}-style ServerApp)" if report["style"] else "")
        + f", transport {report['transport']}",
        f"  started {_when(report['started_at'])}, updated {_when(report['updated_at'])}",
        f"  workspace {report['workspace']}",
    ]
    if report["status"] == FINISHING:
        pending = ", ".join(report["stop_pending"]) or "nobody"
        lines.append(f"  ended ({report['outcome']}); stop signals still due to: {pending}")
        lines.append("  send them with: syft-flwr run PROJECT_DIR")
    elif report["resumable"]:
        lines.append("  resume it with: syft-flwr run PROJECT_DIR   (or --fresh to start over)")
    if report.get("error"):
        lines.append(f"  error: {report['error']}")
    lines.append("datasites:")
    for datasite, state in report["datasite_states"].items():
        seen = _when(state.get("last_seen")) if state.get("last_seen") else "never"
        keys = f", keys {state['key_status']}" if state.get("key_status") else ""
        lines.append(f"  {datasite:<32} {state.get('state', 'unknown'):<8} last seen {seen}{keys}")
    if rounds:
        lines.append("rounds:")
        for entry in rounds[-_SHOWN_ROUNDS:]:
            parts = [
                f"{key} {_short(entry[key])}"
                for key in ("train", "evaluate", "server")
                if entry.get(key)
            ]
            lines.append(f"  {entry['round']:>3}  " + ("  ".join(parts) or "(no metrics)"))
    if report.get("final_model"):
        lines.append(f"final model: {report['final_model']}")
    return "\n".join(lines)


def _when(timestamp: float | None) -> str:
    if timestamp is None:
        return "-"
    return datetime.datetime.fromtimestamp(timestamp).strftime("%Y-%m-%d %H:%M:%S")


def _short(metrics: dict[str, Any]) -> str:
    return ", ".join(
        f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}" for k, v in sorted(metrics.items())
    )
