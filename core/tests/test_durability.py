"""How durable the server's commit points are: process crashes always, machine crashes on demand.

Renaming a complete temporary file into place is what makes a commit point survive a kill of
the process (what the kill tests prove); flushing it to disk is what makes it survive a crash of
the machine, at a few milliseconds per flush, several per message. The run state flushes only
with ``SYFT_FLWR_FSYNC=true``; keys and pins, written rarely, always do.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from syft_flwr.config import RuntimeSettings
from syft_flwr.errors import ConfigError
from syft_flwr.files import write_atomic, write_json
from syft_flwr.server.engine import ServerEngine
from syft_flwr.server.journal import FutureJournal
from syft_flwr.server.workspace import RunInfo, Workspace

AGGREGATOR, DATASITE = "aggregator@durable.test", "ds@durable.test"


@pytest.fixture
def fsyncs(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """Every ``os.fsync`` call (the descriptor), still performed."""
    calls: list[int] = []
    real = os.fsync

    def counting(fd: int) -> None:
        calls.append(fd)
        real(fd)

    monkeypatch.setattr(os, "fsync", counting)
    return calls


@pytest.mark.parametrize(
    ("raw", "expected"), [(None, False), ("", False), ("true", True), ("1", True), ("off", False)]
)
def test_the_setting_is_read_from_the_environment(raw: str | None, expected: bool) -> None:
    environ = {} if raw is None else {"SYFT_FLWR_FSYNC": raw}
    assert RuntimeSettings.from_env(environ).fsync is expected


def test_a_malformed_setting_is_a_config_error_naming_it() -> None:
    with pytest.raises(ConfigError, match="SYFT_FLWR_FSYNC"):
        RuntimeSettings.from_env({"SYFT_FLWR_FSYNC": "sometimes"})


def test_write_atomic_flushes_file_and_folder_only_when_asked(
    tmp_path: Path, fsyncs: list[int]
) -> None:
    write_atomic(tmp_path / "a", b"1", fsync=False)
    write_json(tmp_path / "b", {"x": 1}, fsync=False)
    assert fsyncs == []
    write_atomic(tmp_path / "c", b"1")
    assert len(fsyncs) == 2  # the file, then its folder
    assert [(tmp_path / n).read_bytes() for n in "ac"] == [b"1", b"1"]


@pytest.mark.parametrize("fsync", [False, True])
def test_a_run_and_its_journal_flush_as_the_workspace_says(
    tmp_path: Path, fsyncs: list[int], fsync: bool
) -> None:
    info = RunInfo(run_id=7, app_name="app", datasites=(DATASITE,), transport="memory")
    run = Workspace(tmp_path / "ws", fsync=fsync).create_run(info)
    run.update(round=1)
    run.write_metrics([{"round": 1}])
    journal = FutureJournal(run.state_dir, fsync=run.fsync)
    try:
        journal.collected("m1", b"reply")
        (synchronous,) = journal._db.execute("PRAGMA synchronous").fetchone()
    finally:
        journal.close()
    assert run.fsync is fsync
    assert synchronous == (2 if fsync else 1)  # FULL, NORMAL
    assert (len(fsyncs) > 0) is fsync


@pytest.mark.parametrize(("raw", "expected"), [("true", True), ("false", False)])
def test_the_engine_takes_the_setting_from_the_environment(
    tmp_path: Path, raw: str, expected: bool
) -> None:
    project = tmp_path / "project"
    project.mkdir()
    (project / "pyproject.toml").write_text(
        "[tool.syft_flwr]\n"
        'app_name = "durable"\n'
        f'aggregator = "{AGGREGATOR}"\n'
        f'datasites = ["{DATASITE}"]\n'
        'transport = "memory"\n'
    )
    environ = {
        "SYFT_FLWR_FSYNC": raw,
        "SYFTBOX_EMAIL": AGGREGATOR,
        "SYFT_FLWR_ENCRYPTION_ENABLED": "false",
    }
    engine = ServerEngine.from_project([DATASITE], "durable", project, environ=environ)
    try:
        assert engine.workspace is not None and engine.workspace.fsync is expected
    finally:
        engine.close()
