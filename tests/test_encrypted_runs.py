"""Encrypted federated runs over the memory transport: on by policy, fail-closed, end to end."""

from __future__ import annotations

import logging
import threading
import time
from pathlib import Path

import pytest
from flwr.app import ArrayRecord, ConfigRecord, Context, Message, RecordDict
from flwr.serverapp import Grid, ServerApp
from flwr.serverapp.strategy import FedAvg

from syft_flwr.client.runner import ClientRunner
from syft_flwr.config import RuntimeSettings
from syft_flwr.crypto import MissingKeyError
from syft_flwr.crypto.envelope import MAGIC as SEALED_MAGIC
from syft_flwr.crypto.policy import encryption_enabled, open_channel
from syft_flwr.demo.apps import make_client_app
from syft_flwr.demo.model import LogisticRegression
from syft_flwr.errors import RequestRefusedError
from syft_flwr.testing.local import LocalFederation, empty_context
from syft_flwr.wire import MAGIC as PLAIN_MAGIC
from syft_flwr_memory.network import MemoryNetwork

pytestmark = pytest.mark.slow


@pytest.fixture
def encrypted(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Path:
    monkeypatch.setenv("SYFT_FLWR_KEY_DIR", str(tmp_path / "keys"))
    monkeypatch.setenv("SYFT_FLWR_ENCRYPTION_ENABLED", "true")
    return tmp_path / "keys"


@pytest.fixture
def wire(monkeypatch: pytest.MonkeyPatch) -> list[bytes]:
    """The first bytes of every body the memory network carries."""
    seen: list[bytes] = []
    original = MemoryNetwork.send

    def spy(self, sender, datasite, app, endpoint, payload, expires_at):  # type: ignore[no-untyped-def]
        seen.append(bytes(payload[:4]))
        return original(self, sender, datasite, app, endpoint, payload, expires_at)

    monkeypatch.setattr(MemoryNetwork, "send", spy)
    return seen


def fedavg_app(rounds: int, losses: list[float]) -> ServerApp:
    app = ServerApp()

    @app.main()
    def main(grid: Grid, context: Context) -> None:
        strategy = FedAvg(min_train_nodes=3, min_evaluate_nodes=3, min_available_nodes=3)
        result = strategy.start(
            grid=grid,
            initial_arrays=ArrayRecord(LogisticRegression.zeros().to_arrays()),
            num_rounds=rounds,
            timeout=30.0,
            train_config=ConfigRecord({"lr": 0.05, "local-epochs": 2}),
        )
        for server_round in sorted(result.evaluate_metrics_clientapp):
            losses.append(float(result.evaluate_metrics_clientapp[server_round]["eval_loss"]))

    return app


def wait_for_keys(federation: LocalFederation, timeout: float = 10.0) -> None:
    probe = federation.transport("probe@federation.test")
    deadline = time.monotonic() + timeout
    while any(probe.fetch_key_document(ds) is None for ds in federation.datasites):
        assert time.monotonic() < deadline, "clients did not publish their keys"
        time.sleep(0.02)


def test_encrypted_fedavg_run_completes_and_nothing_travels_in_plaintext(
    federation: LocalFederation, encrypted: Path, wire: list[bytes]
) -> None:
    losses: list[float] = []
    federation.start_clients(lambda index: make_client_app())
    wait_for_keys(federation)
    federation.run_server(fedavg_app(2, losses))
    federation.join_clients()
    assert len(losses) == 2 and losses[-1] < losses[0]
    assert all(reason == "Server stopped" for reason in federation.stop_reasons.values())
    assert wire and set(wire) == {SEALED_MAGIC}, "a body travelled without being sealed"
    assert PLAIN_MAGIC not in wire
    assert all((encrypted / ds / "keys.json").is_file() for ds in federation.datasites)


def test_server_lists_datasites_without_keys_before_sending(
    federation: LocalFederation, encrypted: Path, wire: list[bytes], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("SYFT_FLWR_MSG_TIMEOUT", "0.5")  # bounds the wait for late keys
    with pytest.raises(MissingKeyError) as raised:
        federation.run_server(fedavg_app(1, []))
    for datasite in federation.datasites:
        assert datasite in str(raised.value)
    assert wire == []


def test_encrypting_client_refuses_plaintext_and_replayed_requests(
    federation: LocalFederation, encrypted: Path
) -> None:
    runtime = RuntimeSettings.from_env()
    client_transport = federation.transport(federation.datasites[0])
    server_transport = federation.transport(federation.server_identity)
    client_channel = open_channel(client_transport, runtime, federation.manager)
    server_channel = open_channel(server_transport, runtime, federation.manager)
    assert client_channel is not None and server_channel is not None
    called: list[object] = []
    runner = ClientRunner(
        lambda message, context: called.append(message),  # type: ignore[arg-type,return-value]
        empty_context(),
        client_transport,
        "flwr/test",
        plugin_manager=federation.manager,
        channel=client_channel,
        trusted_aggregators=[federation.server_identity],
    )
    from syft_flwr.transport import Request

    def request(body: bytes, rid: str) -> Request:
        now = time.time()
        return Request(
            rid,
            federation.server_identity,
            client_transport.identity,
            "flwr/test",
            "messages",
            body,
            now,
            now + 60,
        )

    with pytest.raises(RequestRefusedError, match="cannot open"):
        runner.handle(request(PLAIN_MAGIC + b"\x01" + b"\0" * 8, "r1"))
    sealed, _ = server_channel.seal(
        client_transport.identity, "flwr/test", "messages", b"junk", time.time() + 60
    )
    with pytest.raises(RequestRefusedError, match="malformed"):  # opens, but is no Flower envelope
        runner.handle(request(sealed, "r2"))
    with pytest.raises(RequestRefusedError, match="ReplayError"):  # again, new request id
        runner.handle(request(sealed, "r3"))
    assert called == []
    client_channel.close()
    server_channel.close()


def test_policy_defaults_to_the_transport_and_warns_when_turned_off(
    federation: LocalFederation, caplog: pytest.LogCaptureFixture
) -> None:
    transport = federation.transport(federation.server_identity)
    assert encryption_enabled(transport, RuntimeSettings()) is False
    assert encryption_enabled(transport, RuntimeSettings(encryption_enabled=True)) is True
    type(transport).encrypt_by_default = True  # type: ignore[attr-defined]
    try:
        assert encryption_enabled(transport, RuntimeSettings()) is True
        with caplog.at_level(logging.WARNING, logger="syft_flwr.crypto.policy"):
            assert open_channel(transport, RuntimeSettings(encryption_enabled=False)) is None
    finally:
        del type(transport).encrypt_by_default  # type: ignore[attr-defined]
    assert [r.message for r in caplog.records].count(caplog.records[0].message) == 1
    assert "OFF" in caplog.records[0].message


def legacy_syft_flwr_client(federation: LocalFederation, email: str, folder: Path):
    """A syft-flwr 0.5.x-style client: the real syft-crypto, base64 of Flower protobuf bodies."""
    syft_core = pytest.importorskip("syft_core")
    syft_crypto = pytest.importorskip("syft_crypto")
    import base64

    from flwr.common.serde import message_from_proto, message_to_proto
    from flwr.proto.message_pb2 import Message as ProtoMessage

    (folder / "datasites").mkdir(parents=True, exist_ok=True)
    config = syft_core.SyftClientConfig(
        data_dir=folder, email=email, server_url="https://syftbox.net", path=folder / "c.json"
    )
    client = syft_core.Client(config)
    syft_crypto.bootstrap_user(client)
    transport = federation.transport(email)
    did = folder / "datasites" / email / "public" / "did.json"
    transport.publish_key_document(did.read_bytes())
    app = make_client_app()
    context = empty_context(**{"partition-id": 2, "num-partitions": 3})
    seen: list[str] = []

    def handle(request):  # type: ignore[no-untyped-def]
        server_did = folder / "datasites" / request.sender / "public" / "did.json"
        server_did.parent.mkdir(parents=True, exist_ok=True)
        document = transport.fetch_key_document(request.sender)
        assert document is not None
        server_did.write_bytes(document)
        payload = syft_crypto.EncryptedPayload.model_validate_json(request.body)
        proto = base64.b64decode(syft_crypto.decrypt_message(payload, client))
        message = message_from_proto(ProtoMessage.FromString(proto))
        seen.append(message.metadata.message_type)
        if message.metadata.message_type == "system":
            transport.stop()
            return None
        context.node_id = message.metadata.dst_node_id
        reply = app(message, context)
        text = base64.b64encode(message_to_proto(reply).SerializeToString()).decode()
        return syft_crypto.encrypt_message(text, request.sender, client).model_dump_json().encode()

    transport.serve("flwr/" + federation.app_name, "messages", handle)
    return transport, seen


def test_server_runs_with_a_syft_crypto_only_client(
    federation: LocalFederation, encrypted: Path, tmp_path: Path
) -> None:
    import threading

    # syft-core validates emails and refuses reserved domains such as .test
    federation.datasites = [f"ds{i}-{time.time_ns()}@example.org" for i in range(3)]
    federation.server_identity = "server@example.org"
    legacy_email = federation.datasites[2]
    legacy, seen = legacy_syft_flwr_client(federation, legacy_email, tmp_path / "SyftBox")
    thread = threading.Thread(target=legacy.run, daemon=True)
    thread.start()
    federation.start_clients(lambda index: make_client_app(), skip=frozenset({2}))
    wait_for_keys(federation)
    losses: list[float] = []
    federation.run_server(fedavg_app(2, losses))
    federation.join_clients()
    thread.join(30)
    assert len(losses) == 2 and losses[-1] < losses[0]
    assert seen.count("train") == 2 and seen.count("evaluate") == 2 and seen[-1] == "system"


def test_a_datasite_whose_keys_changed_is_reached_after_its_refusal(
    federation: LocalFederation, encrypted: Path
) -> None:
    """The server sealed to a key document it had read before the datasite re-created its
    keys (a did.json one sync cycle late): the datasite refuses, the server reads its current
    document and sends the message again, within the message's TTL."""
    from syft_flwr.grid.syft_grid import SyftGrid
    from syft_flwr.testing.protocol import instruction

    email = federation.datasites[0]
    runtime = RuntimeSettings.from_env()
    server = federation.transport(federation.server_identity)
    server_channel = open_channel(server, runtime, federation.manager)
    old_transport = federation.transport(email)
    assert open_channel(old_transport, runtime, federation.manager) is not None
    assert server_channel is not None
    server_channel.peer(email)  # cached: the document of the keys about to be replaced
    (encrypted / email / "keys.json").unlink()  # the datasite re-creates its keys
    calls: list[object] = []
    client_transport = federation.transport(email)
    client_channel = open_channel(client_transport, runtime, federation.manager)
    runner = ClientRunner(
        lambda message, context: (
            calls.append(message)  # type: ignore[arg-type,return-value]
            or Message(RecordDict(), reply_to=message)
        ),
        empty_context(),
        client_transport,
        "flwr/test",
        plugin_manager=federation.manager,
        channel=client_channel,
        trusted_aggregators=[federation.server_identity],
    )
    thread = threading.Thread(target=runner.run, daemon=True)
    thread.start()
    try:
        grid = SyftGrid("flwr/test", [email], server, channel=server_channel, msg_timeout=30)
        grid.set_run(5)
        (reply,) = grid.send_and_receive(
            [instruction(grid, grid.node_id_of(email), "query", ttl=30)], timeout=30
        )
    finally:
        client_transport.stop()
        thread.join(10)
    assert not reply.has_error(), reply.error
    assert len(calls) == 1
    server_channel.close()
    assert client_channel is not None
    client_channel.close()
