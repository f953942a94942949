"""The transport contract over Drive: layout, delivery, trust, cleanup, polling, compatibility."""

from __future__ import annotations

import threading
import time

import pytest
from flwr.app import ConfigRecord, Message, Metadata, RecordDict
from flwr.common.serde import message_from_proto, message_to_proto
from flwr.proto.message_pb2 import Message as ProtoMessage

from syft_flwr.errors import BodyTooLargeError, InvalidAddressError, TransportError
from syft_flwr.message_factory import message_with_metadata
from syft_flwr.testing.helpers import Serving, WaitReply, eventually, later
from syft_flwr.transport import ReplyStatus, Request
from syft_flwr.wire import decode_message, encode_message
from syft_flwr_gdrive import GDriveTransport
from syft_flwr_gdrive.api import DriveApi
from syft_flwr_gdrive.layout import FOLDER_MIME
from syft_flwr_gdrive.testing import FakeDrive

from .conftest import APP, EP, MakeTransport

pytestmark = pytest.mark.filterwarnings("error::pytest.PytestUnhandledThreadExceptionWarning")


def path_of(drive: FakeDrive, file_id: str) -> str:
    parts = []
    with drive.store.locked():
        current = drive.store._files.get(file_id)
        while current is not None:
            parts.append(current.name)
            parent = current.parents[0]
            current = drive.store._files.get(parent)
    return "/".join(reversed(parts))


def message_files(drive: FakeDrive) -> list[str]:
    with drive.store.locked():
        files = list(drive.store._files.values())
    return sorted(f.name for f in files if f.mime_type != FOLDER_MIME)


def test_round_trip_layout_trust_and_cleanup(
    make: MakeTransport, drive: FakeDrive, serving: Serving, wait_reply: WaitReply
) -> None:
    alice, bob = make("alice@x.org"), make("bob@x.org")
    seen: list[Request] = []

    def handler(request: Request) -> bytes:
        seen.append(request)
        return b"re:" + request.body

    bob.serve(APP, EP, handler)
    with serving(bob):
        future_id = alice.send("bob@x.org", APP, EP, b"\x00hello\xff", later())
        (request_file,) = drive.store.list("alice@x.org", f"name = '{future_id}.request'")
        assert path_of(drive, request_file.id) == (
            f"SyftBox/syft_outbox_inbox_alice@x.org_to_bob@x.org/{APP}/rpc/{EP}/{future_id}.request"
        )
        pair = drive.store.get("alice@x.org", request_file.parents[0])
        while pair.name != "syft_outbox_inbox_alice@x.org_to_bob@x.org":
            pair = drive.store.get("alice@x.org", pair.parents[0])
        assert pair.readers == {"bob@x.org": "reader"}
        reply = wait_reply(alice, future_id)
        assert reply.status is ReplyStatus.OK and reply.body == b"re:\x00hello\xff"
        assert alice.poll(future_id) == reply, "polling does not consume"
        (request,) = seen
        assert (request.id, request.sender, request.recipient) == (
            future_id,
            "alice@x.org",
            "bob@x.org",
        )
        assert request.expires_at > time.time()
        alice.forget(future_id)
        assert alice.poll(future_id) is None
        eventually(lambda: message_files(drive) == [], "both message files deleted")


def test_handler_errors_and_silence(
    make: MakeTransport, serving: Serving, wait_reply: WaitReply
) -> None:
    alice, bob = make("alice@x.org"), make("bob@x.org")

    def handler(request: Request) -> bytes | None:
        if request.body == b"boom":
            raise ValueError("bad input")
        return None

    bob.serve(APP, EP, handler)
    with serving(bob):
        failing = alice.send("bob@x.org", APP, EP, b"boom", later())
        silent = alice.send("bob@x.org", APP, EP, b"quiet", later(0.5))
        reply = wait_reply(alice, failing)
        assert reply.status is ReplyStatus.REJECTED and "ValueError: bad input" in reply.detail
        assert wait_reply(alice, silent).status is ReplyStatus.EXPIRED


def test_requests_wait_in_the_inbox_until_served_and_expired_ones_are_skipped(
    make: MakeTransport, serving: Serving, wait_reply: WaitReply
) -> None:
    alice, bob = make("alice@x.org"), make("bob@x.org")
    stale = alice.send("bob@x.org", APP, EP, b"stale", later(0.2))
    fresh = alice.send("bob@x.org", APP, EP, b"fresh", later())
    time.sleep(0.3)
    bodies: list[bytes] = []
    bob.serve(APP, EP, lambda r: bodies.append(r.body) or b"ok")
    with serving(bob):
        assert wait_reply(alice, fresh).status is ReplyStatus.OK
    assert bodies == [b"fresh"]
    assert alice.poll(stale) is not None and alice.poll(stale).status is ReplyStatus.EXPIRED


def test_a_forged_inbox_is_ignored(
    make: MakeTransport, drive: FakeDrive, serving: Serving, wait_reply: WaitReply
) -> None:
    """The sender is who owns the files, not what a folder name claims."""
    bob, mallory, carol = make("bob@x.org"), make("mallory@x.org"), make("carol@x.org")
    api: DriveApi = mallory.api
    pair = api.create_folder("syft_outbox_inbox_alice@x.org_to_bob@x.org", None, "forging")
    api.share(pair, "bob@x.org", "reader", "forging")
    folder = pair
    for name in (APP, "rpc", EP):
        folder = api.create_folder(name, folder, "forging")
    api.upload("forged.request", folder, b"evil", {}, "forging")
    delivered: list[str] = []
    bob.serve(APP, EP, lambda r: delivered.append(r.sender) or b"ok")
    with serving(bob):
        genuine = carol.send("bob@x.org", APP, EP, b"hi", later())
        assert wait_reply(carol, genuine).status is ReplyStatus.OK
        time.sleep(0.2)
    assert delivered == ["carol@x.org"]


def test_run_stop_close_semantics(make: MakeTransport) -> None:
    bob = make("bob@x.org")
    bob.serve(APP, EP, lambda r: b"")
    bob.stop()
    started = time.monotonic()
    bob.run()  # a stop before run makes it return at once
    assert time.monotonic() - started < 1
    thread = threading.Thread(target=bob.run, daemon=True)
    thread.start()
    eventually(lambda: bob._running, "run() started")
    with pytest.raises(TransportError, match="already running"):
        bob.run()
    bob.close()
    thread.join(5)
    assert not thread.is_alive()
    with pytest.raises(TransportError, match="closed"):
        bob.send("alice@x.org", APP, EP, b"", later())
    bob.close()


def test_validation(make: MakeTransport) -> None:
    alice = make("alice@x.org", max_body_size=4)
    with pytest.raises(BodyTooLargeError):
        alice.send("bob@x.org", APP, EP, b"12345", later())
    for datasite, app, endpoint in (
        ("bob", APP, EP),
        ("bob@x.org/../x", APP, EP),
        ("bob@x.org", "../etc", EP),
        ("bob@x.org", APP, "a/b"),
    ):
        with pytest.raises(InvalidAddressError):
            alice.send(datasite, app, endpoint, b"", later())
    with pytest.raises(InvalidAddressError):
        make("not-an-email")


def test_idle_transports_poll_ever_less_and_unused_ones_not_at_all(
    make: MakeTransport, drive: FakeDrive, serving: Serving
) -> None:
    quiet = make("quiet@x.org")
    idle = make("idle@x.org", poll_interval=0.02, max_poll_interval=0.32)
    idle.serve(APP, EP, lambda r: b"")
    with serving(idle):
        time.sleep(1.5)
    # Fixed 20 ms polling would be ~75 polls; doubling to 320 ms gives about a dozen.
    assert 4 <= idle.stats.polls <= 16, idle.stats
    assert drive.count("quiet@x.org") == 0 and quiet.stats.polls == 0


def test_leftovers_of_an_earlier_process_are_swept(
    make: MakeTransport, drive: FakeDrive, serving: Serving
) -> None:
    first = make("alice@x.org")
    first.send("bob@x.org", APP, EP, b"old", later(0.1))
    first.close()
    assert message_files(drive) != []
    time.sleep(0.2)
    second = make("alice@x.org")
    second.serve(APP, EP, lambda r: b"")
    with serving(second):
        eventually(lambda: message_files(drive) == [], "the expired request swept")


def flower_message(dst_node_id: int) -> Message:
    metadata = Metadata(
        run_id=7,
        message_id="m1",
        src_node_id=1,
        dst_node_id=dst_node_id,
        reply_to_message_id="",
        group_id="1",
        created_at=time.time(),
        ttl=60.0,
        message_type="train",
    )
    content = RecordDict({"config": ConfigRecord({"lr": 0.1})})
    return message_with_metadata(metadata, content=content)


class SyftFlwr05Client:
    """A syft-flwr 0.5.x Drive-mode client, written from its documented file layout: it reads
    ``<id>.request`` (raw Flower protobuf) from the server's shared outbox and writes
    ``<id>.response`` into its own outbox folder, shared with the server as writer."""

    def __init__(self, api: DriveApi, me: str, server: str) -> None:
        self.api, self.me, self.server = api, me, server

    def serve_once(self, reply_with_error: bool = False) -> None:
        inbox = self._find(f"syft_outbox_inbox_{self.server}_to_{self.me}", None)
        for name in ("flwr/demo", "rpc", "messages"):
            inbox = self._find(name, inbox)
        (request,) = self.api.search(f"'{inbox}' in parents and trashed = false", "t").files
        raw = self.api.download(request["id"], int(request["size"]), "t")
        assert raw is not None
        message = message_from_proto(ProtoMessage.FromString(raw))
        answer = Message(RecordDict({"config": ConfigRecord({"ok": 1})}), reply_to=message)
        body = (
            b'{"error": "boom", "timestamp": "2025-01-01T00:00:00"}'
            if reply_with_error
            else message_to_proto(answer).SerializeToString()
        )
        root = self.api.create_folder("SyftBox", None, "t")
        folder = self.api.create_folder(f"syft_outbox_inbox_{self.me}_to_{self.server}", root, "t")
        self.api.share(folder, self.server, "writer", "t")
        for name in ("flwr/demo", "rpc", "messages"):
            folder = self.api.create_folder(name, folder, "t")
        stem = request["name"].removesuffix(".request")
        self.api.upload(f"{stem}.response", folder, body, {}, "t")

    def _find(self, name: str, parent: str | None) -> str:
        clause = f" and '{parent}' in parents" if parent else ""
        found = self.api.search(f"name = '{name}'{clause} and trashed = false", "t").files
        return str(found[0]["id"])


@pytest.mark.parametrize("error", [False, True])
def test_syft_flwr_05_drive_clients_can_join_in_compat_mode(
    make: MakeTransport, wait_reply: WaitReply, error: bool
) -> None:
    server = make("server@x.org", wire="syft-flwr-p2p")
    legacy: GDriveTransport = make("legacy@x.org")
    envelope = encode_message(flower_message(dst_node_id=42))
    future_id = server.send("legacy@x.org", APP, EP, envelope, later())
    SyftFlwr05Client(legacy.api, "legacy@x.org", "server@x.org").serve_once(error)
    reply = wait_reply(server, future_id)
    if error:
        assert reply.status is ReplyStatus.REJECTED and reply.detail == "boom"
        return
    assert reply.status is ReplyStatus.OK
    answer = decode_message(reply.body)  # turned back into our envelope
    assert answer.metadata.reply_to_message_id == "m1" and answer.metadata.src_node_id == 42
    assert answer.content["config"]["ok"] == 1


def test_protobuf_requests_are_answered_in_kind(
    make: MakeTransport, drive: FakeDrive, serving: Serving, wait_reply: WaitReply
) -> None:
    server = make("server@x.org", wire="syft-flwr-p2p")
    client = make("client@x.org")
    received: list[Message] = []

    def handler(request: Request) -> bytes:
        message = decode_message(request.body)
        received.append(message)
        return encode_message(Message(RecordDict(), reply_to=message))

    client.serve(APP, EP, handler)
    with serving(client):
        future_id = server.send("client@x.org", APP, EP, encode_message(flower_message(5)), later())
        reply = wait_reply(server, future_id)
    assert received[0].metadata.message_id == "m1"
    assert decode_message(reply.body).metadata.reply_to_message_id == "m1"
    (response,) = drive.store.list("client@x.org", f"name = '{future_id}.response'")
    assert not response.content.startswith(b"SFWM"), "written as Flower protobuf"
