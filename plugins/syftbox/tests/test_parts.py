"""Large bodies as parts plus a manifest: round trips, sync clients' order, checks, cleanup.

A native body larger than ``part_size`` travels as ``<id>.<kind>.<n>.part`` files and a
manifest (``<id>.<kind>``) written after them. These tests place files the way a sync client
delivers them (manifest first, each file in place, in halves) and check that a message is
read only when complete, exactly once, and that no part outlives its message. Where the
order of events matters, the transport is told of a file the way the watcher tells it
(:meth:`SyftBoxTransport.file_changed`), and a probe request served after it proves that it
has been looked at: the serving loop takes requests in arrival order.
"""

from __future__ import annotations

import hashlib
import io
import logging
import os
import time
import tracemalloc
import uuid
from collections.abc import Iterator
from itertools import pairwise
from pathlib import Path

import msgpack  # type: ignore[import-untyped]
import pytest

from syft_flwr.crypto.envelope import MAGIC as SEALED
from syft_flwr.errors import BodyTooLargeError, ConfigError, WireFormatError
from syft_flwr.transport import ReplyStatus, TransportSettings
from syft_flwr_syftbox import SyftBoxTransport, WireFormat
from syft_flwr_syftbox.atomic import write_atomic
from syft_flwr_syftbox.files import decode_rpc_file, encode_rpc_file, read_rpc_file
from syft_flwr_syftbox.layout import FileKind, Layout, RpcLocation
from syft_flwr_syftbox.native_file import MAX_PARTS
from syft_flwr_syftbox.options import DEFAULT_PART_SIZE
from syft_flwr_syftbox.parts import manifest_of, part_path
from syft_flwr_syftbox.rpcfile import Part, RpcFile
from syft_flwr_syftbox.safe_fs import SafeRoot
from syft_flwr_syftbox.watcher import FolderWatcher

APP, EP = "flwr/demo", "messages"
SERVER, ALICE = "server@test.org", "alice@test.org"
PART = 64 * 1024
"""The part size of these tests: a ~1 MiB body is 16 parts or so."""
BIG = 16 * PART + 100
"""A body of 17 parts, the last one short."""
HOSTILE_SIZE = 200 * 2**20
"""A sparse 200 MiB file: nothing on disk, 200 MiB for a reader that reads it."""
PEAK_BOUND = 10 * 2**20

pytestmark = pytest.mark.filterwarnings("error::pytest.PytestUnhandledThreadExceptionWarning")


# -- helpers ------------------------------------------------------------------------------


def sender_dir(data_dir: Path) -> Path:
    """The server's sender folder at alice's endpoint."""
    return Layout(data_dir / "datasites").sender_dir(ALICE, APP, EP, SERVER)


def location(request_id: str, kind: FileKind = FileKind.REQUEST) -> RpcLocation:
    return RpcLocation(ALICE, APP, EP, SERVER, request_id, kind)


def chunks(body: bytes) -> list[bytes]:
    return [body[start : start + PART] for start in range(0, len(body), PART)]


def declared(pieces: list[bytes]) -> tuple[Part, ...]:
    return tuple(Part(len(piece), hashlib.sha256(piece).hexdigest()) for piece in pieces)


def manifest(
    kind: FileKind, request_id: str, parts: tuple[Part, ...], *, expires: float, sender: str
) -> bytes:
    """A native manifest's bytes, as the documented format lays it out."""
    rpc = RpcFile(
        kind=kind,
        format=WireFormat.NATIVE,
        id=request_id,
        sender=sender,
        recipient=ALICE,
        app=APP,
        endpoint=EP,
        created=time.time(),
        expires=expires,
        parts=parts,
    )
    return b"".join(bytes(frame) for frame in encode_rpc_file(rpc))


def large_message(
    data_dir: Path,
    body: bytes,
    *,
    expires: float,
    kind: FileKind = FileKind.REQUEST,
    request_id: str | None = None,
    sender: str = SERVER,
) -> tuple[str, dict[Path, bytes]]:
    """A large message's files as a writer makes them, in order (parts, then the manifest),
    named as documented: ``<id>.<kind>.<n>.part`` beside ``<id>.<kind>``."""
    request_id = request_id or str(uuid.uuid4())
    folder = sender_dir(data_dir)
    pieces = chunks(body)
    suffix = kind.value.lstrip(".")
    files = {folder / f"{request_id}.{suffix}.{n}.part": piece for n, piece in enumerate(pieces)}
    head = manifest(kind, request_id, declared(pieces), expires=expires, sender=sender)
    files[folder / f"{request_id}{kind.value}"] = head
    return request_id, files


def plant(files: dict[Path, bytes]) -> None:
    """Write each file atomically, in order."""
    for path, content in files.items():
        path.parent.mkdir(parents=True, exist_ok=True)
        write_atomic(path, [content], replace=True)


def sparse(path: Path, size: int) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "wb") as handle:
        handle.truncate(size)


def halves(content: bytes) -> Iterator[bytes]:
    yield content[: len(content) // 2]
    yield content[len(content) // 2 :]


def part_files(folder: Path) -> list[str]:
    return sorted(path.name for path in folder.glob("*.part"))


def barrier(alice: SyftBoxTransport, server: SyftBoxTransport, request_id: str, wait_reply):
    """Tell alice of the request, then prove with a probe served after it that she has looked
    at it (at least once, in its present state)."""
    manifest_path = Layout(alice.layout.datasites).file(location(request_id))
    alice.file_changed(location(request_id), manifest_path)
    probe = server.send(ALICE, APP, EP, b"probe", time.time() + 30)
    assert wait_reply(server, probe).body == b"ok"


def delivered(calls: list[bytes]) -> list[bytes]:
    return [body for body in calls if body != b"probe"]


# -- round trips --------------------------------------------------------------------------


def test_large_request_and_reply_travel_as_parts_written_before_their_manifest(
    make, serving, wait_reply, later, data_dir, monkeypatch
) -> None:
    written: list[str] = []
    original = SafeRoot.write_atomic

    def recording(self: SafeRoot, path: Path, frames, **options) -> None:
        original(self, path, frames, **options)
        written.append(path.name)

    monkeypatch.setattr(SafeRoot, "write_atomic", recording)
    server, alice = make(SERVER, part_size=PART), make(ALICE, part_size=PART)
    request_body, reply_body = os.urandom(BIG), os.urandom(BIG - 2 * PART)
    seen: list[bytes] = []
    alice.serve(APP, EP, lambda r: seen.append(r.body) or reply_body)
    with serving(alice):
        future_id = server.send(ALICE, APP, EP, request_body, later())
        reply = wait_reply(server, future_id)
    assert (reply.status, reply.body) == (ReplyStatus.OK, reply_body)
    assert seen == [request_body]
    folder = sender_dir(data_dir)
    sizes = {path.name: path.stat().st_size for path in folder.iterdir()}
    assert max(sizes.values()) <= PART, f"a file exceeds part_size: {sizes}"
    for kind, body in ((FileKind.REQUEST, request_body), (FileKind.RESPONSE, reply_body)):
        name = f"{future_id}{kind.value}"
        parts = [f"{name}.{n}.part" for n in range(len(chunks(body)))]
        assert sorted(n for n in sizes if n.startswith(name + ".")) == sorted(parts)
        order = [n for n in written if n == name or n in parts]
        assert order == [*parts, name], f"the {kind.name.lower()} was not written parts first"
        head = read_rpc_file(folder / name, kind, 2**30)  # the manifest alone: empty body
        assert head.body == b"" and head.parts == declared(chunks(body))
        assert b"".join((folder / part).read_bytes() for part in parts) == body


def test_frames_are_written_as_parts_without_being_joined(
    make, serving, wait_reply, later, data_dir
) -> None:
    """A body given as frames whose boundaries fall inside parts (and a part spanning several
    frames) lands as the same parts its joined bytes would, and sending never allocates a
    copy of it (``tracemalloc`` sees far less than the body's size)."""
    server, alice = make(SERVER, part_size=PART), make(ALICE, part_size=PART)
    data = os.urandom(32 * PART + 17)
    cuts = [0, 5, PART - 3, PART + 1, 2 * PART + PART // 2, 20 * PART + 7, len(data)]
    frames = [memoryview(data)[a:b] for a, b in pairwise(cuts)]
    tracemalloc.start()
    try:
        future_id = server.send(ALICE, APP, EP, frames, later())
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < len(data) // 4, f"sending {len(data)} bytes of frames peaked at {peak} bytes"
    folder = sender_dir(data_dir)
    head = read_rpc_file(folder / f"{future_id}.request", FileKind.REQUEST, 2**30)
    assert head.parts == declared(chunks(data))
    seen: list[bytes] = []
    alice.serve(APP, EP, lambda r: seen.append(r.body) or b"ok")
    with serving(alice):
        assert wait_reply(server, future_id).body == b"ok"
    assert seen == [data]


def test_a_body_of_exactly_part_size_is_one_file(make, serving, wait_reply, later, data_dir):
    server, alice = make(SERVER, part_size=PART), make(ALICE, part_size=PART)
    alice.serve(APP, EP, lambda r: r.body)
    body = os.urandom(PART)
    with serving(alice):
        assert wait_reply(server, server.send(ALICE, APP, EP, body, later())).body == body
    assert part_files(sender_dir(data_dir)) == []


def test_syft_rpc_wire_never_writes_parts(make, serving, wait_reply, later, data_dir) -> None:
    server = make(SERVER, wire="syft-rpc", part_size=PART)
    alice = make(ALICE, part_size=PART)
    request_body, reply_body = SEALED + os.urandom(BIG), SEALED + os.urandom(BIG)
    alice.serve(APP, EP, lambda r: reply_body if r.body == request_body else b"wrong")
    with serving(alice):
        future_id = server.send(ALICE, APP, EP, request_body, later())
        reply = wait_reply(server, future_id)
    assert reply.body == reply_body
    folder = sender_dir(data_dir)
    assert part_files(folder) == []
    for kind in FileKind:
        path = folder / f"{future_id}{kind.value}"
        assert path.read_bytes()[:1] == b"{" and path.stat().st_size > len(request_body)


def test_parts_lift_the_file_limit_not_the_body_limit(make) -> None:
    transport = make(SERVER, part_size=PART, max_body_size=2 * BIG)
    assert transport.capabilities.max_body_size == 2 * BIG
    with pytest.raises(BodyTooLargeError):
        transport.send(ALICE, APP, EP, b"x" * (2 * BIG + 1), time.time() + 60)


# -- a sync client's order ----------------------------------------------------------------


def test_a_manifest_that_arrives_first_is_served_once_its_parts_are_in(
    make, serving, wait_reply, later, data_dir
) -> None:
    server, alice = make(SERVER), make(ALICE, part_size=PART)
    calls: list[bytes] = []
    alice.serve(APP, EP, lambda r: calls.append(r.body) or b"ok")
    body = os.urandom(4 * PART + 10)
    request_id, files = large_message(data_dir, body, expires=later())
    *parts, head = files
    arrival = [head, *parts]  # a sync client sends the small file first
    folder = sender_dir(data_dir)
    folder.mkdir(parents=True)
    with serving(alice):
        for path in arrival:
            with open(path, "wb") as handle:  # in place, as SyftBox 0.4.0 writes downloads
                for step, half in enumerate(halves(files[path])):
                    handle.write(half)
                    handle.flush()
                    barrier(alice, server, request_id, wait_reply)
                    complete = path == arrival[-1] and step == 1
                    assert delivered(calls) == ([body] if complete else []), (path.name, step)
                    assert (folder / f"{request_id}.response").exists() == complete
        alice.sweep()  # a rescan, and the same file reported again, deliver nothing more
        barrier(alice, server, request_id, wait_reply)
    assert delivered(calls) == [body]
    reply = read_rpc_file(folder / f"{request_id}.response", FileKind.RESPONSE, 2**20)
    assert (reply.status, reply.body) == (ReplyStatus.OK, b"ok")


def test_a_changed_part_is_reported_as_a_change_of_its_manifest(data_dir, eventually) -> None:
    changes: list[tuple[RpcLocation, Path]] = []

    class Recorder:
        identity = ALICE
        sweep_interval = 3600.0

        def file_changed(self, where: RpcLocation, path: Path) -> None:
            changes.append((where, path))

        def sweep(self) -> None:
            pass

    datasites = (data_dir / "datasites").resolve()
    folder = Layout(datasites).sender_dir(ALICE, APP, EP, SERVER)
    folder.mkdir(parents=True)  # before attaching: watched from the start
    recorder = Recorder()
    watcher = FolderWatcher.attach(datasites, recorder)
    request_id = str(uuid.uuid4())
    try:
        (folder / f"{request_id}.request.3.part").write_bytes(b"x")
        (folder / f"{request_id}.request.03.part").write_bytes(b"x")  # not a part's name
        eventually(lambda: changes, "an event for the part")
    finally:
        watcher.detach(recorder)
    assert set(changes) == {(location(request_id), folder / f"{request_id}.request")}


def test_without_events_the_sweep_retries_a_manifest_waiting_for_its_parts(
    make, serving, wait_reply, later, data_dir, eventually, no_filesystem_events
) -> None:
    server = make(SERVER, poll_interval=0.05)
    alice = make(ALICE, part_size=PART, poll_interval=0.05)
    calls: list[bytes] = []
    alice.serve(APP, EP, lambda r: calls.append(r.body) or b"ok")
    body = os.urandom(3 * PART)
    request_id, files = large_message(data_dir, body, expires=later())
    last = next(iter(files))  # part 0 arrives last
    plant({path: content for path, content in files.items() if path != last})
    with serving(alice):
        barrier(alice, server, request_id, wait_reply)
        assert delivered(calls) == []
        plant({last: files[last]})
        eventually(lambda: delivered(calls), "the sweep to serve the completed request")
    assert delivered(calls) == [body]


# -- checks -------------------------------------------------------------------------------


@pytest.mark.parametrize("flaw", ["hash", "shorter", "larger", "missing"])
def test_a_part_that_is_not_as_declared_is_not_accepted_until_it_is(
    flaw: str, make, serving, wait_reply, later, data_dir, eventually
) -> None:
    # No sweep during the test: only the event on the repaired part can retry the request.
    server, alice = make(SERVER), make(ALICE, part_size=PART, poll_interval=3600.0)
    calls: list[bytes] = []
    alice.serve(APP, EP, lambda r: calls.append(r.body) or b"ok")
    body = os.urandom(3 * PART)
    request_id, files = large_message(data_dir, body, expires=later())
    second = sender_dir(data_dir) / f"{request_id}.request.1.part"
    good = files[second]
    files[second] = {
        "hash": bytes([good[0] ^ 1]) + good[1:],
        "shorter": good[:-1],
        "larger": good + b"!",
        "missing": b"",
    }[flaw]
    plant(files)
    if flaw == "missing":
        second.unlink()  # not arrived yet
    with serving(alice):
        barrier(alice, server, request_id, wait_reply)
        assert delivered(calls) == []
        assert not (sender_dir(data_dir) / f"{request_id}.response").exists()
        write_atomic(second, [good], replace=True)  # the part arrives, or is repaired
        eventually(lambda: delivered(calls), "the request once its part is right")
    assert delivered(calls) == [body]


def test_a_reply_is_not_yet_until_its_parts_are_in_and_expires_if_they_never_are(
    make, wait_reply, later, data_dir
) -> None:
    server = make(SERVER)
    future_id = server.send(ALICE, APP, EP, b"question", later())
    body = os.urandom(2 * PART + 1)
    _, files = large_message(
        data_dir, body, expires=later(), kind=FileKind.RESPONSE, request_id=future_id, sender=ALICE
    )
    *parts, head = files
    plant({head: files[head], parts[0]: files[parts[0]]})
    assert server.poll(future_id) is None  # parts 1 and 2 missing
    plant({parts[1]: files[parts[1]], parts[2]: b"\0" * len(files[parts[2]])})
    assert server.poll(future_id) is None  # part 2 not of its hash yet
    plant({parts[2]: files[parts[2]]})
    reply = server.poll(future_id)
    assert reply is not None and (reply.status, reply.body) == (ReplyStatus.OK, body)

    doomed = server.send(ALICE, APP, EP, b"question", time.time() + 0.5)
    _, files = large_message(
        data_dir, body, expires=later(), kind=FileKind.RESPONSE, request_id=doomed, sender=ALICE
    )
    *parts, head = files
    plant({head: files[head], parts[0]: files[parts[0]]})
    assert wait_reply(server, doomed).status is ReplyStatus.EXPIRED


@pytest.mark.parametrize("oversized", ["total", "part"])
def test_an_oversized_manifest_or_part_is_refused_without_reading_it(
    oversized: str, make, serving, wait_reply, later, data_dir, eventually, caplog
) -> None:
    server = make(SERVER)
    limit = 2**20 if oversized == "total" else 2**30
    alice = make(ALICE, part_size=PART, max_body_size=limit)
    calls: list[bytes] = []
    alice.serve(APP, EP, lambda r: calls.append(r.body) or b"ok")
    request_id = str(uuid.uuid4())
    folder = sender_dir(data_dir)
    if oversized == "total":  # two declared (and present) parts of 100 MiB each
        size = HOSTILE_SIZE // 2
        parts = (Part(size, "0" * 64), Part(size, "1" * 64))
    else:  # two parts of 64 KiB declared, the first one 200 MiB on disk
        size = HOSTILE_SIZE
        parts = (Part(PART, "0" * 64), Part(PART, "1" * 64))
    for n in range(2):
        sparse(folder / f"{request_id}.request.{n}.part", size)
    head = manifest(FileKind.REQUEST, request_id, parts, expires=later(), sender=SERVER)
    write_atomic(folder / f"{request_id}.request", [head])
    response = folder / f"{request_id}.response"
    caplog.set_level(logging.WARNING)
    tracemalloc.start()
    try:
        with serving(alice):
            barrier(alice, server, request_id, wait_reply)
            _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert delivered(calls) == []
    assert peak < PEAK_BOUND, f"refusing an oversized manifest peaked at {peak} bytes"
    if oversized == "total":
        refusal = read_rpc_file(response, FileKind.RESPONSE, 2**20)
        assert refusal.status is ReplyStatus.REJECTED and "max_body_size" in refusal.detail
    else:
        assert not response.exists()
        assert any("more than the 65536 declared" in r.getMessage() for r in caplog.records)


def test_an_expired_manifest_is_answered_without_its_parts(
    make, serving, later, data_dir, eventually
) -> None:
    alice = make(ALICE, part_size=PART)
    calls: list[bytes] = []
    alice.serve(APP, EP, lambda r: calls.append(r.body) or b"ok")
    _, files = large_message(data_dir, os.urandom(3 * PART), expires=time.time() - 1)
    *parts, head = files
    del files[parts[-1]]  # never arrives: the expiry answer does not wait for it
    plant(files)
    response = head.with_suffix(".response")
    with serving(alice):
        eventually(response.exists, "the expiry answer")
    assert read_rpc_file(response, FileKind.RESPONSE, 2**20).status is ReplyStatus.EXPIRED
    assert calls == []


# -- cleanup ------------------------------------------------------------------------------


def test_parts_go_with_their_future(make, serving, wait_reply, later, data_dir, eventually) -> None:
    server, alice = make(SERVER, part_size=PART), make(ALICE, part_size=PART)
    alice.serve(APP, EP, lambda r: r.body[::-1])
    with serving(alice):
        future_id = server.send(ALICE, APP, EP, os.urandom(BIG), later())
        wait_reply(server, future_id)
    folder = sender_dir(data_dir)
    assert len(part_files(folder)) == 2 * len(chunks(bytes(BIG)))
    server.forget(future_id)
    assert not [path for path in folder.iterdir() if not manifest_of(path)]  # files at once
    eventually(lambda: list(folder.iterdir()) == [], "the parts to go in the background")


def test_parts_go_when_their_future_expires(make, data_dir, eventually) -> None:
    server = make(SERVER, part_size=PART, cleanup_interval=0.1, stale_after=0.2)
    future_id = server.send(ALICE, APP, EP, os.urandom(BIG), time.time() + 0.1)
    folder = sender_dir(data_dir)
    assert part_files(folder)
    eventually(lambda: not any(folder.iterdir()), "the expired request and its parts to go")
    eventually(lambda: server._store.future(future_id) is None, "its future to be dropped")


def test_parts_of_an_expired_request_go_with_it_at_the_recipient(
    make, serving, data_dir, eventually
) -> None:
    # Expired long before stale_after, written just now: its parts are not orphans by age,
    # they go because their request goes.
    alice = make(ALICE, part_size=PART, cleanup_interval=0.1, stale_after=50.0)
    alice.serve(APP, EP, lambda r: b"ok")
    _, files = large_message(data_dir, os.urandom(3 * PART), expires=time.time() - 100)
    plant(files)
    folder = sender_dir(data_dir)
    with serving(alice):
        eventually(lambda: not any(folder.iterdir()), "the request, its reply and its parts")


def test_orphan_parts_are_removed_once_stale(make, serving, data_dir, eventually) -> None:
    alice = make(ALICE, part_size=PART, cleanup_interval=0.1, stale_after=60.0)
    alice.serve(APP, EP, lambda r: b"ok")
    folder = sender_dir(data_dir)
    folder.mkdir(parents=True)
    crashed, answering, recent = (str(uuid.uuid4()) for _ in range(3))
    old = [
        folder / f"{crashed}.request.0.part",
        folder / f"{crashed}.request.1.part",
        folder / f"{answering}.response.0.part",
    ]
    young = folder / f"{recent}.request.0.part"
    for path in [*old, young]:
        path.write_bytes(b"part")
    for path in old:
        os.utime(path, (time.time() - 120, time.time() - 120))
    with serving(alice):
        eventually(lambda: not any(path.exists() for path in old), "the stale orphan parts")
    assert young.exists(), "a part whose manifest may still come was removed"


@pytest.mark.parametrize("reply_size", [10, PART + PART // 2])
def test_a_foreign_reply_at_the_slot_leaves_no_stale_parts(
    reply_size: int, make, serving, wait_reply, later, data_dir
) -> None:
    server, alice = make(SERVER), make(ALICE, part_size=PART)
    reply_body = os.urandom(reply_size)
    alice.serve(APP, EP, lambda r: reply_body)
    future_id = server.send(ALICE, APP, EP, b"question", later())
    _, forged = large_message(
        data_dir,
        os.urandom(4 * PART),
        expires=later(),
        kind=FileKind.RESPONSE,
        request_id=future_id,
        sender=SERVER,  # not alice: a forged reply
    )
    plant(forged)
    folder = sender_dir(data_dir)
    (folder / f"{future_id}.response.40.part").write_bytes(b"stray")
    assert server.poll(future_id) is None
    with serving(alice):
        reply = wait_reply(server, future_id)
    assert reply.body == reply_body
    ours = len(chunks(reply_body)) if reply_size > PART else 0
    assert part_files(folder) == sorted(f"{future_id}.response.{n}.part" for n in range(ours))


# -- the format and the option ------------------------------------------------------------


def test_manifest_names() -> None:
    head = Path("/d/x/abc.request")
    assert part_path(head, 12) == Path("/d/x/abc.request.12.part")
    assert manifest_of(part_path(head, 12)) == head
    for name in ("abc.request.012.part", "abc.request.x.part", ".part", "abc.request.1"):
        assert manifest_of(Path("/d/x") / name) is None, name


def manifest_with(header_parts: object, *, body: bytes = b"") -> bytes:
    """A native request whose header's ``parts`` is ``header_parts``, raw."""
    good = manifest(FileKind.REQUEST, "r1", (Part(1, "0" * 64),), expires=1e10, sender=SERVER)
    header = msgpack.unpackb(good[18:])
    header["parts"] = header_parts
    packed = msgpack.packb(header, use_bin_type=True)
    prefix = b"SFRF" + bytes([1, 1]) + len(packed).to_bytes(4) + len(body).to_bytes(8)
    return prefix + packed + body


def decode(data: bytes, max_body_size: int = 2**30) -> RpcFile:
    handle = io.BytesIO(data)
    return decode_rpc_file(handle, len(data), "r1.request", FileKind.REQUEST, max_body_size)


def test_a_manifest_round_trips_and_a_malformed_parts_list_is_refused() -> None:
    digest = "ab" * 32
    assert decode(manifest_with([[5, digest], [3, digest]])).parts == (
        Part(5, digest),
        Part(3, digest),
    )
    for bad in (
        "x",
        [],
        [[5]],
        [[0, digest]],
        [[True, digest]],
        [[-1, digest]],
        [[5, digest.upper()]],
        [[5, digest[:-1]]],
        [[5, digest]] * (MAX_PARTS + 1),
    ):
        with pytest.raises(WireFormatError, match="part"):
            decode(manifest_with(bad))
    with pytest.raises(WireFormatError, match="body"):
        decode(manifest_with([[5, digest]], body=b"hello"))
    with pytest.raises(BodyTooLargeError, match="in 2 parts"):
        decode(manifest_with([[5, digest], [6, digest]]), max_body_size=10)


def test_part_size_option(data_dir) -> None:
    def options(**table: object) -> SyftBoxTransport:
        settings = TransportSettings(ALICE, {"data_dir": str(data_dir), **table})
        transport = SyftBoxTransport(settings)
        transport.close()
        return transport

    assert options().options.part_size == DEFAULT_PART_SIZE == 4 * 2**20
    assert options(part_size=PART).options.part_size == PART
    for bad in (0, -1, True, "4MB", 1.5):
        with pytest.raises(ConfigError, match="part_size"):
            options(part_size=bad)
    with pytest.raises(ConfigError, match="part_size = 1024 is too small"):
        options(part_size=1024, max_body_size=2**30)
