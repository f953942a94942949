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
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from syft_flwr_syftbox.testing.federation import FederationError, Party, ProcessFederation
from syft_flwr_syftbox.testing.syft_flwr_05 import handled_messages, party_env, syft_flwr_05_venv

pytestmark = pytest.mark.slow

EXAMPLE = Path(__file__).resolve().parents[3] / "examples" / "quickstart-numpy"
AGGREGATOR = "aggregator@openmined.org"
DATASITES = ("do1@openmined.org", "do2@openmined.org")
ROUNDS = 3
ENVIRONMENT = {"SYFT_FLWR_MSG_TIMEOUT": "60", "SYFT_FLWR_POLL_INTERVAL": "0.1"}


@pytest.fixture(scope="session")
def legacy_venv():  # type: ignore[no-untyped-def]
    """The real syft-flwr 0.5.3, built once per machine and cached."""
    return syft_flwr_05_venv()


class Federation(ProcessFederation):
    """A :class:`ProcessFederation` whose failures are test failures carrying every log."""

    def start(self, email: str, *, legacy: bool) -> Party:
        try:
            return super().start(email, legacy=legacy)
        except FederationError as exc:
            pytest.fail(str(exc), pytrace=False)

    def finish(self, timeout: float = 120.0) -> None:
        try:
            super().finish(timeout)
        except FederationError as exc:
            pytest.fail(str(exc), pytrace=False)


@pytest.fixture
def federation(tmp_path: Path, legacy_venv) -> Iterator[Callable[..., Federation]]:  # type: ignore[no-untyped-def]
    made: list[Federation] = []

    def make(encrypted: bool, *, with_legacy_clients: bool = False) -> Federation:
        made.append(
            Federation(
                tmp_path / f"run{len(made)}",
                EXAMPLE,
                AGGREGATOR,
                DATASITES,
                encrypted=encrypted,
                legacy_venv=legacy_venv,
                syft_rpc_server=with_legacy_clients,
                environment=ENVIRONMENT,
            )
        )
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
        env=party_env(party.home, party.config),
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
    run = federation(encrypted, with_legacy_clients=True)
    for email in DATASITES:
        run.start(email, legacy=True)
    server = run.start(AGGREGATOR, legacy=False)
    run.finish()
    check_run(run, server)


def test_a_mixed_federation_of_ours_and_syft_flwr_05_encrypted(federation) -> None:  # type: ignore[no-untyped-def]
    run = federation(True, with_legacy_clients=True)
    run.start(DATASITES[0], legacy=True)
    run.start(DATASITES[1], legacy=False)
    server = run.start(AGGREGATOR, legacy=False)
    run.finish()
    check_run(run, server)
