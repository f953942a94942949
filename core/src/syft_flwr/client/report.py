"""What ``syft-flwr status`` and ``syft-flwr audit`` show a data owner, from its workspace only.

Like the server's status (:mod:`syft_flwr.server.status`) this reads files, never the transport,
so it answers instantly and also while the datasite is not serving.
"""

from __future__ import annotations

import datetime
from collections import Counter
from collections.abc import Sequence
from typing import Any

from syft_flwr.approvals import ApprovalBook
from syft_flwr.audit import read_audit
from syft_flwr.client.workspace import DatasiteWorkspace

__all__ = ["audit_text", "datasite_status", "datasite_status_text"]


def datasite_status(email: str, workspace: DatasiteWorkspace) -> dict[str, Any]:
    """The runs waiting for the owner and a summary of the audit trail, as JSON data."""
    records = read_audit(workspace.audit_path)
    refused = Counter(r["sender"] for r in records if r.get("outcome") == "refused")
    return {
        "datasite": email,
        "workspace": str(workspace.path),
        "pending_runs": [run.to_json() for run in ApprovalBook(workspace.approvals_dir).pending()],
        "audit": {
            "file": str(workspace.audit_path),
            "records": len(records),
            "outcomes": dict(Counter(str(r.get("outcome")) for r in records)),
            "refused_senders": dict(refused.most_common()),
        },
    }


def datasite_status_text(report: dict[str, Any]) -> str:
    """A few readable lines from :func:`datasite_status`'s data."""
    lines = [f"datasite {report['datasite']}", f"  workspace {report['workspace']}"]
    pending = report["pending_runs"]
    if pending:
        lines.append("runs waiting for your approval:")
        for run in pending:
            resources = run["resources"]
            asked = (
                ", ".join(f"{key}={value}" for key, value in sorted(resources.items()))
                if resources
                else "no resource check"
            )
            lines.append(
                f"  run {run['run_id']} of {run['aggregator']} (app {run['app']}): "
                f"{run['requests']} request(s) {'/'.join(run['message_types'])} since "
                f"{_when(run['first_seen'])}; asks for {asked}"
            )
            lines.append(
                f"    syft-flwr approve {run['run_id']}   or   syft-flwr deny {run['run_id']}"
            )
    else:
        lines.append("no run is waiting for your approval")
    audit = report["audit"]
    outcomes = ", ".join(f"{count} {name}" for name, count in sorted(audit["outcomes"].items()))
    lines.append(f"audit trail: {audit['records']} request(s){': ' + outcomes if outcomes else ''}")
    for sender, count in audit["refused_senders"].items():
        lines.append(f"  refused {count}x: {sender}")
    return "\n".join(lines)


def audit_text(records: Sequence[dict[str, Any]]) -> str:
    """One readable line per audit record."""
    lines = []
    for record in records:
        what = record.get("message_type") or "?"
        run = record.get("run_id")
        lines.append(
            f"{_when(record.get('time'))}  {record.get('outcome', '?'):8}  "
            f"{record.get('sender')}  {record.get('endpoint')}/{what}"
            f"{'' if run is None else f' run {run}'}"
            f"  {record.get('body_size') if record.get('body_size') is not None else '?'} B"
            f"{'  ' + record['reason'] if record.get('reason') else ''}"
        )
    return "\n".join(lines) if lines else "the audit trail is empty"


def _when(timestamp: object) -> str:
    if not isinstance(timestamp, int | float):
        return "?"
    return datetime.datetime.fromtimestamp(timestamp).isoformat(sep=" ", timespec="seconds")
