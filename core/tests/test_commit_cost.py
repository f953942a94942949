"""A round's commit costs the same Python work at round 500 as at round 5 (counted, not timed).

The snapshot holds every committed round's history and metrics; the loops and the store encode
each round's entries once, when its round is committed (``syft_flwr.server.fragments``), so
neither the encodings nor the Python calls of a round grow with the rounds before it. The
loops run through ``syft_flwr.testing.rounds`` (stub strategies, no clients) against a real
``ServerEngine`` with a workspace, so the whole commit path is counted: the loop's history,
the snapshot, ``metrics.jsonl`` and ``run.json``.
"""

from __future__ import annotations

import json
import sys
from collections import Counter
from pathlib import Path
from types import FrameType
from typing import Any

import pytest

from syft_flwr.server import resume, snapshot
from syft_flwr.server.engine import ServerEngine
from syft_flwr.server.rounds import ResumePoint
from syft_flwr.server.workspace import RunWorkspace, Workspace
from syft_flwr.testing.rounds import STYLES, run_rounds
from syft_flwr.transport import TransportSettings
from syft_flwr_memory.network import MemoryNetwork
from syft_flwr_memory.transport import MemoryTransport

ROUNDS = 500
COUNTED = (5, 50, ROUNDS)


class CountingKeeper:
    """The engine as the loops' round keeper, counting what each counted round does: from
    ``begin_round`` to the end of its commit, every Python call and every call of the two
    encoders (``to_json_value``, ``json.dumps``), each counted by the patches it is given."""

    def __init__(self, engine: ServerEngine, counts: Counter[str]) -> None:
        self.engine = engine
        self.counts = counts
        self.rounds: dict[int, Counter[str]] = {}

    def resume_point(self, style: str, num_rounds: int) -> ResumePoint | None:
        return self.engine.resume_point(style, num_rounds)

    def begin_round(self, round_: int, num_rounds: int) -> None:
        self.counts.clear()
        if round_ in COUNTED:
            sys.setprofile(self._profile)
        self.engine.begin_round(round_, num_rounds)

    def commit_round(self, round_: int, *args: Any) -> None:
        self.engine.commit_round(round_, *args)
        if round_ in COUNTED:
            sys.setprofile(None)
            self.rounds[round_] = Counter(self.counts)

    def _profile(self, frame: FrameType, event: str, arg: object) -> None:
        if event == "call":
            self.counts["python calls"] += 1


@pytest.fixture
def counts(monkeypatch: pytest.MonkeyPatch) -> Counter[str]:
    """Counts of ``to_json_value`` (also its recursive calls) and ``json.dumps`` calls."""
    counted: Counter[str] = Counter()
    to_json_value, json_dumps = snapshot.to_json_value, json.dumps

    def counting_to_json_value(value: Any) -> Any:
        counted["to_json_value"] += 1
        return to_json_value(value)

    def counting_dumps(value: Any, **options: Any) -> str:
        counted["json.dumps"] += 1
        return json_dumps(value, **options)

    monkeypatch.setattr(snapshot, "to_json_value", counting_to_json_value)
    monkeypatch.setattr(resume, "to_json_value", counting_to_json_value)
    monkeypatch.setattr(json, "dumps", counting_dumps)
    return counted


def open_engine(root: Path, style: str) -> ServerEngine:
    transport = MemoryTransport(TransportSettings("server@cost.test"), network=MemoryNetwork())
    engine = ServerEngine(transport, style, ["ds@cost.test"], workspace=Workspace(root))
    engine.open_run()
    return engine


@pytest.mark.parametrize("style", STYLES)
def test_a_commit_does_the_same_work_at_round_500_as_at_round_5(
    tmp_path: Path, counts: Counter[str], style: str
) -> None:
    engine = open_engine(tmp_path, style)
    keeper = CountingKeeper(engine, counts)
    try:
        run_rounds(style, keeper, ROUNDS)
    finally:
        engine.close()
    first = keeper.rounds[COUNTED[0]]
    assert first["to_json_value"] > 0 and first["json.dumps"] > 0 and first["python calls"] > 0
    for round_ in COUNTED[1:]:
        got = keeper.rounds[round_]
        why = f"round {round_}: {dict(got)}; round {COUNTED[0]}: {dict(first)}"
        assert got["to_json_value"] == first["to_json_value"], why
        assert got["json.dumps"] == first["json.dumps"], why
        # a first use of a cache (logging's level cache, say) can add a call or two to a round
        assert abs(got["python calls"] - first["python calls"]) <= first["python calls"] // 50, why


def committed(run: RunWorkspace) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """The snapshot's history and metrics lines, without the times they were written at."""
    text = run.snapshot_file.read_bytes()
    value = json.loads(text)
    assert text == json.dumps(value, sort_keys=True).encode() + b"\n", "not what json writes"
    lines = [{k: v for k, v in line.items() if k != "time"} for line in value["metrics"]]
    assert [{k: v for k, v in line.items() if k != "time"} for line in run.metrics()] == lines
    return value["history"], lines


def ran(path: Path, style: str, rounds: int, *, resuming: bool = False) -> RunWorkspace:
    """The workspace of a run of ``rounds`` rounds through a new engine on ``path``."""
    engine = open_engine(path, style)
    try:
        assert engine.resumed is resuming
        run_rounds(style, engine, rounds)
        workspace = engine.get_workspace()
    finally:
        engine.close()
    assert workspace is not None
    return workspace


@pytest.mark.parametrize("style", STYLES)
def test_a_resumed_run_commits_what_an_uninterrupted_one_does(tmp_path: Path, style: str) -> None:
    """The resumed loop encodes the restored rounds' entries once and goes on: its snapshots
    hold the same history and metrics as a run that was never stopped, whatever the text of
    the version-1 snapshot it resumed from."""
    whole = ran(tmp_path / "whole", style, 12)
    stopped = ran(tmp_path / "resumed", style, 7)
    # any version-1 writer's text will do: indented, its members in another order
    value = json.loads(stopped.snapshot_file.read_bytes())
    stopped.snapshot_file.write_text(json.dumps(dict(reversed(value.items())), indent=1))
    resumed = ran(tmp_path / "resumed", style, 12, resuming=True)
    history, lines = committed(resumed)
    assert (history, lines) == committed(whole)
    assert [line["round"] for line in lines] == list(range(13))
