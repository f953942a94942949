"""A datasite served exactly as syft-flwr 0.5.x serves one, run as its own process.

``python syft_flwr_05_client.py APP_NAME PARTITION NUM_PARTITIONS REPORT_FILE READY_FILE``,
with ``SYFTBOX_CLIENT_CONFIG_PATH`` naming the datasite's syft-core config.

This is syft-flwr 0.5.x's ``syftbox_flwr_client`` (``flower_client.py``: ``setup_client``,
``MessageHandler``, ``RequestProcessor``) on the real syft-core, syft-crypto, syft-rpc and
syft-event, with encryption on as it is by default: ``ensure_bootstrap`` creates the X3DH keys
and publishes a syft-crypto-only ``did.json``; syft-event decrypts each request
(``auto_decrypt``), the body is base64 of Flower protobuf, and the reply is base64 text that
syft-rpc encrypts to the sender (``encrypt_reply``). Nothing here comes from syft-flwr-core
except the demo's Flower ``ClientApp`` (plain Flower + numpy), the user code being served.

Two deviations, neither touching the protocol: syft-crypto asks the SyftBox server for the
did.json first (``_fetch_did_from_server``, an HTTPS request); the tests have no server and no
network, so that lookup reports "not on the server" and the local synced file is used, as
syft-crypto does when the server has none. And for the test, the process records what it
handled in REPORT_FILE, and writes READY_FILE once syft-event's file observer runs (a request
written before that moment but after syft-event's scan of pending requests would never be
seen: a syft-event race that the test must not depend on).
"""

from __future__ import annotations

import base64
import json
import os
import sys
import threading
import traceback
from pathlib import Path
from typing import Any

from flwr.app import Context, Message, RecordDict
from flwr.common.serde import message_from_proto, message_to_proto
from flwr.proto.message_pb2 import Message as ProtoMessage
from syft_core import Client
from syft_crypto import x3dh_bootstrap
from syft_event import SyftEvents
from syft_event.types import Request

from syft_flwr.demo.apps import make_client_app

REPORT_LOCK = threading.Lock()


def bytes_to_flower_message(data: bytes) -> Message:
    """syft-flwr 0.5.x ``serde.bytes_to_flower_message``."""
    return message_from_proto(ProtoMessage.FromString(data))


def flower_message_to_bytes(message: Message) -> bytes:
    """syft-flwr 0.5.x ``serde.flower_message_to_bytes``."""
    return bytes(message_to_proto(message).SerializeToString())


def decode_request_body(body: bytes | str) -> bytes:
    """syft-flwr 0.5.x ``RequestProcessor.decode_request_body`` with encryption on."""
    try:
        text = body.decode("utf-8") if isinstance(body, bytes) else body
        return base64.b64decode(text)
    except Exception:
        return body if isinstance(body, bytes) else body.encode()


def is_stop_signal(message: Message) -> bool:
    """syft-flwr 0.5.x ``RequestProcessor.is_stop_signal``."""
    if message.metadata.message_type != "system":
        return False
    if "config" in message.content and "action" in message.content["config"]:
        return bool(message.content["config"]["action"] == "stop")
    return message.metadata.group_id == "final"


def record(report: Path, entry: dict[str, Any]) -> None:
    with REPORT_LOCK, open(report, "a") as handle:
        handle.write(json.dumps(entry) + "\n")


def main(app_name: str, partition: int, partitions: int, report: Path, ready: Path) -> int:
    x3dh_bootstrap._fetch_did_from_server = lambda server_url, email: None  # no server here
    # setup_client(app_name), SYFT_FLWR_ENCRYPTION_ENABLED unset: encryption on
    client = x3dh_bootstrap.ensure_bootstrap(Client.load())
    box = SyftEvents(
        app_name=f"flwr/{app_name}", client=client, cleanup_expiry="1d", cleanup_interval="1d"
    )
    client_app = make_client_app()
    context = Context(
        run_id=0,
        node_id=0,
        node_config={"partition-id": partition, "num-partitions": partitions},
        state=RecordDict(),
        run_config={},
    )

    @box.on_request("/messages", auto_decrypt=True, encrypt_reply=True)
    def handle_messages(request: Request) -> str | None:
        entry: dict[str, Any] = {
            "decrypted": request.headers.get("X-Syft-Decrypted") == "true",
            "original_sender": request.headers.get("X-Syft-Original-Sender"),
        }
        message = bytes_to_flower_message(decode_request_body(request.body))
        entry["message_type"] = message.metadata.message_type
        if is_stop_signal(message):
            record(report, entry)
            box._stop_event.set()
            return None
        try:
            reply = client_app(message=message, context=context)
        except Exception:
            entry["error"] = traceback.format_exc()
            record(report, entry)
            box._stop_event.set()
            raise
        if reply.has_content() and "metrics" in reply.content.metric_records:
            entry["metrics"] = dict(reply.content.metric_records["metrics"])
        record(report, entry)
        return base64.b64encode(flower_message_to_bytes(reply)).decode("utf-8")

    def announce_ready() -> None:
        while not box._stop_event.is_set():
            if box.obs.is_alive():
                ready.write_text(client.email)
                return
            box._stop_event.wait(0.01)

    threading.Thread(target=announce_ready, daemon=True).start()
    box.run_forever()
    return 0


if __name__ == "__main__":
    assert os.environ.get("SYFTBOX_CLIENT_CONFIG_PATH"), "set SYFTBOX_CLIENT_CONFIG_PATH"
    name, index, count, report_file, ready_file = sys.argv[1:]
    sys.exit(main(name, int(index), int(count), Path(report_file), Path(ready_file)))
