"""Interoperability with the real SyftBox Python stack (syft-rpc, syft-event, syft-core).

(a) A datasite served the way syft-flwr 0.5.x serves one (a ``syft_event.SyftEvents`` handler
on ``/messages`` that decodes the Flower protobuf body, calls a ``ClientApp`` and replies with
protobuf) takes part in a full FedAvg run driven by our ``SyftGrid`` with ``wire = "syft-rpc"``,
next to two of our own clients, and stops on our stop signal.

(b) Our client runner answers a request made with ``syft_rpc.rpc.send``, and the reply
resolves with ``future.wait()``.

Encryption is off on both sides here (``auto_decrypt=False``, ``encrypt_reply=False``, and
``SYFT_FLWR_ENCRYPTION_ENABLED=false`` for us): the plaintext path. The encrypted one, with
syft-flwr 0.5.x's defaults, is ``test_crypto_interop.py``. The stock syft-rpc writes files in
place (readers see partial JSON), so its ``dump`` is patched to write atomically, as a real
deployment must.
"""

from __future__ import annotations

import threading
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from flwr.app import ArrayRecord, ConfigRecord, Context, Message, RecordDict
from flwr.clientapp import ClientApp
from flwr.common.serde import message_from_proto, message_to_proto
from flwr.proto.message_pb2 import Message as ProtoMessage

from syft_flwr.demo.apps import RoundReport, make_client_app, make_server_app
from syft_flwr.demo.model import LogisticRegression
from syft_flwr.fl_orchestrator import syftbox_flwr_client, syftbox_flwr_server
from syft_flwr.node_ids import node_id_for
from syft_flwr.stop_signal import STOP_GROUP_ID, SYSTEM_MESSAGE_TYPE, build_stop_content
from syft_flwr.transport import TransportSettings
from syft_flwr_syftbox import SyftBoxTransport
from syft_flwr_syftbox.atomic import write_atomic

_INSTALL = "pip install --no-deps -r plugins/syftbox/interop-requirements.txt"
syft_core = pytest.importorskip("syft_core")
syft_event = pytest.importorskip("syft_event", reason=f"the SyftBox stack is missing: {_INSTALL}")
syft_rpc = pytest.importorskip("syft_rpc", reason=f"the SyftBox stack is missing: {_INSTALL}")
if tuple(int(p) for p in syft_rpc.__version__.split(".")[:2]) < (0, 4):
    pytest.fail(
        f"syft-rpc {syft_rpc.__version__} predates per-sender folders; {_INSTALL}",
        pytrace=False,
    )

from syft_event.types import Request as EventRequest  # noqa: E402
from syft_rpc import rpc  # noqa: E402
from syft_rpc.protocol import Base as SyftRpcModel  # noqa: E402

pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning:pathspec.*")


@pytest.fixture(autouse=True)
def plaintext_run(monkeypatch: pytest.MonkeyPatch) -> None:
    """These peers run syft-rpc/syft-event with encryption off, so our side must too: said
    explicitly, as encryption is on by default over SyftBox and never dropped silently."""
    monkeypatch.setenv("SYFT_FLWR_ENCRYPTION_ENABLED", "false")


APP_NAME = "interop"
AGGREGATOR = "aggregator@interop.org"
OURS = ["ours-1@interop.org", "ours-2@interop.org"]
THEIRS = "syft-flwr@interop.org"
JOIN = 30.0


@pytest.fixture(autouse=True)
def atomic_syft_rpc(monkeypatch: pytest.MonkeyPatch) -> None:
    """Make syft-rpc write its files atomically (temp file, fsync, link), as DESIGN asks."""

    def dump(self: SyftRpcModel, path: str | Path) -> None:
        target, data = Path(path), self.dumps().encode("utf-8")
        try:
            write_atomic(target, [data])
        except FileExistsError:
            write_atomic(target, [data], replace=True)

    monkeypatch.setattr(SyftRpcModel, "dump", dump)
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


def is_syft_flwr_stop(message: Message) -> bool:
    """syft-flwr 0.5.x's ``RequestProcessor.is_stop_signal``, verbatim in behaviour."""
    if message.metadata.message_type != SYSTEM_MESSAGE_TYPE:
        return False
    if "config" in message.content and "action" in message.content["config"]:
        return bool(message.content["config"]["action"] == "stop")
    return message.metadata.group_id == "final"


class SyftFlwrStyleClient:
    """A datasite served as syft-flwr 0.5.x serves one, with the real syft-event."""

    def __init__(self, data_dir: Path, email: str, client_app: ClientApp, ctx: Context) -> None:
        self.client_app, self.context = client_app, ctx
        self.stopped = threading.Event()
        self.handled: list[str] = []
        self.events = syft_event.SyftEvents(
            app_name=f"flwr/{APP_NAME}", client=syft_client(data_dir, email)
        )
        self.events.on_request("/messages", auto_decrypt=False, encrypt_reply=False)(self.handle)

    def handle(self, request: EventRequest) -> bytes | None:
        message = message_from_proto(ProtoMessage.FromString(request.body))
        if is_syft_flwr_stop(message):
            self.stopped.set()
            return None
        self.handled.append(message.metadata.message_type)
        reply = self.client_app(message=message, context=self.context)
        return bytes(message_to_proto(reply).SerializeToString())


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


def test_syft_flwr_client_joins_our_fedavg_run(data_dir: Path, transports) -> None:
    datasites = [*OURS, THEIRS]
    theirs = SyftFlwrStyleClient(data_dir, THEIRS, make_client_app(), context(2, 3))
    theirs.events.start()
    results: dict[str, str | None] = {}
    threads = []
    for index, email in enumerate(OURS):
        transport = transports(email)

        def serve(transport: SyftBoxTransport = transport, index: int = index) -> None:
            results[transport.identity] = syftbox_flwr_client(
                make_client_app(),
                context(index, 3),
                APP_NAME,
                transport=transport,
                trusted_aggregators=[AGGREGATOR],
            )

        threads.append(threading.Thread(target=serve, daemon=True))
        threads[-1].start()
    rounds: list[RoundReport] = []
    try:
        syftbox_flwr_server(
            make_server_app(3, 2, rounds.append, round_timeout=15.0),
            Context(run_id=0, node_id=0, node_config={}, state=RecordDict(), run_config={}),
            datasites,
            APP_NAME,
            transport=transports(AGGREGATOR, wire="syft-rpc"),
        )
        assert theirs.stopped.wait(JOIN), "the syft-flwr client never saw the stop signal"
    finally:
        theirs.events.stop()
    for thread in threads:
        thread.join(JOIN)
        assert not thread.is_alive()
    assert [(r.clients, r.failures) for r in rounds[1:]] == [(3, 0), (3, 0)]
    assert rounds[-1].test_loss < rounds[0].test_loss
    assert theirs.handled == ["train", "evaluate"] * 2
    assert set(results) == set(OURS) and all(results.values())


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
