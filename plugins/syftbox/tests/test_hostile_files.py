"""Hostile files: what a peer, or a buggy sync client, can place in the synced folder.

Every SyftBox user can write its own sender folder in every other datasite, and sync clients
deliver files late, partially written, reordered or twice. Each test places one such object
where a transport looks (a request slot, a sender folder, a reply slot), against a real
transport serving in a thread, and then proves three things: the transport did not follow,
block on, or write through it; it said so once; and it still serves a normal request.

Events are reported to the transport the way the folder watcher reports them
(:meth:`SyftBoxTransport.file_changed`), so what is served first is deterministic rather than
a race with inotify.
"""

from __future__ import annotations

import json
import logging
import os
import socket
import struct
import time
import tracemalloc
import uuid
from collections.abc import Callable
from pathlib import Path

import pytest

from syft_flwr.errors import RequestRefusedError, TransportError, UnsafeFileError
from syft_flwr.transport import ReplyStatus, Request, RequestHead
from syft_flwr.wire import MAGIC as ENVELOPE_MAGIC
from syft_flwr_syftbox import SyftBoxTransport, WireFormat
from syft_flwr_syftbox.atomic import write_atomic, write_atomic_at
from syft_flwr_syftbox.files import encode_rpc_file, read_rpc_file
from syft_flwr_syftbox.keydocs import did_path
from syft_flwr_syftbox.layout import FileKind, Layout, RpcLocation
from syft_flwr_syftbox.rpcfile import RpcFile
from syft_flwr_syftbox.safe_fs import FirstTime, SafeRoot, open_regular

APP, EP = "flwr/demo", "messages"
SERVER, ALICE, MALLORY = "server@test.org", "alice@test.org", "mallory@test.org"
HOSTILE_SIZE = 200 * 2**20
"""A 200 MiB sparse file: nothing on disk, but a reader that reads it allocates 200 MiB."""
PEAK_BOUND = 10 * 2**20
"""The traced peak allowed while serving a hostile file: far below :data:`HOSTILE_SIZE`."""
NATIVE_PREFIX = struct.Struct(">4sBBIQ")  # as native_file documents it

pytestmark = pytest.mark.filterwarnings("error::pytest.PytestUnhandledThreadExceptionWarning")

Plant = Callable[[Path, Path], None]


# -- helpers ------------------------------------------------------------------------------


def rpc_path(data_dir: Path, sender: str, request_id: str, kind: FileKind) -> Path:
    location = RpcLocation(ALICE, APP, EP, sender, request_id, kind)
    return Layout(data_dir / "datasites").file(location)


def rpc_file(
    kind: FileKind,
    sender: str,
    request_id: str,
    *,
    body: bytes = b"",
    wire: WireFormat = WireFormat.NATIVE,
) -> RpcFile:
    return RpcFile(
        kind=kind,
        format=wire,
        id=request_id,
        sender=sender,
        recipient=ALICE,
        app=APP,
        endpoint=EP,
        created=time.time(),
        expires=time.time() + 60,
        body=body,
    )


def plant(path: Path, rpc: RpcFile) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    write_atomic(path, encode_rpc_file(rpc))


def report(transport: SyftBoxTransport, path: Path) -> None:
    """What the folder watcher does when ``path`` appears."""
    location = transport.layout.parse(path)
    assert location is not None, f"{path} is not an RPC path"
    transport.file_changed(location, path)


def still_serves(server: SyftBoxTransport, wait_reply, later) -> None:
    reply = wait_reply(server, server.send(ALICE, APP, EP, b"normal", later()))
    assert (reply.status, reply.body) == (ReplyStatus.OK, b"ok"), "serving stopped"


def warnings_about(caplog: pytest.LogCaptureFixture, text: str) -> list[str]:
    return [
        record.getMessage()
        for record in caplog.records
        if record.levelno >= logging.WARNING and text in record.getMessage()
    ]


def sparse_request(path: Path, sender: str, request_id: str, wire: WireFormat) -> None:
    """A :data:`HOSTILE_SIZE` request file that costs no disk: a well-formed start, then a hole.

    The native one declares a body that fills the file exactly (so only its size can refuse
    it); the syft-rpc one starts like JSON.
    """
    if wire is WireFormat.NATIVE:
        head = bytes(encode_rpc_file(rpc_file(FileKind.REQUEST, sender, request_id))[0])
        magic, version, kind, header_length, _ = NATIVE_PREFIX.unpack_from(head)
        body_length = HOSTILE_SIZE - len(head)
        start = NATIVE_PREFIX.pack(magic, version, kind, header_length, body_length)
        start += head[NATIVE_PREFIX.size :]
    else:
        start = json.dumps({"id": request_id, "sender": sender, "body": ""})[:-2].encode()
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "wb") as handle:
        handle.write(start)
        handle.truncate(HOSTILE_SIZE)


# -- objects named like a request ---------------------------------------------------------


def symlink_to_a_folder(path: Path, outside: Path) -> None:
    (outside / "folder").mkdir()
    os.symlink(outside / "folder", path)


def symlink_loop(path: Path, outside: Path) -> None:
    os.symlink(path.name, path)


def fifo(path: Path, outside: Path) -> None:
    os.mkfifo(path)


def replaced_by_a_folder(path: Path, outside: Path) -> None:
    plant(path, rpc_file(FileKind.REQUEST, MALLORY, path.stem, body=b"replaced"))
    path.unlink()
    path.mkdir()
    (path / "inside").write_bytes(b"x")


def symlink_to_a_file_outside(path: Path, outside: Path) -> None:
    """A symlink to a "passwd" that is a valid request: following it would deliver it."""
    passwd = outside / "passwd"
    plant(passwd, rpc_file(FileKind.REQUEST, MALLORY, path.stem, body=b"root:x:0:0"))
    os.symlink(passwd, path)


@pytest.mark.parametrize(
    "hostile",
    [symlink_to_a_folder, symlink_loop, fifo, replaced_by_a_folder, symlink_to_a_file_outside],
)
def test_an_object_named_like_a_request_is_skipped_once(
    hostile: Plant, make, serving, wait_reply, later, data_dir, tmp_path, caplog
) -> None:
    server, alice = make(SERVER), make(ALICE)
    delivered: list[bytes] = []
    alice.serve(APP, EP, lambda r: delivered.append(r.body) or b"ok")
    path = rpc_path(data_dir, MALLORY, str(uuid.uuid4()), FileKind.REQUEST)
    path.parent.mkdir(parents=True)
    outside = tmp_path / "outside"
    outside.mkdir()
    with caplog.at_level(logging.WARNING):
        # planted and queued (as the watcher does) before serving starts: a file replaced by
        # a folder after it was queued is then met as the folder, never read as a request
        hostile(path, outside)
        report(alice, path)
    with caplog.at_level(logging.WARNING), serving(alice) as thread:
        still_serves(server, wait_reply, later)
        alice.sweep()  # sweeps list the folder again: no second warning
        alice.sweep()
        assert thread.is_alive()
    assert delivered == [b"normal"], "a hostile object reached the handler"
    assert len(warnings_about(caplog, str(path))) == 1, caplog.text
    assert not os.path.lexists(path.with_suffix(".response")), "a hostile object was answered"


def test_a_symlinked_sender_folder_is_neither_read_nor_written_through(
    make, serving, wait_reply, later, data_dir, tmp_path, caplog
) -> None:
    server, alice = make(SERVER), make(ALICE)
    delivered: list[bytes] = []
    alice.serve(APP, EP, lambda r: delivered.append(r.body) or b"ok")
    request_id = str(uuid.uuid4())
    outside = tmp_path / "outside"
    plant(outside / f"{request_id}.request", rpc_file(FileKind.REQUEST, MALLORY, request_id))
    folder = rpc_path(data_dir, MALLORY, request_id, FileKind.REQUEST).parent
    folder.parent.mkdir(parents=True, exist_ok=True)
    os.symlink(outside, folder)
    with caplog.at_level(logging.WARNING), serving(alice) as thread:
        report(alice, folder / f"{request_id}.request")
        still_serves(server, wait_reply, later)
        alice.sweep()
        alice.sweep()
        assert thread.is_alive()
    assert os.listdir(outside) == [f"{request_id}.request"], "a reply was written outside"
    assert delivered == [b"normal"], "a request was read through a symlinked folder"
    assert len(warnings_about(caplog, str(folder))) == 1, caplog.text


def test_a_folder_swapped_for_a_symlink_after_it_was_opened_cannot_redirect_a_write(
    tmp_path: Path,
) -> None:
    root = tmp_path / "datasites"
    folder = root / ALICE / "sender"
    folder.mkdir(parents=True)
    outside = tmp_path / "outside"
    outside.mkdir()
    files = SafeRoot(root)
    with files.folder(folder) as fd:
        folder.rename(root / ALICE / "moved")  # swapped between the check and the write
        os.symlink(outside, folder)
        write_atomic_at(fd, "x.response", [b"reply"])
    assert (root / ALICE / "moved" / "x.response").read_bytes() == b"reply"
    with pytest.raises(UnsafeFileError, match="symlink"):
        files.write_atomic(folder / "y.response", [b"reply"])
    with pytest.raises(UnsafeFileError, match="symlink"):
        files.makedirs(folder / "deeper")
    assert os.listdir(outside) == [], "a write went through a symlinked folder"


def test_serve_never_writes_its_permission_file_through_a_symlinked_folder(
    make, data_dir, tmp_path
) -> None:
    alice = make(ALICE)
    outside = tmp_path / "outside"
    outside.mkdir()
    app_folder = data_dir / "datasites" / ALICE / "app_data" / "flwr"
    app_folder.mkdir(parents=True)
    os.symlink(outside, app_folder / "demo")
    with pytest.raises(TransportError, match="symlink"):
        alice.serve(APP, EP, lambda r: b"ok")
    assert os.listdir(outside) == [], "syft.pub.yaml was written through a symlinked folder"


def test_a_symlinked_key_document_is_no_key_document(make, data_dir, tmp_path, caplog) -> None:
    alice = make(ALICE)
    passwd = tmp_path / "passwd"
    passwd.write_text("root:x:0:0")
    path = did_path(alice, MALLORY)
    path.parent.mkdir(parents=True)
    os.symlink(passwd, path)
    with caplog.at_level(logging.WARNING):
        assert alice.fetch_key_document(MALLORY) is None
    assert warnings_about(caplog, str(path))


def unix_socket(path: Path, outside: Path) -> None:
    server = socket.socket(socket.AF_UNIX)
    server.bind(str(path))
    server.close()  # the name stays


@pytest.mark.parametrize(
    "hostile", [symlink_to_a_folder, symlink_loop, fifo, replaced_by_a_folder, unix_socket]
)
def test_only_regular_files_are_opened(hostile: Plant, tmp_path: Path, bounded) -> None:
    path = tmp_path / "x.request"
    hostile(path, tmp_path)

    def open_it() -> None:
        with open_regular(path):
            pass

    with pytest.raises(UnsafeFileError, match=str(path)):
        bounded(open_it)


def test_what_was_reported_is_remembered_within_a_bound() -> None:
    first_time = FirstTime(limit=2)
    assert first_time("a") and not first_time("a")
    assert first_time("b") and first_time("c")  # "a" is forgotten: the bound holds
    assert first_time("a")
    first_time.forget("c")
    assert first_time("c")


# -- foreign objects at a reply slot ------------------------------------------------------


def folder_at(slot: Path) -> None:
    slot.mkdir()
    (slot / "inside").write_bytes(b"x")


def symlink_loop_at(slot: Path) -> None:
    os.symlink(slot.name, slot)


def fifo_at(slot: Path) -> None:
    os.mkfifo(slot)


def empty_file_at(slot: Path) -> None:
    slot.write_bytes(b"")


def partial_reply_at(slot: Path) -> None:
    rpc = rpc_file(FileKind.RESPONSE, ALICE, slot.stem, body=b"half of a reply")
    slot.write_bytes(b"".join(bytes(frame) for frame in encode_rpc_file(rpc))[:-4])


def old_reply_at(slot: Path) -> None:
    """A reply to another request, replayed by a sync client into this slot."""
    plant(slot, rpc_file(FileKind.RESPONSE, ALICE, str(uuid.uuid4()), body=b"old"))


def forged_reply_at(slot: Path) -> None:
    plant(slot, rpc_file(FileKind.RESPONSE, MALLORY, slot.stem, body=b"forged"))


@pytest.mark.parametrize(
    ("foreign", "server_warns"),
    [
        (folder_at, True),
        (symlink_loop_at, True),
        (fifo_at, True),
        (empty_file_at, False),
        (partial_reply_at, False),
        (old_reply_at, True),
        (forged_reply_at, True),
    ],
)
def test_a_foreign_object_at_a_reply_slot_is_not_a_reply(
    foreign: Callable[[Path], None],
    server_warns: bool,
    make,
    serving,
    wait_reply,
    later,
    data_dir,
    bounded,
    caplog,
) -> None:
    server = make(SERVER, poll_interval=600.0)  # no sweep: only the watcher's event wakes it
    alice = make(ALICE)
    alice.serve(APP, EP, lambda r: b"real")
    future = server.send(ALICE, APP, EP, b"x", later())
    slot = rpc_path(data_dir, SERVER, future, FileKind.RESPONSE)
    with caplog.at_level(logging.DEBUG, logger="syft_flwr_syftbox"):
        foreign(slot)
        for _ in range(3):
            assert bounded(server.poll, future) is None, "a foreign object settled the future"
        server.sweep()  # a sweep wakes the waiter too: the slot is occupied
        assert bounded(server.poll, future) is None
        by_server = [m for m in warnings_about(caplog, future) if m.startswith(SERVER)]
        assert len(by_server) == (1 if server_warns else 0), caplog.text
        with serving(alice) as thread:
            reply = wait_reply(server, future)  # the real reply replaces the foreign object
            assert thread.is_alive()
    assert (reply.status, reply.body) == (ReplyStatus.OK, b"real")
    by_alice = [m for m in warnings_about(caplog, str(slot)) if m.startswith(ALICE)]
    assert len(by_alice) == 1, f"the replaced object was not reported once: {caplog.text}"


def test_a_foreign_object_at_a_reply_slot_lets_the_future_expire(
    make, wait_reply, later, data_dir
) -> None:
    server = make(SERVER)
    future = server.send(ALICE, APP, EP, b"x", later(0.3))
    folder_at(rpc_path(data_dir, SERVER, future, FileKind.RESPONSE))
    assert wait_reply(server, future).status is ReplyStatus.EXPIRED


# -- sizes and refusals -------------------------------------------------------------------


def test_a_screened_out_strangers_huge_request_is_refused_unread(
    make, serving, wait_reply, later, data_dir, eventually
) -> None:
    server, alice = make(SERVER), make(ALICE)  # the default max_body_size of 1 GiB
    heads: list[RequestHead] = []
    delivered: list[bytes] = []

    def screen(head: RequestHead) -> str | None:
        heads.append(head)
        return None if head.sender == SERVER else f"{head.sender} is not invited"

    alice.set_request_screen(screen)
    alice.serve(APP, EP, lambda r: delivered.append(r.body) or b"ok")
    assert alice.capabilities.screens_requests
    request_id = str(uuid.uuid4())
    path = rpc_path(data_dir, MALLORY, request_id, FileKind.REQUEST)
    sparse_request(path, MALLORY, request_id, WireFormat.NATIVE)
    response = path.with_suffix(".response")
    tracemalloc.start()
    try:
        with serving(alice):
            eventually(response.exists, "the refusal")
            still_serves(server, wait_reply, later)
            _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    refusal = read_rpc_file(response, FileKind.RESPONSE, 2**20)
    assert refusal.status is ReplyStatus.REJECTED
    assert refusal.detail == f"{MALLORY} is not invited"
    assert delivered == [b"normal"], "a screened-out request reached the handler"
    assert peak < PEAK_BOUND, f"serving a screened-out 200 MiB file peaked at {peak} bytes"
    head = next(h for h in heads if h.sender == MALLORY)
    assert (head.id, head.recipient, head.app, head.endpoint) == (request_id, ALICE, APP, EP)
    assert head.size == HOSTILE_SIZE


@pytest.mark.parametrize("wire", list(WireFormat))
def test_an_oversized_sparse_request_is_refused_unread(
    wire: WireFormat, make, serving, wait_reply, later, data_dir, eventually
) -> None:
    server, alice = make(SERVER), make(ALICE, max_body_size=256 * 1024)
    delivered: list[bytes] = []
    alice.serve(APP, EP, lambda r: delivered.append(r.body) or b"ok")
    request_id = str(uuid.uuid4())
    path = rpc_path(data_dir, SERVER, request_id, FileKind.REQUEST)  # a trusted sender
    sparse_request(path, SERVER, request_id, wire)
    response = path.with_suffix(".response")
    tracemalloc.start()
    try:
        with serving(alice):
            eventually(response.exists, "the refusal")
            still_serves(server, wait_reply, later)
            _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    refusal = read_rpc_file(response, FileKind.RESPONSE, 2**20)
    assert refusal.status is ReplyStatus.REJECTED and "max_body_size" in refusal.detail
    assert refusal.format is wire, "a refusal is written in the format of the request"
    if wire is WireFormat.SYFT_RPC:
        assert refusal.code == 413
    assert delivered == [b"normal"]
    assert peak < PEAK_BOUND, f"serving an oversized 200 MiB file peaked at {peak} bytes"


def test_a_refusing_handler_is_answered_403_with_its_reason_and_no_traceback(
    make, serving, wait_reply, later, data_dir, eventually, caplog
) -> None:
    server, alice = make(SERVER), make(ALICE)

    def handler(request: Request) -> bytes:
        if request.body.endswith(b"no"):
            raise RequestRefusedError(f"{request.sender} may not ask this")
        return b"ok"

    alice.serve(APP, EP, handler)
    planted = str(uuid.uuid4())  # a syft-rpc request, whose reply carries a status code
    body = ENVELOPE_MAGIC + b"no"
    path = rpc_path(data_dir, SERVER, planted, FileKind.REQUEST)
    plant(path, rpc_file(FileKind.REQUEST, SERVER, planted, body=body, wire=WireFormat.SYFT_RPC))
    with caplog.at_level(logging.INFO), serving(alice):
        refused = wait_reply(server, server.send(ALICE, APP, EP, b"no", later()))
        eventually(path.with_suffix(".response").exists, "the refusal of the syft-rpc request")
        still_serves(server, wait_reply, later)
    assert refused.status is ReplyStatus.REJECTED
    assert refused.detail == f"{SERVER} may not ask this"
    answer = read_rpc_file(path.with_suffix(".response"), FileKind.RESPONSE, 2**20)
    assert answer.status is ReplyStatus.REJECTED and answer.code == 403
    assert f"{SERVER} may not ask this" in answer.detail
    logged = [r for r in caplog.records if "may not ask this" in r.getMessage()]
    assert logged and all(r.levelno == logging.INFO and not r.exc_info for r in logged)
    assert not [r for r in caplog.records if r.levelno >= logging.ERROR], caplog.text


def test_a_screened_out_request_is_answered_403(
    make, serving, wait_reply, later, data_dir, eventually
) -> None:
    server, alice = make(SERVER), make(ALICE)
    alice.set_request_screen(lambda head: None if head.sender == SERVER else "not invited")
    alice.serve(APP, EP, lambda r: b"ok")
    request_id = str(uuid.uuid4())
    path = rpc_path(data_dir, MALLORY, request_id, FileKind.REQUEST)
    body = ENVELOPE_MAGIC + b"hello"
    plant(
        path, rpc_file(FileKind.REQUEST, MALLORY, request_id, body=body, wire=WireFormat.SYFT_RPC)
    )
    with serving(alice):
        eventually(path.with_suffix(".response").exists, "the refusal")
        still_serves(server, wait_reply, later)
    answer = read_rpc_file(path.with_suffix(".response"), FileKind.RESPONSE, 2**20)
    assert (answer.status, answer.code) == (ReplyStatus.REJECTED, 403)
    assert "not invited" in answer.detail
