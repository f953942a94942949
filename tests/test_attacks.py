"""A stranger attacks a live FedAvg run: nothing it sends reaches a ``ClientApp`` or changes it.

The attacker is a real datasite on the same medium (with its own published keys when the run
is encrypted) that is not in the run. While round 1 is in progress it asks every datasite to
train (with the live run id and a made-up one), sends stop signals, reserves resources and
starts a job of its own, and queues a message of a fake run right before the real stop. The
run must end exactly as a clean run does, every ``ClientApp`` must have seen only the
aggregator's messages, and every refusal must be in the datasites' audit trails.
"""

from __future__ import annotations

from collections.abc import Callable

import pluggy
import pytest
from flwr.app import Context, Message
from flwr.clientapp import ClientApp
from flwr.common.constant import ErrorCode

from syft_flwr import hookimpl
from syft_flwr.audit import read_audit
from syft_flwr.client.workspace import DatasiteWorkspace
from syft_flwr.config import ProjectConfig, RuntimeSettings
from syft_flwr.crypto.policy import open_channel
from syft_flwr.demo.apps import RoundReport, make_client_app, make_server_app
from syft_flwr.services.auxiliary import AuxStatus
from syft_flwr.testing.attacker import ATTACK_MARKER, Attacker
from syft_flwr.testing.local import LocalFederation

ROUNDS = 3
MALLORY = "mallory@evil.test"


class RunSpy:
    """Learns the live run id from the server-started hook (as a peer could from the files)."""

    def __init__(self) -> None:
        self.run_id: int | None = None

    @hookimpl
    def syft_flwr_server_started(self, run_id: int, app_name: str, datasites: list[str]) -> None:
        self.run_id = run_id


def recording_app(seen: list[Message]) -> Callable[[int], ClientApp]:
    def make(index: int) -> ClientApp:
        demo = make_client_app()
        app = ClientApp()

        def handle(message: Message, context: Context) -> Message:
            seen.append(message)
            return demo(message, context)

        app.train()(handle)
        app.evaluate()(handle)
        return app

    return make


def run(
    federation: LocalFederation, on_round: Callable[[RoundReport], None] | None = None
) -> tuple[list[RoundReport], list[Message]]:
    reports: list[RoundReport] = []
    seen: list[Message] = []

    def record(report: RoundReport) -> None:
        reports.append(report)
        if on_round is not None:
            on_round(report)

    federation.start_clients(recording_app(seen))
    federation.run_server(make_server_app(len(federation.datasites), ROUNDS, record))
    federation.join_clients()
    return reports, seen


@pytest.fixture(params=[False, True], ids=["plaintext", "encrypted"])
def encrypted(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> bool:
    monkeypatch.setenv("SYFT_FLWR_ENCRYPTION_ENABLED", "true" if request.param else "false")
    return bool(request.param)


def test_a_stranger_cannot_drive_a_live_run(
    syft_flwr_federation: Callable[..., LocalFederation],
    syft_flwr_plugin_manager: pluggy.PluginManager,
    encrypted: bool,
) -> None:
    clean, _ = run(syft_flwr_federation("memory", 3))

    spy = RunSpy()
    syft_flwr_plugin_manager.register(spy)
    federation = syft_flwr_federation("memory", 3)
    attacker_transport = federation.transport(MALLORY)
    channel = (
        open_channel(attacker_transport, RuntimeSettings.from_env(), syft_flwr_plugin_manager)
        if encrypted
        else None
    )
    attacker = Attacker(
        attacker_transport, f"flwr/{federation.app_name}", channel=channel, timeout=10
    )
    outcomes: dict[str, list[object]] = {"flower": [], "aux": []}

    def attack(report: RoundReport) -> None:
        if report.server_round != 1:
            return
        assert spy.run_id is not None
        for victim in federation.datasites:
            for run_id in (spy.run_id, 4242):
                outcomes["flower"].append(attacker.send(victim, run_id, "train"))
            attacker.stop(victim, spy.run_id)
            outcomes["aux"].extend(attacker.check_and_start(victim, 4242))

    def fake_run_before_the_stop(report: RoundReport) -> None:
        attack(report)
        if report.server_round == ROUNDS:
            for victim in federation.datasites:
                attacker.push(victim, 999)

    attacked, seen = run(federation, fake_run_before_the_stop)

    assert [(r.clients, r.failures) for r in attacked[1:]] == [(3, 0)] * ROUNDS
    assert attacked[-1].test_loss == pytest.approx(clean[-1].test_loss, abs=1e-9)
    assert federation.stop_reasons == dict.fromkeys(federation.datasites, "Server stopped")
    assert seen and all(ATTACK_MARKER not in message.content for message in seen)
    assert {message.metadata.run_id for message in seen} == {spy.run_id}
    refusal = f"{MALLORY} is not a trusted aggregator"
    assert len(outcomes["flower"]) == 2 * 3 and len(outcomes["aux"]) == 2 * 3
    for reply in outcomes["flower"]:
        assert isinstance(reply, Message) and reply.has_error()
        assert reply.error.code == ErrorCode.NODE_UNAVAILABLE and refusal in reply.error.reason
    for answer in outcomes["aux"]:
        assert answer.status is AuxStatus.REJECTED and refusal in answer.detail  # type: ignore[attr-defined]
    for victim in federation.datasites:
        workspace = DatasiteWorkspace.locate(ProjectConfig(), None, victim)
        records = read_audit(workspace.audit_path)
        refused = [r for r in records if r["sender"] == MALLORY]
        assert len(refused) >= 6 and all(r["outcome"] == "refused" for r in refused)
        assert all(r["run_id"] is None for r in refused), "a stranger's request was opened"
        accepted = [r for r in records if r["outcome"] == "accepted"]
        assert {r["sender"] for r in accepted} == {federation.server_identity}
    if channel is not None:
        channel.close()
