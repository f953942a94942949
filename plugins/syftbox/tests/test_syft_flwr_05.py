"""Drop-in for syft-flwr 0.5.x in both directions, against the real package.

Every party is its own process on one SyftBox folder: ours run ``syft-flwr run``, 0.5.x's run
the real ``syft-flwr==0.5.3`` (its own virtual environment with ``flwr==1.25.0``, see
:mod:`syft_flwr_syftbox.testing.syft_flwr_05`) through ``syft_flwr.run``, the calls its users
make. All serve the same Flower app, ``examples/quickstart-numpy`` (message API, run config,
node config), each party from its own copy of the project, as each party has in reality.
Identities come from each party's SyftBox client config (no ``SYFTBOX_EMAIL`` anywhere), and
encryption is each side's default (on) unless a case turns it off.

A 0.5.x datasite has no node config of its own (0.5.x passes the run config again), so its
copy of the project declares its ``partition-id`` in ``[tool.flwr.app.config]``, as such a
user would. Our server speaks ``wire = "syft-rpc"`` to federations with 0.5.x datasites.

What is asserted for every case: the server finishes (exit 0) with every round's training and
evaluation in the app's ``history.json`` and a model that learned; every client, ours or
0.5.x's, answered every train and evaluate request and stopped on the stop signal.

A 0.5.x server with 0.5.x datasites is not a case here: it fails on its own. syft-rpc writes a
request in place, syft-event reads it at the creation event, finds partial JSON and answers
``400 Error loading request``, and the 0.5.x server drops that datasite for the round (seen
with two 0.5.3 datasites and no party of ours). Our datasites re-read a partial file instead,
so a 0.5.x server drives them reliably.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import pytest

from syft_flwr_syftbox.testing.syft_flwr_05 import (
    copy_project,
    handled_messages,
    legacy_command,
    party_env,
    syft_flwr_05_venv,
    watching_files,
    write_client_config,
)

pytestmark = pytest.mark.slow

EXAMPLE = Path(__file__).resolve().parents[3] / "examples" / "quickstart-numpy"
AGGREGATOR = "aggregator@openmined.org"
DATASITES = ("do1@openmined.org", "do2@openmined.org")
ROUNDS = 3
STARTUP = 90.0
"""Longest wait for a client to bootstrap its keys and watch its folder."""
RUN = 120.0
"""Longest wait for a whole run (three rounds take a few seconds; 0.5.x polls every 0.1 s)."""


@pytest.fixture(scope="session")
def legacy_venv():  # type: ignore[no-untyped-def]
    """The real syft-flwr 0.5.3, built once per machine and cached."""
    return syft_flwr_05_venv()


@dataclass
class Party:
    email: str
    legacy: bool
    side: str
    project: Path
    log: Path
    process: subprocess.Popen[bytes]

    def output(self) -> str:
        return self.log.read_text(errors="replace")

    def describe(self) -> str:
        kind = "syft-flwr 0.5.3" if self.legacy else "ours"
        head = f"--- {self.side} {self.email} ({kind}), exit {self.process.poll()}"
        return f"{head}:\n{self.output()[-6000:]}"


class Federation:
    """Parties of one run on one SyftBox folder; every wait bounded, every process reaped."""

    def __init__(self, root: Path, legacy_venv, encrypted: bool) -> None:  # type: ignore[no-untyped-def]
        self.root = root
        self.data_dir = root / "SyftBox"
        (self.data_dir / "datasites").mkdir(parents=True)
        self.venv = legacy_venv
        self.encrypted = encrypted
        self.parties: list[Party] = []

    def _project(self, email: str, legacy: bool, side: str) -> Path:
        target = self.root / "projects" / email
        if legacy and side == "client":
            position = {"partition-id": DATASITES.index(email), "num-partitions": len(DATASITES)}
            return copy_project(EXAMPLE, target, app_config=position)
        syft_rpc = not legacy and side == "server" and self.with_legacy_clients
        return copy_project(
            EXAMPLE,
            target,
            extra='\n[tool.syft_flwr.syftbox]\nwire = "syft-rpc"\n' if syft_rpc else "",
        )

    with_legacy_clients = False

    def start(self, email: str, *, legacy: bool) -> Party:
        side = "server" if email == AGGREGATOR else "client"
        project = self._project(email, legacy, side)
        home = self.root / "homes" / email
        config = write_client_config(home / ".syftbox" / "config.json", email, self.data_dir)
        env = party_env(
            home,
            config,
            SYFT_FLWR_ENCRYPTION_ENABLED="true" if self.encrypted else "false",
            SYFT_FLWR_MSG_TIMEOUT="60",
            SYFT_FLWR_POLL_INTERVAL="0.1",
        )
        if legacy:
            command = legacy_command(self.venv, side, project)
        else:
            command = [sys.executable, "-m", "syft_flwr", "run", str(project)]
        log = self.root / f"{email}.log"
        with open(log, "wb") as output:
            process = subprocess.Popen(
                command, cwd=project, env=env, stdout=output, stderr=subprocess.STDOUT
            )
        party = Party(email, legacy, side, project, log, process)
        self.parties.append(party)
        if side == "client":
            self._wait_ready(party)
        return party

    def _wait_ready(self, party: Party) -> None:
        did = self.data_dir / "datasites" / party.email / "public" / "did.json"
        deadline = time.monotonic() + STARTUP
        while not (watching_files(party.process) and (did.is_file() or not self.encrypted)):
            if party.process.poll() is not None or time.monotonic() > deadline:
                pytest.fail(f"a client never started serving\n{self.report()}", pytrace=False)
            time.sleep(0.05)

    def finish(self) -> None:
        """Wait for every process to exit; fail with every log when one does not, or fails."""
        deadline = time.monotonic() + RUN
        for party in self.parties:
            try:
                party.process.wait(max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                pytest.fail(f"{party.email} did not finish\n{self.report()}", pytrace=False)
        failed = [p for p in self.parties if p.process.returncode != 0]
        if failed:
            pytest.fail(f"{failed[0].email} exited non-zero\n{self.report()}", pytrace=False)

    def report(self) -> str:
        return "\n".join(party.describe() for party in self.parties)

    def close(self) -> None:
        for party in self.parties:
            if party.process.poll() is None:
                party.process.kill()
                party.process.wait(30)


@pytest.fixture
def federation(tmp_path: Path, legacy_venv):  # type: ignore[no-untyped-def]
    made: list[Federation] = []

    def make(encrypted: bool) -> Federation:
        made.append(Federation(tmp_path / f"run{len(made)}", legacy_venv, encrypted))
        return made[-1]

    yield make
    for each in made:
        each.close()


def served_rounds(federation: Federation, party: Party) -> list[str]:
    """The message types a client handled, in order (train, evaluate, ..., then the stop)."""
    if party.legacy:
        return handled_messages(party.output())
    audit = subprocess.run(
        [sys.executable, "-m", "syft_flwr", "audit", str(party.project), "--json"],
        env=party_env(
            federation.root / "homes" / party.email,
            federation.root / "homes" / party.email / ".syftbox" / "config.json",
        ),
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    records = [json.loads(line) for line in audit.stdout.splitlines() if line.strip()]
    return [
        record["message_type"]
        for record in records
        if record["outcome"] == "accepted" and record["endpoint"] == "messages"
    ]


def check_run(federation: Federation, server: Party) -> None:
    history = json.loads((server.project / "history.json").read_text())
    assert sorted(history["train"], key=int) == [str(r) for r in range(1, ROUNDS + 1)]
    assert sorted(history["evaluate"], key=int) == [str(r) for r in range(1, ROUNDS + 1)]
    losses = [history["train"][str(r)]["train_loss"] for r in range(1, ROUNDS + 1)]
    assert losses == sorted(losses, reverse=True), f"training did not progress: {losses}"
    assert history["evaluate"][str(ROUNDS)]["eval_acc"] > 0.8
    for client in federation.parties:
        if client.side == "client":
            handled = served_rounds(federation, client)
            assert handled == ["train", "evaluate"] * ROUNDS + ["system"], (
                f"{client.email} handled {handled}\n{federation.report()}"
            )


@pytest.mark.parametrize("encrypted", [False, True], ids=["plaintext", "encrypted"])
def test_a_syft_flwr_05_server_drives_our_clients(federation, encrypted: bool) -> None:  # type: ignore[no-untyped-def]
    run = federation(encrypted)
    for email in DATASITES:
        run.start(email, legacy=False)
    server = run.start(AGGREGATOR, legacy=True)
    run.finish()
    check_run(run, server)


@pytest.mark.parametrize("encrypted", [False, True], ids=["plaintext", "encrypted"])
def test_our_server_drives_syft_flwr_05_clients(federation, encrypted: bool) -> None:  # type: ignore[no-untyped-def]
    run = federation(encrypted)
    run.with_legacy_clients = True
    for email in DATASITES:
        run.start(email, legacy=True)
    server = run.start(AGGREGATOR, legacy=False)
    run.finish()
    check_run(run, server)


def test_a_mixed_federation_of_ours_and_syft_flwr_05_encrypted(federation) -> None:  # type: ignore[no-untyped-def]
    run = federation(True)
    run.with_legacy_clients = True
    run.start(DATASITES[0], legacy=True)
    run.start(DATASITES[1], legacy=False)
    server = run.start(AGGREGATOR, legacy=False)
    run.finish()
    check_run(run, server)
