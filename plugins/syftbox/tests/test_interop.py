"""Interoperability with the real SyftBox Python stack: our datasite answers syft-rpc.

A request made with the real ``syft_rpc.rpc.send`` (as syft-flwr 0.5.x's server makes them,
written in place as the stock syft-rpc writes files) is answered by our client runner, and the
reply resolves with ``future.wait()``; our stop signal sent the same way stops it. Encryption
is off on both sides here (the plaintext path). Whole runs with the real syft-flwr 0.5.3, in
both directions and encrypted, are ``test_syft_flwr_05.py`` and ``test_crypto_interop.py``.
"""

from __future__ import annotations

import threading
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from flwr.app import ArrayRecord, ConfigRecord, Context, Message, RecordDict
from flwr.common.serde import message_from_proto, message_to_proto
from flwr.proto.message_pb2 import Message as ProtoMessage

from syft_flwr.demo.apps import make_client_app
from syft_flwr.demo.model import LogisticRegression
from syft_flwr.fl_orchestrator import syftbox_flwr_client
from syft_flwr.node_ids import node_id_for
from syft_flwr.stop_signal import STOP_GROUP_ID, SYSTEM_MESSAGE_TYPE, build_stop_content
from syft_flwr.transport import TransportSettings
from syft_flwr_syftbox import SyftBoxTransport

_INSTALL = "pip install --no-deps -r plugins/syftbox/interop-requirements.txt"
syft_core = pytest.importorskip("syft_core")
syft_event = pytest.importorskip("syft_event", reason=f"the SyftBox stack is missing: {_INSTALL}")
syft_rpc = pytest.importorskip("syft_rpc", reason=f"the SyftBox stack is missing: {_INSTALL}")
if tuple(int(p) for p in syft_rpc.__version__.split(".")[:2]) < (0, 4):
    pytest.fail(
        f"syft-rpc {syft_rpc.__version__} predates per-sender folders; {_INSTALL}",
        pytrace=False,
    )

from syft_rpc import rpc  # noqa: E402

pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning:pathspec.*")


@pytest.fixture(autouse=True)
def plaintext_run(monkeypatch: pytest.MonkeyPatch) -> None:
    """These peers run syft-rpc/syft-event with encryption off, so our side must too: said
    explicitly, as encryption is on by default over SyftBox and never dropped silently."""
    monkeypatch.setenv("SYFT_FLWR_ENCRYPTION_ENABLED", "false")


APP_NAME = "interop"
AGGREGATOR = "aggregator@interop.org"
OURS = ["ours-1@interop.org", "ours-2@interop.org"]
JOIN = 30.0


@pytest.fixture(autouse=True)
def quiet_syft_rpc() -> None:
    from loguru import logger

    logger.disable("syft_event")


def syft_client(data_dir: Path, email: str) -> object:
    config = syft_core.SyftClientConfig(
        email=email, data_dir=data_dir, path=data_dir.parent / f"{email}.config.json"
    )
    return syft_core.Client(config)


def context(index: int, count: int) -> Context:
    return Context(
        run_id=0,
        node_id=0,
        node_config={"partition-id": index, "num-partitions": count},
        state=RecordDict(),
        run_config={},
    )


@pytest.fixture
def transports(data_dir: Path) -> Iterator[Callable[..., SyftBoxTransport]]:
    made: list[SyftBoxTransport] = []

    def make(identity: str, **options: object) -> SyftBoxTransport:
        table = {"data_dir": str(data_dir), **options}
        transport = SyftBoxTransport(TransportSettings(identity, table, poll_interval=0.2))
        made.append(transport)
        return transport

    yield make
    for transport in made:
        transport.close()


def test_our_client_answers_syft_rpc_send(data_dir: Path, transports, task_identity) -> None:
    alice = transports(OURS[0])
    stop_reason: list[str | None] = []
    thread = threading.Thread(
        target=lambda: stop_reason.append(
            syftbox_flwr_client(
                make_client_app(),
                context(0, 1),
                APP_NAME,
                transport=alice,
                trusted_aggregators=[AGGREGATOR],
            )
        ),
        daemon=True,
    )
    thread.start()
    sender = syft_client(data_dir, AGGREGATOR)
    url = rpc.make_url(OURS[0], app_name=f"flwr/{APP_NAME}", endpoint="messages")

    def send(content: RecordDict, message_type: str, group_id: str) -> tuple[Message, object]:
        message = Message(
            content, dst_node_id=node_id_for(OURS[0]), message_type=message_type, group_id=group_id
        )
        message.metadata.__dict__["_message_id"] = uuid.uuid4().hex
        body = message_to_proto(message).SerializeToString()
        return message, rpc.send(url=url, body=body, client=sender, expiry="30s", cache=False)

    arrays = ArrayRecord(LogisticRegression.zeros().to_arrays())
    config = ConfigRecord({"lr": 0.1, "local-epochs": 1})
    train, future = send(RecordDict({"arrays": arrays, "config": config}), "train", "1")
    started = time.monotonic()
    response = future.wait(timeout=JOIN, poll_interval=0.05)
    assert response.status_code == 200, response.body
    reply = message_from_proto(ProtoMessage.FromString(response.body))
    assert reply.metadata.reply_to_message_id == train.metadata.message_id
    assert "arrays" in reply.content.array_records and time.monotonic() - started < JOIN
    send(build_stop_content("done"), SYSTEM_MESSAGE_TYPE, STOP_GROUP_ID)
    thread.join(JOIN)
    assert not thread.is_alive() and stop_reason == ["done"]
