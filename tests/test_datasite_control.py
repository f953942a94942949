"""What a data owner controls: whom the datasite serves, which runs, and the record of both.

Over the memory transport with real client runners and the real ``syft-flwr`` command line:
trusted aggregators own their runs, ``approve = "manual"`` holds a new run until the owner runs
``syft-flwr approve`` (or refuses it after ``syft-flwr deny``), ``syft-flwr status`` lists what
waits, and ``syft-flwr audit`` shows every decision.
"""

from __future__ import annotations

import json
import textwrap
import threading
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from flwr.app import ConfigRecord, Context, Message, RecordDict
from flwr.clientapp import ClientApp
from flwr.common.constant import ErrorCode

from syft_flwr.cli import main
from syft_flwr.client.runner import ClientRunner
from syft_flwr.fl_orchestrator import syftbox_flwr_client
from syft_flwr.grid.syft_grid import SyftGrid
from syft_flwr.services.auxiliary import AUX_ENDPOINT, AuxSender, AuxStatus
from syft_flwr.services.resources import (
    RESOURCES_CHECK_TOPIC,
    ResourceRequirement,
    build_check_request,
)
from syft_flwr.testing.helpers import eventually
from syft_flwr.testing.local import LocalFederation, empty_context
from syft_flwr.testing.protocol import instruction
from syft_flwr.transport import Transport

APP = "flwr/test"
WAIT = 20.0


def echo_app(calls: list[Message]) -> ClientApp:
    app = ClientApp()

    @app.query()
    def query(message: Message, context: Context) -> Message:
        calls.append(message)
        return Message(RecordDict({"echo": ConfigRecord({"ok": True})}), reply_to=message)

    return app


def ask(transport: Transport, datasite: str, run_id: int, ttl: float = WAIT) -> Message:
    grid = SyftGrid(APP, [datasite], transport, msg_timeout=ttl)
    grid.set_run(run_id)
    (reply,) = grid.send_and_receive(
        [instruction(grid, grid.node_id_of(datasite), "query", ttl=ttl)], timeout=ttl
    )
    return reply


def stop(transport: Transport, datasite: str, run_id: int) -> None:
    grid = SyftGrid(APP, [datasite], transport)
    grid.set_run(run_id)
    grid.send_stop_signal(reason=f"stop from {transport.identity}")


@pytest.fixture
def site(federation: LocalFederation) -> str:
    return federation.datasites[0]


def serve_in_thread(run: Callable[[], str | None]) -> tuple[threading.Thread, list[str | None]]:
    result: list[str | None] = []
    thread = threading.Thread(target=lambda: result.append(run()), daemon=True)
    thread.start()
    return thread, result


def test_a_run_belongs_to_the_trusted_aggregator_that_started_it(
    federation: LocalFederation, site: str
) -> None:
    first = federation.transport("first-server@federation.test")
    second = federation.transport("second-server@federation.test")
    calls: list[Message] = []
    runner = ClientRunner(
        echo_app(calls),
        empty_context(),
        federation.transport(site),
        APP,
        trusted_aggregators=[first.identity, second.identity],
    )
    thread, _ = serve_in_thread(runner.run)
    try:
        assert not ask(first, site, 5).has_error()
        hijack = ask(second, site, 5)
        assert hijack.has_error() and hijack.error.code == ErrorCode.NODE_UNAVAILABLE
        assert "run 5 belongs to aggregator first-server@federation.test" in hijack.error.reason
        assert not ask(second, site, 6).has_error()  # its own run is served
        stop(first, site, 5)  # the first aggregator's run is no longer the one being served
        assert not ask(second, site, 6).has_error(), "a stop signal of another run counted"
        stop(first, site, 6)  # not its run
        assert not ask(second, site, 6).has_error(), "another aggregator stopped this run"
        stop(second, site, 6)
        thread.join(WAIT)
        assert not thread.is_alive(), "the run's own aggregator could not stop it"
    finally:
        runner.transport.stop()
        thread.join(WAIT)
    assert runner.stop_reason == "stop from second-server@federation.test"
    assert len(calls) == 4


@pytest.fixture
def manual_project(tmp_path: Path, federation: LocalFederation) -> Path:
    project = tmp_path / "project"
    project.mkdir()
    (project / "pyproject.toml").write_text(
        textwrap.dedent(
            f"""\
            [tool.syft_flwr]
            app_name = "test"
            datasites = {json.dumps(federation.datasites)}
            aggregator = "{federation.server_identity}"
            transport = "memory"
            approve = "manual"
            """
        )
    )
    return project


@pytest.fixture
def manual_site(
    federation: LocalFederation, site: str, manual_project: Path
) -> Iterator[tuple[list[Message], list[str | None]]]:
    """The datasite serving with ``approve = "manual"`` from its project, in a thread."""
    calls: list[Message] = []
    transport = federation.transport(site)
    thread, result = serve_in_thread(
        lambda: syftbox_flwr_client(
            echo_app(calls), empty_context(), "test", manual_project, transport=transport
        )
    )
    yield calls, result
    transport.stop()
    thread.join(WAIT)
    assert not thread.is_alive()


def cli(capsys: pytest.CaptureFixture[str], *argv: str) -> str:
    capsys.readouterr()
    assert main(list(argv)) == 0
    return capsys.readouterr().out


def audit(capsys: pytest.CaptureFixture[str], project: Path, site: str, *flags: str) -> list[dict]:
    out = cli(capsys, "audit", str(project), "--email", site, "--json", *flags)
    return [json.loads(line) for line in out.splitlines()]


def pending(capsys: pytest.CaptureFixture[str], project: Path, site: str) -> list[dict]:
    report = json.loads(cli(capsys, "status", str(project), "--email", site, "--json"))
    return report["pending_runs"]


def test_a_new_run_waits_for_the_owners_approval(
    federation: LocalFederation,
    site: str,
    manual_project: Path,
    manual_site: tuple[list[Message], list[str | None]],
    capsys: pytest.CaptureFixture[str],
) -> None:
    calls, result = manual_site
    server = federation.transport(federation.server_identity)
    replies: list[Message] = []
    asking = threading.Thread(target=lambda: replies.append(ask(server, site, 41)), daemon=True)
    asking.start()
    eventually(
        lambda: pending(capsys, manual_project, site), "the run to be listed as pending", WAIT
    )
    (run,) = pending(capsys, manual_project, site)
    assert (run["run_id"], run["aggregator"], run["app"]) == (41, server.identity, APP)
    assert run["message_types"] == ["query"] and calls == []
    text = cli(capsys, "status", str(manual_project), "--email", site)
    assert "syft-flwr approve 41" in text and server.identity in text
    out = cli(capsys, "approve", "41", "--project-dir", str(manual_project), "--email", site)
    assert "run 41 approved" in out
    asking.join(WAIT)
    (reply,) = replies
    assert not reply.has_error(), reply.error
    assert len(calls) == 1
    assert not ask(server, site, 41).has_error(), "an approved run is served without waiting"
    assert pending(capsys, manual_project, site) == []
    records = audit(capsys, manual_project, site)
    assert [(r["outcome"], r["run_id"]) for r in records] == [
        ("held", 41),
        ("accepted", 41),
        ("accepted", 41),
    ]
    stop(server, site, 41)
    eventually(lambda: result, "the datasite to stop", WAIT)


def test_a_denied_run_is_refused_with_what_it_asked_for_listed(
    federation: LocalFederation,
    site: str,
    manual_project: Path,
    manual_site: tuple[list[Message], list[str | None]],
    capsys: pytest.CaptureFixture[str],
) -> None:
    calls, _ = manual_site
    server = federation.transport(federation.server_identity)
    grid = SyftGrid(APP, [site], server, endpoint=AUX_ENDPOINT, reports_rounds=False)
    grid.set_run(77)
    answers: list[object] = []
    requirement = build_check_request(ResourceRequirement(cpus=1, datasets=frozenset({"x"})), None)
    checking = threading.Thread(
        target=lambda: answers.append(
            AuxSender(grid).send_aux_request([site], RESOURCES_CHECK_TOPIC, requirement, WAIT)
        ),
        daemon=True,
    )
    checking.start()
    eventually(
        lambda: pending(capsys, manual_project, site), "the run to be listed as pending", WAIT
    )
    (run,) = pending(capsys, manual_project, site)
    assert run["message_types"] == [RESOURCES_CHECK_TOPIC]
    assert run["resources"] == {"cpus": 1.0, "datasets": ["x"]}
    assert "cpus=1" in cli(capsys, "status", str(manual_project), "--email", site)
    cli(capsys, "deny", "77", "--project-dir", str(manual_project), "--email", site)
    checking.join(WAIT)
    (replies,) = answers
    assert replies[site].status is AuxStatus.REJECTED  # type: ignore[index]
    assert "denied run 77" in replies[site].detail  # type: ignore[index]
    refused = ask(server, site, 77)
    assert refused.has_error() and "denied run 77" in refused.error.reason
    assert calls == []
    refusals = audit(capsys, manual_project, site, "--outcome", "refused")
    assert len(refusals) == 2 and all("denied run 77" in r["reason"] for r in refusals)


def test_approving_a_run_that_never_asked_is_an_error(
    site: str, manual_project: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["approve", "5", "--project-dir", str(manual_project), "--email", site]) == 2
    assert "run 5 never asked" in capsys.readouterr().err
