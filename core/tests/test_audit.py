"""The audit trail: one line per decision, bounded by rotation, readable after a torn write."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest

from syft_flwr.audit import AuditRecord, AuditTrail, read_audit
from syft_flwr.client.workspace import DatasiteWorkspace, default_state_root
from syft_flwr.config import ProjectConfig
from syft_flwr.errors import ConfigError


def record(index: int, outcome: str = "refused") -> AuditRecord:
    return AuditRecord(
        datasite="alice@x.org",
        sender="mallory@evil.org",
        endpoint="messages",
        request_id=f"r{index}",
        outcome=outcome,
        reason="x" * 900,
        body_size=index,
    )


def test_records_are_read_back_in_order_with_long_reasons_cut(tmp_path: Path) -> None:
    trail = AuditTrail(tmp_path / "audit.jsonl")
    for index in range(3):
        trail.record(record(index))
    lines = read_audit(trail.path)
    assert [line["request_id"] for line in lines] == ["r0", "r1", "r2"]
    assert len(lines[0]["reason"]) == 500 and lines[0]["run_id"] is None
    assert (trail.path.stat().st_mode & 0o777) == 0o600


def test_a_flood_is_bounded_by_rotation_and_the_newest_lines_survive(tmp_path: Path) -> None:
    trail = AuditTrail(tmp_path / "audit.jsonl", max_bytes=4096, backups=2)
    for index in range(200):
        trail.record(record(index))
    files = sorted(path.name for path in tmp_path.iterdir())
    assert files == ["audit.jsonl", "audit.jsonl.1", "audit.jsonl.2"]
    assert all(path.stat().st_size <= 4096 for path in tmp_path.iterdir())
    lines = read_audit(trail.path, backups=2)
    ids = [int(line["request_id"][1:]) for line in lines]
    assert ids == sorted(ids) and ids[-1] == 199 and len(ids) < 200


def test_a_torn_last_line_is_skipped(tmp_path: Path) -> None:
    trail = AuditTrail(tmp_path / "audit.jsonl")
    trail.record(record(1))
    with trail.path.open("ab") as handle:
        handle.write(b'{"request_id": "torn')
    trail.record(record(2))
    assert [line["request_id"] for line in read_audit(trail.path)] == ["r1", "r2"]


def test_a_failing_disk_is_logged_once_and_never_raises(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("not a folder")
    trail = AuditTrail(blocker / "audit.jsonl")
    with caplog.at_level(logging.ERROR, logger="syft_flwr.audit"):
        for index in range(5):
            trail.record(record(index))
    assert len(caplog.records) == 1 and "cannot write the audit trail" in caplog.text


def test_the_workspace_of_a_datasite_is_named_by_its_normalised_email(tmp_path: Path) -> None:
    environ = {"SYFT_FLWR_WORKSPACE": str(tmp_path)}
    workspace = DatasiteWorkspace.locate(ProjectConfig(), None, " Alice@X.org ", environ)
    assert workspace.audit_path == tmp_path / "datasites" / "alice@x.org" / "audit.jsonl"
    assert default_state_root({"XDG_STATE_HOME": str(tmp_path)}) == tmp_path / "syft-flwr"
    for bad in ("../evil@x.org", "a/b@x.org", ".."):
        with pytest.raises(ConfigError, match="cannot name a workspace"):
            DatasiteWorkspace.locate(ProjectConfig(), None, bad, environ)
