"""The transport contract over a real folder: round trips, identity, expiry, limits, durability."""

from __future__ import annotations

import json
import logging
import os
import subprocess
import sys
import threading
import time
import uuid
from pathlib import Path

import pytest

from syft_flwr.errors import BodyTooLargeError, InvalidAddressError, TransportError
from syft_flwr.transport import ReplyStatus, Request, TransportSettings
from syft_flwr_syftbox import SyftBoxTransport, WireFormat
from syft_flwr_syftbox.acl import ACL_FILE, LEGACY_ACL_FILE, RPC
from syft_flwr_syftbox.atomic import write_atomic
from syft_flwr_syftbox.files import encode_rpc_file
from syft_flwr_syftbox.layout import FileKind, Layout, RpcLocation
from syft_flwr_syftbox.rpcfile import RpcFile
from syft_flwr_syftbox.safe_fs import SafeRoot
from syft_flwr_syftbox.watcher import FolderWatcher

APP, EP = "flwr/demo", "messages"
SERVER, ALICE, BOB = "server@test.org", "alice@test.org", "bob@test.org"

pytestmark = pytest.mark.filterwarnings("error::pytest.PytestUnhandledThreadExceptionWarning")


def rpc_path(data_dir: Path, sender: str, request_id: str, kind: FileKind) -> Path:
    location = RpcLocation(ALICE, APP, EP, sender, request_id, kind)
    return Layout(data_dir / "datasites").file(location)


def plant_request(data_dir: Path, folder: str, *, claimed: str, body: bytes, expires: float) -> str:
    """Write a native request into ``folder``'s sender folder at alice, claiming ``claimed``."""
    request_id = str(uuid.uuid4())
    rpc = RpcFile(
        kind=FileKind.REQUEST,
        format=WireFormat.NATIVE,
        id=request_id,
        sender=claimed,
        recipient=ALICE,
        app=APP,
        endpoint=EP,
        created=time.time(),
        expires=expires,
        body=body,
    )
    path = rpc_path(data_dir, folder, request_id, FileKind.REQUEST)
    path.parent.mkdir(parents=True, exist_ok=True)
    write_atomic(path, encode_rpc_file(rpc))
    return request_id


def test_round_trip_on_disk_layout(make, serving, wait_reply, later, data_dir) -> None:
    server, alice = make(SERVER), make(ALICE)
    seen: list[Request] = []

    def handler(request: Request) -> bytes:
        seen.append(request)
        return b"pong:" + request.body

    alice.serve(APP, EP, handler)
    with serving(alice):
        future_id = server.send(ALICE, APP, EP, b"ping", later())
        reply = wait_reply(server, future_id)
    assert reply.status is ReplyStatus.OK and reply.body == b"pong:ping"
    (request,) = seen
    assert (request.id, request.sender, request.recipient) == (future_id, SERVER, ALICE)
    assert (request.app, request.endpoint) == (APP, EP)
    folder = data_dir / "datasites" / ALICE / "app_data" / "flwr" / "demo" / "rpc"
    assert (folder / EP / SERVER / f"{future_id}.request").is_file()
    assert (folder / EP / SERVER / f"{future_id}.response").is_file()
    assert (folder / ACL_FILE).read_text() == RPC.pub_yaml
    assert (folder / LEGACY_ACL_FILE).read_text() == RPC.syftperm_yaml
    server.forget(future_id)
    assert not list((folder / EP / SERVER).iterdir()), "forget removes an answered request"
    assert server.poll(future_id) is None


def test_both_permission_formats_let_each_sender_write_only_its_folder() -> None:
    import yaml

    go = yaml.safe_load(RPC.pub_yaml)
    assert go["terminal"] is True
    patterns = {rule["pattern"]: rule["access"] for rule in go["rules"]}
    for suffix in ("request", "response", "part"):
        access = patterns[f"*/{{{{.UserEmail}}}}/*.{suffix}"]
        assert access == {"admin": [], "read": ["USER"], "write": ["USER"]}
    assert patterns["**"] == {"admin": [], "read": [], "write": []}
    for name in ("syft.pub.yaml", "syftperm.yaml"):  # how a sender sees the app is served
        assert patterns[name] == {"admin": [], "read": ["*"], "write": []}
    legacy = {rule["path"]: rule for rule in yaml.safe_load(RPC.syftperm_yaml)}  # 0.4.x
    for suffix in ("request", "response", "part"):
        rule = legacy.pop(f"*/{{useremail}}/*.{suffix}")
        assert rule["user"] == "*" and rule["permissions"] == ["read", "create", "write"]
    assert legacy == {
        name: {"path": name, "user": "*", "permissions": ["read"]}
        for name in ("syft.pub.yaml", "syftperm.yaml")
    }


def test_many_concurrent_requests(make, serving, wait_reply, later) -> None:
    server, alice, bob = make(SERVER), make(ALICE), make(BOB)
    alice.serve(APP, EP, lambda r: b"a" + r.body)
    bob.serve(APP, EP, lambda r: b"b" + r.body)
    with serving(alice), serving(bob):
        futures = {
            server.send(who, APP, EP, str(i).encode(), later()): (who, i)
            for i in range(20)
            for who in (ALICE, BOB)
        }
        for future_id, (who, i) in futures.items():
            assert wait_reply(server, future_id).body == who[0].encode() + str(i).encode()


def test_syft_rpc_wire_round_trip(
    make, serving, wait_reply, later, data_dir, task_identity
) -> None:
    from flwr.app import ConfigRecord, Message, RecordDict

    from syft_flwr.wire import decode_message, encode_message

    server = make(SERVER, wire="syft-rpc")
    alice = make(ALICE)  # native by default: it answers in the format of the request
    message = Message(
        RecordDict({"c": ConfigRecord({"x": 1})}), dst_node_id=5, message_type="query"
    )
    message.metadata.__dict__["_message_id"] = "m1"

    def handler(request: Request) -> bytes:
        got = decode_message(request.body)
        reply = Message(
            RecordDict({"c": ConfigRecord({"y": got.content["c"]["x"] + 1})}), reply_to=got
        )
        return encode_message(reply)

    alice.serve(APP, EP, handler)
    with serving(alice):
        future_id = server.send(ALICE, APP, EP, encode_message(message), later())
        request_file = rpc_path(data_dir, SERVER, future_id, FileKind.REQUEST)
        document = json.loads(request_file.read_text())
        assert list(document) == [
            "id",
            "sender",
            "url",
            "body",
            "headers",
            "created",
            "expires",
            "method",
        ]
        reply = wait_reply(server, future_id)
    response = json.loads(rpc_path(data_dir, SERVER, future_id, FileKind.RESPONSE).read_text())
    assert response["status_code"] == 200 and response["sender"] == ALICE
    assert decode_message(reply.body).content["c"]["y"] == 2


def test_foreign_sender_claim_is_refused_and_never_delivered(
    make, serving, wait_reply, later, data_dir, caplog, eventually
) -> None:
    bob = make(BOB)  # the sender whose folder the forged file sits in
    alice = make(ALICE)
    delivered: list[Request] = []
    alice.serve(APP, EP, lambda r: delivered.append(r) or b"ok")
    forged = plant_request(data_dir, BOB, claimed=SERVER, body=b"evil", expires=later())
    response = rpc_path(data_dir, BOB, forged, FileKind.RESPONSE)
    with caplog.at_level(logging.WARNING), serving(alice):
        eventually(response.exists, "the refusal")
        honest = bob.send(ALICE, APP, EP, b"hi", later())
        assert wait_reply(bob, honest).body == b"ok"
    assert [r.id for r in delivered] == [honest]
    assert any("claims to be from" in record.getMessage() for record in caplog.records)
    assert "refused" in response.read_bytes().decode(errors="replace")


def test_expired_request_is_answered_with_expiry(make, serving, wait_reply, later) -> None:
    server, alice = make(SERVER), make(ALICE)
    calls: list[Request] = []
    alice.serve(APP, EP, lambda r: calls.append(r) or b"late")
    future_id = server.send(ALICE, APP, EP, b"x", time.time() - 1)
    with serving(alice):
        reply = wait_reply(server, future_id)
    assert reply.status is ReplyStatus.EXPIRED and not calls


def test_unanswered_future_expires(make, wait_reply, later) -> None:
    server = make(SERVER)
    future_id = server.send(ALICE, APP, EP, b"x", later(0.3))
    assert server.poll(future_id) is None
    reply = wait_reply(server, future_id)
    assert reply.status is ReplyStatus.EXPIRED


def test_body_limits(make, serving, wait_reply, later, data_dir) -> None:
    server, alice = make(SERVER, max_body_size=100), make(ALICE, max_body_size=100)
    with pytest.raises(BodyTooLargeError, match="max_body_size of 100 bytes"):
        server.send(ALICE, APP, EP, b"x" * 101, later())
    alice.serve(APP, EP, lambda r: b"y" * 200)
    big = plant_request(data_dir, SERVER, claimed=SERVER, body=b"z" * 500, expires=later())
    with serving(alice):
        reply = wait_reply(server, server.send(ALICE, APP, EP, b"small", later()))
        assert reply.status is ReplyStatus.REJECTED and "max_body_size" in reply.detail
        refused = server.poll(big)
    assert refused is None  # not a future of this server; the file itself was answered
    answer = rpc_path(data_dir, SERVER, big, FileKind.RESPONSE)
    assert answer.exists() and b"max_body_size" in answer.read_bytes()


def test_handler_errors_and_no_reply(make, serving, wait_reply, later, data_dir) -> None:
    server, alice = make(SERVER), make(ALICE)

    def handler(request: Request) -> bytes | None:
        if request.body == b"boom":
            raise RuntimeError("boom")
        if request.body == b"quiet":
            return None
        return b"fine"

    alice.serve(APP, EP, handler)
    with serving(alice):
        failed = wait_reply(server, server.send(ALICE, APP, EP, b"boom", later()))
        quiet = server.send(ALICE, APP, EP, b"quiet", later())
        fine = wait_reply(server, server.send(ALICE, APP, EP, b"ok", later()))
    assert failed.status is ReplyStatus.REJECTED and "RuntimeError" in failed.detail
    assert fine.body == b"fine"
    assert not rpc_path(data_dir, SERVER, quiet, FileKind.RESPONSE).exists()


def test_duplicate_files_are_delivered_once_even_after_restart(
    make, serving, later, data_dir, eventually
) -> None:
    server, alice = make(SERVER), make(ALICE)
    calls: list[str] = []
    alice.serve(APP, EP, lambda r: calls.append(r.id) or None)
    with serving(alice):
        first = server.send(ALICE, APP, EP, b"once", later())
        eventually(lambda: first in calls, "the first delivery")
        request = rpc_path(data_dir, SERVER, first, FileKind.REQUEST)
        content = request.read_bytes()
        request.unlink()
        request.write_bytes(content)  # a sync engine delivering the same file again
        probe = server.send(ALICE, APP, EP, b"probe", later())
        eventually(lambda: probe in calls, "a later request")
    alice.close()
    again = make(ALICE)  # a restarted client rescans the folder
    again.serve(APP, EP, lambda r: calls.append(r.id) or None)
    with serving(again):
        probe = server.send(ALICE, APP, EP, b"probe", later())
        eventually(lambda: probe in calls, "a request after the restart")
    assert calls.count(first) == 1


def test_restarted_server_collects_earlier_replies(make, serving, wait_reply, later) -> None:
    first, alice = make(SERVER), make(ALICE)
    assert first.capabilities.persistent and first.capabilities.notifies
    future_id = first.send(ALICE, APP, EP, b"before restart", later())
    first.close()
    alice.serve(APP, EP, lambda r: b"answer to " + r.body)
    with serving(alice):
        restarted = make(SERVER)
        reply = wait_reply(restarted, future_id)
    assert reply.body == b"answer to before restart"


def test_forgetting_a_collected_reply_walks_to_its_folder_once(
    make, serving, wait_reply, later, data_dir, monkeypatch
) -> None:
    """The grid forgets every future it collected: the reply poll() read is not read again,
    and its request and reply are unlinked, and its parts found, through one descriptor of
    their folder (the parts then go on the reaper's thread)."""
    server, alice = make(SERVER), make(ALICE)
    alice.serve(APP, EP, lambda r: b"pong")
    with serving(alice):
        future_id = server.send(ALICE, APP, EP, b"ping", later())
        assert wait_reply(server, future_id).status is ReplyStatus.OK
    request = rpc_path(data_dir, SERVER, future_id, FileKind.REQUEST)
    stale_part = request.with_name(f"{future_id}.response.0.part")
    stale_part.write_bytes(b"left by a crashed writer")
    walks: list[Path] = []
    folder = SafeRoot.folder

    def counting(self: SafeRoot, path: Path, *, create: bool = False):
        if threading.current_thread() is threading.main_thread():
            walks.append(path)
        return folder(self, path, create=create)

    monkeypatch.setattr(SafeRoot, "folder", counting)
    server.forget(future_id)
    monkeypatch.setattr(SafeRoot, "folder", folder)
    assert walks == [request.parent]
    assert server.poll(future_id) is None
    server.close()  # the reaper's removals are done
    assert not list(request.parent.iterdir())


def test_forgotten_request_still_arrives_and_late_reply_is_removed(
    make, serving, wait_reply, later, data_dir, eventually
) -> None:
    server, alice = make(SERVER), make(ALICE)
    calls: list[bytes] = []
    alice.serve(APP, EP, lambda r: calls.append(r.body) or b"late reply")
    future_id = server.send(ALICE, APP, EP, b"stop", later())
    server.forget(future_id)  # as the grid does right after sending a stop signal
    request = rpc_path(data_dir, SERVER, future_id, FileKind.REQUEST)
    assert request.exists()
    with serving(alice):
        eventually(lambda: not request.exists(), "the forgotten future's files to go")
    assert calls == [b"stop"]
    assert not request.with_suffix(".response").exists()


def test_partially_written_request_waits_for_the_rest(
    make, serving, later, data_dir, eventually
) -> None:
    alice = make(ALICE)
    calls: list[bytes] = []
    alice.serve(APP, EP, lambda r: calls.append(r.body) or b"got it")
    request_id = str(uuid.uuid4())
    rpc = RpcFile(
        kind=FileKind.REQUEST,
        format=WireFormat.NATIVE,
        id=request_id,
        sender=SERVER,
        recipient=ALICE,
        app=APP,
        endpoint=EP,
        created=time.time(),
        expires=later(),
        body=b"0123456789" * 1000,
    )
    content = b"".join(bytes(frame) for frame in encode_rpc_file(rpc))
    path = rpc_path(data_dir, SERVER, request_id, FileKind.REQUEST)
    path.parent.mkdir(parents=True, exist_ok=True)
    with serving(alice):
        with open(path, "wb") as handle:  # a non-atomic writer
            handle.write(content[:5000])
            handle.flush()
            time.sleep(0.5)  # the run loop sees (and skips) the partial file meanwhile
            handle.write(content[5000:])
        eventually(path.with_suffix(".response").exists, "the reply to the completed file")
    assert calls == [rpc.body]


def test_lifecycle(make, later) -> None:
    alice = make(ALICE)
    alice.stop()
    alice.run()  # a stop before run makes it return at once
    alice.close()
    alice.close()
    with pytest.raises(TransportError, match="closed"):
        alice.send(BOB, APP, EP, b"", later())
    with pytest.raises(InvalidAddressError):
        make(SERVER).send("../etc@x.org", APP, EP, b"", later())
    with pytest.raises(ValueError, match="NaN"):
        make(BOB).send(ALICE, APP, EP, b"", float("nan"))


def test_run_twice_is_an_error(make, serving) -> None:
    alice = make(ALICE)
    with serving(alice):
        deadline = time.monotonic() + 5
        while True:
            try:
                alice.run()
            except TransportError as exc:
                assert "already running" in str(exc)
                break
            assert time.monotonic() < deadline


def test_transports_share_one_watcher(make) -> None:
    first, second = make(ALICE), make(BOB)
    assert first._watcher is second._watcher and first._watcher.watching
    watcher = first._watcher
    first.close()
    assert watcher in FolderWatcher._registry.values()
    second.close()
    assert watcher not in FolderWatcher._registry.values()


def test_works_without_filesystem_events(
    make, serving, wait_reply, later, no_filesystem_events
) -> None:
    server, alice = make(SERVER, poll_interval=0.05), make(ALICE, poll_interval=0.05)
    assert not server._watcher.watching
    alice.serve(APP, EP, lambda r: b"polled")
    with serving(alice):
        assert wait_reply(server, server.send(ALICE, APP, EP, b"", later())).body == b"polled"


_IDLE_SERVER = """
import sys, time
from syft_flwr.testing.helpers import serving
from syft_flwr.transport import TransportSettings
from syft_flwr_syftbox import SyftBoxTransport

settings = TransportSettings(
    identity=sys.argv[2], options={"data_dir": sys.argv[1]}, poll_interval=1.0
)
transport = SyftBoxTransport(settings)
transport.serve(sys.argv[3], sys.argv[4], lambda request: b"")
with serving(transport):
    time.sleep(0.2)
    started = time.process_time()
    time.sleep(2.0)
    print(time.process_time() - started)
transport.close()
"""


def test_idle_transport_uses_no_cpu(data_dir) -> None:
    # In a process of its own: the CPU of this one counts every thread an earlier test (or a
    # test runner's worker) left behind, which says nothing about an idle transport.
    done = subprocess.run(
        [sys.executable, "-c", _IDLE_SERVER, str(data_dir), ALICE, APP, EP],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr
    used = float(done.stdout.strip().splitlines()[-1])
    assert used < 0.1, f"an idle transport used {used:.3f} s of CPU in 2 s"


def test_cleanup_removes_stale_files(make, serving, later, data_dir, eventually) -> None:
    alice = make(ALICE, cleanup_interval=0.1, stale_after=0.2)
    alice.serve(APP, EP, lambda r: b"x")
    folder = rpc_path(data_dir, SERVER, "x", FileKind.REQUEST).parent
    folder.mkdir(parents=True, exist_ok=True)
    orphan = folder / ".abc.request.syft.tmp.0123.tmp"
    orphan.write_bytes(b"half")
    garbage = folder / f"{uuid.uuid4()}.request"
    garbage.write_bytes(b"\x00not a request")
    old = time.time() - 10
    os.utime(orphan, (old, old))
    os.utime(garbage, (old, old))
    answered = plant_request(data_dir, SERVER, claimed=SERVER, body=b"", expires=time.time() + 0.3)
    with serving(alice):
        eventually(lambda: not orphan.exists(), "the orphaned temp file to go")
        eventually(lambda: not garbage.exists(), "the unreadable request to go")
        request = rpc_path(data_dir, SERVER, answered, FileKind.REQUEST)
        eventually(lambda: not request.exists(), "the served, expired request to go")


def test_sender_cleanup_of_expired_futures(make, data_dir, eventually) -> None:
    server = make(SERVER, cleanup_interval=0.1, stale_after=0.2)
    future_id = server.send(ALICE, APP, EP, b"x", time.time() + 0.1)
    request = rpc_path(data_dir, SERVER, future_id, FileKind.REQUEST)
    assert request.exists()
    eventually(lambda: not request.exists(), "the expired request to be swept")
    eventually(lambda: server._store.future(future_id) is None, "its future to be dropped")


def test_settings_errors_are_config_errors(data_dir) -> None:
    from syft_flwr.errors import ConfigError

    with pytest.raises(ConfigError, match="wire"):
        SyftBoxTransport(TransportSettings(ALICE, {"data_dir": str(data_dir), "wire": "grpc"}))
    with pytest.raises(InvalidAddressError):
        SyftBoxTransport(TransportSettings("not-an-email", {"data_dir": str(data_dir)}))
