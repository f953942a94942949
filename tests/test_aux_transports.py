"""Aux requests, resource checks and job start end to end, over the real transport plugins.

Datasites are real :class:`ClientRunner` s serving their Flower endpoint and the aux endpoint
on one transport loop; the server sends through a real aux ``SyftGrid``. Every wait is bounded
(by an aux timeout, a message TTL or a join timeout); only the silent datasite's timeout is
ever waited out.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from flwr.app import ConfigRecord, Context, Message, RecordDict
from flwr.clientapp import ClientApp
from flwr.common.constant import ErrorCode

from syft_flwr.client.runner import ClientRunner
from syft_flwr.client.services import PING_TOPIC, parse_ping_reply
from syft_flwr.config import RuntimeSettings
from syft_flwr.crypto.envelope import MAGIC as SEALED_MAGIC
from syft_flwr.crypto.policy import open_channel
from syft_flwr.demo.apps import make_client_app
from syft_flwr.errors import AuxError
from syft_flwr.fl_orchestrator import syftbox_flwr_client
from syft_flwr.grid.syft_grid import SyftGrid
from syft_flwr.services.auxiliary import (
    AUX_ENDPOINT,
    AuxHandlerRegistry,
    AuxRequest,
    AuxSender,
    AuxStatus,
    serve_aux,
)
from syft_flwr.services.jobs import JobPolicy, start_client_job
from syft_flwr.services.resources import (
    ResourceOffer,
    cancel_client_resources,
    check_client_resources,
    check_resources,
)
from syft_flwr.testing.local import LocalFederation, empty_context
from syft_flwr.transport import Transport
from syft_flwr_memory.network import MemoryNetwork

APP = "flwr/test"
WAIT = 20.0
"""Upper bound of every wait for something that is expected to happen."""
SILENCE = 2.0
"""How long a request to the silent datasite waits before its TIMEOUT reply."""


@pytest.fixture(autouse=True)
def isolated_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    for name in (
        "SYFTBOX_FOLDER",
        "SYFTBOX_DATA_DIR",
        "SYFTBOX_CLIENT_CONFIG_PATH",
        "SYFTBOX_EMAIL",
        "SYFT_FLWR_ENCRYPTION_ENABLED",
        "SYFT_FLWR_KEY_DIR",
        "SYFT_FLWR_MSG_TIMEOUT",
    ):
        monkeypatch.delenv(name, raising=False)
    (tmp_path / "home").mkdir()
    monkeypatch.setenv("HOME", str(tmp_path / "home"))


def query_app() -> ClientApp:
    """Answers ``query`` messages (the runner's Flower path, without training)."""
    app = ClientApp()

    @app.query()
    def answer(message: Message, context: Context) -> Message:
        return Message(RecordDict({"answer": ConfigRecord({"ok": True})}), reply_to=message)

    return app


@dataclass
class Site:
    runner: ClientRunner
    thread: threading.Thread
    result: list[str | None]


class Datasites:
    """Client runners serving in threads; stopped and joined (bounded) at the end."""

    def __init__(self, federation: LocalFederation) -> None:
        self.federation = federation
        self.sites: dict[str, Site] = {}

    def start(self, email: str, **runner_options: object) -> ClientRunner:
        transport = self.federation.transport(email)
        runner_options.setdefault("trusted_aggregators", [self.federation.server_identity])
        runner = ClientRunner(
            query_app(),
            empty_context(),
            transport,
            APP,
            plugin_manager=self.federation.manager,
            **runner_options,  # type: ignore[arg-type]
        )
        result: list[str | None] = []
        thread = threading.Thread(target=lambda: result.append(runner.run()), daemon=True)
        thread.start()
        self.sites[email] = Site(runner, thread, result)
        return runner

    def stop(self) -> None:
        for site in self.sites.values():
            site.runner.transport.stop()
        for site in self.sites.values():
            site.thread.join(WAIT)
            assert not site.thread.is_alive(), "a runner did not stop"


@pytest.fixture
def make_federation(
    syft_flwr_federation: Callable[..., LocalFederation],
) -> Iterator[Callable[[str], tuple[LocalFederation, Datasites]]]:
    running: list[Datasites] = []

    def build(transport: str) -> tuple[LocalFederation, Datasites]:
        federation = syft_flwr_federation(transport, 3)
        sites = Datasites(federation)
        running.append(sites)
        return federation, sites

    yield build
    for sites in running:
        sites.stop()


def aux_sender(
    federation: LocalFederation, transport: Transport | None = None, **grid_options: object
) -> AuxSender:
    grid_options.setdefault("channel", None)  # plaintext unless a test seals: as its datasites
    grid = SyftGrid(
        APP,
        federation.datasites,
        transport or federation.transport(federation.server_identity),
        endpoint=AUX_ENDPOINT,
        plugin_manager=federation.manager,
        reports_rounds=False,
        **grid_options,  # type: ignore[arg-type]
    )
    grid.set_run(5)
    return AuxSender(grid)


def echo(request: AuxRequest) -> RecordDict:
    return RecordDict({"echo": ConfigRecord({"from": request.sender, "topic": request.topic})})


def boom(request: AuxRequest) -> RecordDict:
    raise RuntimeError("handler on fire")


@pytest.mark.parametrize("transport", ["memory", "syftbox"])
def test_answering_silent_and_raising_datasites(
    make_federation: Callable[[str], tuple[LocalFederation, Datasites]], transport: str
) -> None:
    federation, sites = make_federation(transport)
    answering, silent, raising = federation.datasites
    sites.start(answering).register_aux_message_handler("echo", echo)
    sites.start(raising).register_aux_message_handler("echo", boom)
    federation.transport(silent)  # exists, never serves
    sender = aux_sender(federation)

    started = time.monotonic()
    replies = sender.send_aux_request(None, "echo", RecordDict(), SILENCE)
    assert time.monotonic() - started < WAIT
    assert replies[answering].status is AuxStatus.OK
    assert replies[answering].content is not None
    assert replies[answering].content["echo"]["from"] == federation.server_identity
    assert replies[silent].status is AuxStatus.TIMEOUT
    assert replies[raising].status is AuxStatus.HANDLER_FAILED
    assert "RuntimeError: handler on fire" in replies[raising].detail

    replies = sender.send_aux_request([answering, raising], "no-such-topic", RecordDict(), WAIT)
    assert {reply.status for reply in replies.values()} == {AuxStatus.UNKNOWN_TOPIC}

    # the serving loops went on after the failures
    replies = sender.send_aux_request([answering, raising], PING_TOPIC, RecordDict(), WAIT)
    for email in (answering, raising):
        info = parse_ping_reply(replies[email])
        assert info is not None and info.datasite == email
    assert sender.send_aux_request([answering], "echo", RecordDict(), WAIT)[answering].ok


def test_datasite_sends_aux_requests_to_the_aggregator(
    make_federation: Callable[[str], tuple[LocalFederation, Datasites]],
) -> None:
    federation, sites = make_federation("memory")
    server = federation.transport(federation.server_identity)
    received: list[AuxRequest] = []
    arrived = threading.Event()
    registry = AuxHandlerRegistry()
    registry.register("hello", lambda request: (received.append(request), echo(request))[1])
    registry.register("note", lambda request: arrived.set())  # type: ignore[func-returns-value]
    serve_aux(server, APP, registry, senders=federation.datasites)
    serving = threading.Thread(target=server.run, daemon=True)
    serving.start()
    try:
        explicit = sites.start(federation.datasites[0], aggregator=federation.server_identity)
        reply = explicit.send_aux_request("hello", RecordDict(), WAIT)
        assert reply.status is AuxStatus.OK and reply.datasite == federation.server_identity
        assert received[0].sender == federation.datasites[0]
        assert explicit.send_aux_request("nope", RecordDict(), WAIT).status is (
            AuxStatus.UNKNOWN_TOPIC
        )
        assert explicit.fire_and_forget_aux_request("note", RecordDict()).status is AuxStatus.SENT
        assert arrived.wait(WAIT)
        two = [federation.server_identity, "other-server@federation.test"]
        unknowing = sites.start(federation.datasites[1], trusted_aggregators=two)
        with pytest.raises(AuxError, match="does not know its aggregator"):
            unknowing.send_aux_request("hello", RecordDict(), WAIT)
    finally:
        server.stop()
        serving.join(WAIT)


def query(grid: SyftGrid, datasite: str, ttl: float) -> Message:
    message = Message(
        RecordDict({"config": ConfigRecord({"x": 1})}),
        dst_node_id=grid.node_id_of(datasite),
        message_type="query",
        ttl=ttl,
    )
    (reply,) = grid.send_and_receive([message], timeout=ttl)
    return reply


def flower_grid(federation: LocalFederation, server: Transport, run_id: int) -> SyftGrid:
    grid = SyftGrid(
        APP, federation.datasites, server, plugin_manager=federation.manager, channel=None
    )
    grid.set_run(run_id)
    return grid


@pytest.fixture
def task_identity() -> Iterator[None]:
    """``Message(...)`` reads the sender's ids from Flower's process-global task identity."""
    from flwr.supercore.task_identity import TaskIdentity

    TaskIdentity.run_id, TaskIdentity.node_id, TaskIdentity.task_id = 1, 1, 1
    yield


def test_check_start_and_cancel_end_to_end(
    make_federation: Callable[[str], tuple[LocalFederation, Datasites]], task_identity: None
) -> None:
    federation, sites = make_federation("memory")
    first, second, small = federation.datasites
    roomy = ResourceOffer(cpus=4, memory_gb=8, gpus=0, disk_gb=10, datasets=frozenset({"mnist"}))
    runners = {
        first: sites.start(first, resources=roomy),
        second: sites.start(second, resources=roomy),
        small: sites.start(small, resources=ResourceOffer(1, 1, 0, 1, frozenset())),
    }
    server = federation.transport(federation.server_identity)
    sender = aux_sender(federation, server)
    requirement = {"cpus": 2, "datasets": ["mnist"]}

    results = check_client_resources(sender, dict.fromkeys(federation.datasites, requirement), WAIT)
    assert results[first][0] and results[second][0]
    assert results[small] == (
        False,
        "needs 2 cpus, 1 free of 1; needs dataset(s) mnist; offers none",
    )
    tokens = {email: token for email, (ok, token) in results.items() if ok}
    report = start_client_job(sender, 41, tokens, JobPolicy(min_clients=2), WAIT)
    assert report.started == (first, second) and report.failed == {}
    assert runners[first].aggregator == federation.server_identity

    # the started datasites serve run 41 and refuse other runs; the others serve any run
    job_grid, other_grid = flower_grid(federation, server, 41), flower_grid(federation, server, 42)
    assert not query(job_grid, first, WAIT).has_error()
    refused = query(other_grid, first, WAIT)
    assert refused.has_error() and refused.error.code == ErrorCode.NODE_UNAVAILABLE
    assert "serves the job of run 41, not run 42" in refused.error.reason
    assert not query(other_grid, small, WAIT).has_error()

    # a used reservation cannot be cancelled; a fresh one can, and is released
    assert cancel_client_resources(sender, results, results, WAIT) == {
        first: False,
        second: False,
    }
    checks = check_resources(sender, {small: {"cpus": 1}}, WAIT)
    assert checks[small].ok and checks[small].offer == ResourceOffer(1, 1, 0, 1, frozenset())
    assert runners[small].services.book.held()["cpus"] == 1
    released = cancel_client_resources(sender, {small: checks[small].result}, {small: {}}, WAIT)
    assert released == {small: True}
    assert runners[small].services.book.held()["cpus"] == 0

    # another run's stop signal does not stop a started datasite; its own run's does
    other_grid.send_stop_signal(reason="run 42 is over")
    assert query(job_grid, first, WAIT).has_content()
    job_grid.send_stop_signal(reason="run 41 is over")
    sites.sites[first].thread.join(WAIT)
    assert sites.sites[first].result == ["run 41 is over"]


def test_encrypted_aux_round_trips_are_sealed_both_ways(
    make_federation: Callable[[str], tuple[LocalFederation, Datasites]],
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
) -> None:
    monkeypatch.setenv("SYFT_FLWR_KEY_DIR", str(tmp_path / "keys"))
    monkeypatch.setenv("SYFT_FLWR_ENCRYPTION_ENABLED", "true")
    requests: list[bytes] = []
    replies: list[bytes] = []
    send, settle = MemoryNetwork.send, MemoryNetwork.settle

    def spy_send(self, sender, datasite, app, endpoint, payload, expires_at):  # type: ignore[no-untyped-def]
        requests.append(bytes(payload[:4]))
        return send(self, sender, datasite, app, endpoint, payload, expires_at)

    def spy_settle(self, sender, request_id, reply):  # type: ignore[no-untyped-def]
        replies.append(bytes(reply.body[:4]))
        return settle(self, sender, request_id, reply)

    monkeypatch.setattr(MemoryNetwork, "send", spy_send)
    monkeypatch.setattr(MemoryNetwork, "settle", spy_settle)
    federation, _ = make_federation("memory")
    runtime = RuntimeSettings.from_env()
    server = federation.transport(federation.server_identity)
    server_channel = open_channel(server, runtime, federation.manager)
    assert server_channel is not None
    registry = AuxHandlerRegistry()
    registry.register("hello", echo)
    serve_aux(server, APP, registry, server_channel, senders=federation.datasites)
    serving = threading.Thread(target=server.run, daemon=True)
    serving.start()
    email = federation.datasites[0]
    client_transport = federation.transport(email)
    client_channel = open_channel(client_transport, runtime, federation.manager)
    assert client_channel is not None
    runner = ClientRunner(
        query_app(),
        empty_context(),
        client_transport,
        APP,
        plugin_manager=federation.manager,
        channel=client_channel,
        trusted_aggregators=[federation.server_identity],
    )
    runner.register_aux_message_handler("echo", echo)
    runner.register_aux_message_handler("boom", boom)
    thread = threading.Thread(target=runner.run, daemon=True)
    thread.start()
    try:
        sender = aux_sender(federation, server, channel=server_channel)
        for secure in (True, False, None):
            reply = sender.send_aux_request([email], "echo", RecordDict(), WAIT, secure=secure)
            assert reply[email].status is AuxStatus.OK
        failed = sender.send_aux_request([email], "boom", RecordDict(), WAIT)
        assert failed[email].status is AuxStatus.HANDLER_FAILED
        back = runner.send_aux_request("hello", RecordDict(), WAIT, secure=True)
        assert back.status is AuxStatus.OK
        assert back.content is not None and back.content["echo"]["from"] == email
    finally:
        client_transport.stop()
        server.stop()
        thread.join(WAIT)
        serving.join(WAIT)
        client_channel.close()
        server_channel.close()
    assert requests == [SEALED_MAGIC] * 5, "an aux request travelled unsealed"
    assert replies == [SEALED_MAGIC] * 5, "an aux reply travelled unsealed"


def test_the_client_offers_what_its_project_declares(
    syft_flwr_federation: Callable[..., LocalFederation], tmp_path: Path, task_identity: None
) -> None:
    federation = syft_flwr_federation("memory", 1)
    (email,) = federation.datasites
    project = tmp_path / "project"
    project.mkdir()
    (project / "pyproject.toml").write_text(
        f"""
[tool.syft_flwr]
aggregator = "{federation.server_identity}"

[tool.syft_flwr.resources]
cpus = 3
memory_gb = 2
gpus = 1
disk_gb = 5
datasets = ["mnist"]
"""
    )
    reasons: list[str | None] = []
    transport = federation.transport(email)
    thread = threading.Thread(
        target=lambda: reasons.append(
            syftbox_flwr_client(
                make_client_app(),
                empty_context(),
                "test",
                project,
                transport=transport,
                plugin_manager=federation.manager,
            )
        ),
        daemon=True,
    )
    thread.start()
    server = federation.transport(federation.server_identity)
    sender = aux_sender(federation, server)
    checks = check_resources(sender, {email: {"gpus": 1}}, WAIT)
    assert checks[email].offer == ResourceOffer(3, 2, 1, 5, frozenset({"mnist"}))
    grid = SyftGrid(APP, [email], server, plugin_manager=federation.manager, channel=None)
    grid.set_run(9)
    grid.send_stop_signal(reason="done")
    thread.join(WAIT)
    assert reasons == ["done"]


def test_aux_never_reaches_the_client_app_and_builtins_cannot_be_replaced(
    make_federation: Callable[[str], tuple[LocalFederation, Datasites]],
) -> None:
    federation, _ = make_federation("memory")
    email = federation.datasites[0]
    calls: list[Message] = []
    transport = federation.transport(email)
    app = ClientApp()

    @app.query()
    def record(message: Message, context: Context) -> Message:
        calls.append(message)
        return Message(RecordDict(), reply_to=message)

    runner = ClientRunner(
        app,
        empty_context(),
        transport,
        APP,
        plugin_manager=federation.manager,
        trusted_aggregators=[federation.server_identity],
    )
    with pytest.raises(AuxError, match="already has a handler"):
        runner.register_aux_message_handler(PING_TOPIC, echo)
    thread = threading.Thread(target=runner.run, daemon=True)
    thread.start()
    try:
        sender = aux_sender(federation)
        for topic in (PING_TOPIC, "no-such-topic"):
            assert sender.send_aux_request([email], topic, RecordDict(), WAIT)[email].status in (
                AuxStatus.OK,
                AuxStatus.UNKNOWN_TOPIC,
            )
    finally:
        transport.stop()
        thread.join(WAIT)
    assert calls == [] and runner.handled == 0
