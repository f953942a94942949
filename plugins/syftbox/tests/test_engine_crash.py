"""Crash tests of the server engine: real processes over one SyftBox folder, killed with SIGKILL.

1. The server is killed in the middle of a round and started again with ``syft-flwr run``: it
   resumes the same run after the last completed round, collects the replies the clients sent
   while it was down (no client trains a round twice), finishes every round exactly once, and
   ends with the same model quality as an uninterrupted run.
2. A client is killed in the middle of a round: it is marked lost, the round completes with the
   others and a failure for it, and once restarted it is back in the next round.

Every wait is bounded, and the kill points are taken from what the processes report (the
engine's ``events.jsonl`` and the clients' logs), not from sleeps.
"""

from __future__ import annotations

import json
import os
import signal
from pathlib import Path

import pytest

from plugins.syftbox.tests.flower_project import (
    WAIT,
    Cluster,
    events,
    handled,
    recording_project,
    run_dir,
    wait_for,
)
from syft_flwr.demo.runner import run_local

pytestmark = pytest.mark.slow

DATASITES = ["ds1@crash.test", "ds2@crash.test", "ds3@crash.test"]
AGGREGATOR = "aggregator@crash.test"
ROUNDS = 4


def crash_project(root: Path, data_dir: Path) -> Path:
    return recording_project(
        root, data_dir, app_name="crash", datasites=DATASITES, aggregator=AGGREGATOR, rounds=ROUNDS
    )


@pytest.fixture
def cluster(tmp_path: Path, data_dir: Path) -> tuple[Cluster, Path]:
    project = crash_project(tmp_path, data_dir)
    handled_dir = tmp_path / "handled"
    handled_dir.mkdir()
    env = {
        **os.environ,
        "ROUNDS_FILE": str(tmp_path / "rounds.jsonl"),
        "HANDLED_DIR": str(handled_dir),
        "GATE_FILE": str(tmp_path / "gate"),
        "ROUND_TIMEOUT": "60",
        "SYFT_FLWR_POLL_INTERVAL": "0.5",
        "PYTHONUNBUFFERED": "1",
    }
    procs = Cluster(project, env)
    yield procs, handled_dir
    procs.close()


def test_server_killed_mid_round_resumes_the_same_run(cluster: tuple[Cluster, Path]) -> None:
    procs, handled_dir = cluster
    workspace = Path(os.environ["SYFT_FLWR_WORKSPACE"])
    crash_round = 3
    clients = [
        procs.start(email, SLOW_ROUND=str(crash_round), SLOW_SECONDS="3") for email in DATASITES
    ]
    first = procs.start(AGGREGATOR)

    def round_train_sent() -> bool:
        sent = [
            e
            for e in events(workspace)
            if e["name"] == "message_sent"
            and e["round"] == crash_round
            and e["message_type"] == "train"
        ]
        return len(sent) == len(DATASITES)

    wait_for(f"the train messages of round {crash_round}", round_train_sent, alive=first)
    first.send_signal(signal.SIGKILL)
    first.communicate(timeout=30)
    info = json.loads((run_dir(workspace) / "run.json").read_text())  # type: ignore[operator]
    assert info["status"] == "running" and info["round"] == crash_round - 1

    second = procs.start(AGGREGATOR)
    out, _ = second.communicate(timeout=WAIT)
    assert second.returncode == 0, out
    for client in clients:
        client_out, _ = client.communicate(timeout=30)
        assert client.returncode == 0, client_out

    folder = run_dir(workspace)
    assert folder is not None
    info = json.loads((folder / "run.json").read_text())
    assert (info["status"], info["resumed"], info["round"]) == ("finished", 1, ROUNDS)
    metrics = [json.loads(line) for line in (folder / "metrics.jsonl").read_text().splitlines()]
    assert [m["round"] for m in metrics] == list(range(ROUNDS + 1)), "a round was redone"
    names = [e["name"] for e in events(workspace)]
    assert names.count("run_started") == 1 and names.count("run_resumed") == 1
    resumed = next(e for e in events(workspace) if e["name"] == "run_resumed")
    assert resumed["after_round"] == crash_round - 1
    for email in DATASITES:
        done = [line.split(" ", 1)[1] for line in handled(handled_dir, email) if " done " in line]
        for server_round in range(1, ROUNDS + 1):
            assert done.count(f"done train {server_round}") == 1, (email, done)
            assert done.count(f"done evaluate {server_round}") == 1, (email, done)
    assert (folder / "final_model.sfwm").exists()

    reference = run_local("memory", num_datasites=len(DATASITES), num_rounds=ROUNDS)
    final = metrics[-1]["server"]
    assert final["test_loss"] == pytest.approx(reference.final.test_loss, abs=1e-6)
    assert final["test_accuracy"] == pytest.approx(reference.final.test_accuracy, abs=1e-9)


def test_client_killed_mid_round_is_lost_and_rejoins(
    cluster: tuple[Cluster, Path], tmp_path: Path
) -> None:
    procs, handled_dir = cluster
    workspace = Path(os.environ["SYFT_FLWR_WORKSPACE"])
    victim, lost_round = DATASITES[2], 2
    procs.env.update(ROUND_TIMEOUT="12", SYFT_FLWR_LOST_AFTER="4", GATE_ROUND=str(lost_round))
    for email in DATASITES[:2]:
        procs.start(email)
    doomed = procs.start(victim, SLOW_ROUND=str(lost_round), SLOW_SECONDS="600")
    server = procs.start(AGGREGATOR)

    wait_for(
        f"{victim} to start training round {lost_round}",
        lambda: f"{doomed.pid} start train {lost_round}" in handled(handled_dir, victim),
    )
    doomed.send_signal(signal.SIGKILL)
    doomed.communicate(timeout=30)

    def fired(name: str, **fields: object) -> bool:
        return any(
            e["name"] == name and all(e.get(k) == v for k, v in fields.items())
            for e in events(workspace)
        )

    wait_for(f"{victim} to be marked lost", lambda: fired("client_lost", datasite=victim))
    rounds_file = tmp_path / "rounds.jsonl"

    def round_reported() -> bool:  # the server then waits at the gate
        lines = rounds_file.read_text().splitlines() if rounds_file.exists() else []
        return any(json.loads(line)["server_round"] == lost_round for line in lines)

    wait_for(f"round {lost_round} to finish", round_reported, 60, alive=server)
    back = procs.start(victim)
    wait_for(
        f"the restarted {victim} to work off its old requests",
        lambda: f"{back.pid} done evaluate {lost_round}" in handled(handled_dir, victim),
    )
    (tmp_path / "gate").touch()  # the server may go on with the next round

    out, _ = server.communicate(timeout=WAIT)
    assert server.returncode == 0, out
    reports = [json.loads(line) for line in rounds_file.read_text().splitlines()]
    outcome = {r["server_round"]: (r["clients"], r["failures"]) for r in reports[1:]}
    assert outcome[1] == (3, 0)
    assert outcome[lost_round] == (2, 1), "the round did not complete with the others"
    for server_round in range(lost_round + 1, ROUNDS + 1):
        assert outcome[server_round] == (3, 0), f"{victim} did not rejoin in round {server_round}"
    assert fired("client_joined", datasite=victim, reason="answered again")
    lost_at = next(e["time"] for e in events(workspace) if e["name"] == "client_lost")
    rejoined_at = next(
        e["time"]
        for e in events(workspace)
        if e["name"] == "client_joined" and e.get("reason") == "answered again"
    )
    assert lost_at < rejoined_at
    back_out, _ = back.communicate(timeout=30)
    assert back.returncode == 0, back_out
