"""End-to-end encryption over Drive: key documents in the pair folders, sealed request files.

Runs here encrypt because ``GDriveTransport.encrypt_by_default`` is true (the environment does
not say otherwise); keys go to the temporary ``SYFT_FLWR_KEY_DIR`` of the conftest.
"""

from __future__ import annotations

import threading
from typing import Any

import pytest

from syft_flwr.crypto import MissingKeyError
from syft_flwr.demo.apps import RoundReport, make_client_app, make_server_app
from syft_flwr.errors import ConfigError
from syft_flwr.fl_orchestrator import syftbox_flwr_client, syftbox_flwr_server
from syft_flwr.plugins import create_plugin_manager
from syft_flwr.testing.helpers import TIMEOUT, Serving, eventually
from syft_flwr_gdrive.keydocs import DID_FILE
from syft_flwr_gdrive.layout import pair_name
from syft_flwr_gdrive.testing import FakeDrive
from syft_flwr_gdrive.testing.store import StoredFile

from .conftest import APP, EP, MakeTransport
from .test_federated import APP_NAME, SERVER, assert_trained, context, federate

pytestmark = pytest.mark.slow

SEALED = b"SFWE"


def record_files(drive: FakeDrive, monkeypatch: pytest.MonkeyPatch) -> list[StoredFile]:
    """Every file created on the fake from now on (requests are deleted once answered)."""
    created: list[StoredFile] = []
    original = drive.store.create

    def create(email: str, metadata: dict[str, Any], content: bytes = b"") -> StoredFile:
        stored = original(email, metadata, content)
        created.append(stored)
        return stored

    monkeypatch.setattr(drive.store, "create", create)
    return created


def test_encrypted_fedavg_seals_every_message(
    make: MakeTransport, drive: FakeDrive, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("SYFT_FLWR_ENCRYPTION_ENABLED", raising=False)
    created = record_files(drive, monkeypatch)
    run = federate(make, clients=2, rounds=2)
    assert_trained(run, clients=2, rounds=2)
    messages = [f for f in created if f.name.endswith((".request", ".response"))]
    requests = [f for f in messages if f.name.endswith(".request")]
    assert len(requests) >= 2 * 2 * 2
    assert all(f.content.startswith(SEALED) for f in messages), "a message went in plaintext"
    # Each party's document sits in its pair folders, owned by it.
    names = {f.id: f.name for f in created}
    documents = {(f.owner, names[f.parents[0]]) for f in created if f.name == DID_FILE}
    clients = [t.identity for t in run.clients]
    for client in clients:
        assert (client, pair_name(client, SERVER)) in documents
        assert (SERVER, pair_name(SERVER, client)) in documents


def test_a_peer_without_keys_is_refused_by_name(
    make: MakeTransport, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("SYFT_FLWR_ENCRYPTION_ENABLED", raising=False)
    monkeypatch.setenv("SYFT_FLWR_MSG_TIMEOUT", "0.5")  # bounds the wait for keys
    manager = create_plugin_manager()
    good, silent = "owner-0@hospital0.example", "silent@hospital1.example"
    client = make(good)
    make(silent)  # an account that never starts a client, so never publishes
    errors: list[BaseException] = []

    def serve() -> None:
        try:
            syftbox_flwr_client(
                make_client_app(),
                context(0, 2),
                APP_NAME,
                transport=client,
                plugin_manager=manager,
                trusted_aggregators=[SERVER],
            )
        except BaseException as exc:  # reported below
            errors.append(exc)

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    reports: list[RoundReport] = []
    with pytest.raises(MissingKeyError) as refused:
        syftbox_flwr_server(
            make_server_app(2, 1, reports.append, round_timeout=TIMEOUT),
            context(0, 2),
            [good, silent],
            APP_NAME,
            transport=make(SERVER),
            plugin_manager=manager,
        )
    assert silent in str(refused.value) and good not in str(refused.value)
    assert not reports
    client.stop()
    thread.join(TIMEOUT)
    assert not errors, errors


def test_compat_wire_refuses_to_publish_keys(make: MakeTransport) -> None:
    transport = make("server@x.org", wire="syft-flwr-p2p")
    with pytest.raises(ConfigError, match="SYFT_FLWR_ENCRYPTION_ENABLED=false"):
        transport.publish_key_document(b"{}")


def test_knock_exchanges_documents_and_steady_fetches_cost_one_list(
    make: MakeTransport, drive: FakeDrive, serving: Serving
) -> None:
    server, client = make("server@x.org"), make("client@x.org")
    client.serve(APP, EP, lambda request: b"ok")
    client.publish_key_document(b'{"who": "client"}')
    server.publish_key_document(b'{"who": "server"}')
    assert client.fetch_key_document("nobody@x.org") is None
    with serving(client):
        # the first fetch knocks; the client's poller answers with its document
        eventually(
            lambda: server.fetch_key_document("client@x.org") == b'{"who": "client"}',
            "the client's answer to the knock",
        )
    assert client.fetch_key_document("server@x.org") == (b'{"who": "server"}')
    before = drive.counts("server@x.org")
    assert server.fetch_key_document("client@x.org")
    after = drive.counts("server@x.org")
    delta = {k: after[k] - before.get(k, 0) for k in after if after[k] != before.get(k, 0)}
    assert delta == {"files.list": 1}, delta
    # a new document replaces the old one; the peer reads the newest
    server.publish_key_document(b'{"who": "server", "v": 2}')
    assert client.fetch_key_document("server@x.org") == (b'{"who": "server", "v": 2}')
