"""Both file formats: exact round trips, partial files recognised, syft-rpc byte compatibility."""

from __future__ import annotations

import time
import uuid
from datetime import UTC, datetime
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from syft_flwr.errors import BodyTooLargeError, WireFormatError
from syft_flwr.transport import ReplyStatus
from syft_flwr_syftbox.files import encode_rpc_file, read_rpc_file
from syft_flwr_syftbox.layout import FileKind
from syft_flwr_syftbox.rpcfile import IncompleteFileError, RpcFile, WireFormat

LIMIT = 1 << 20


def sample(kind: FileKind, wire: WireFormat, body: bytes = b"\x00body\xff", **fields) -> RpcFile:
    values = dict(
        kind=kind,
        format=wire,
        id=str(uuid.uuid4()),
        sender="alice@x.org",
        recipient="bob@x.org",
        app="flwr/demo",
        endpoint="messages",
        created=1_700_000_000.25,
        expires=1_700_000_060.5,
        body=body,
    )
    values.update(fields)
    return RpcFile(**values)


def write(path: Path, rpc: RpcFile) -> bytes:
    data = b"".join(bytes(frame) for frame in encode_rpc_file(rpc))
    path.write_bytes(data)
    return data


@pytest.mark.parametrize("wire", list(WireFormat))
@pytest.mark.parametrize("kind", list(FileKind))
def test_round_trip(tmp_path: Path, wire: WireFormat, kind: FileKind) -> None:
    rpc = sample(kind, wire)
    write(tmp_path / "f", rpc)
    assert read_rpc_file(tmp_path / "f", kind, LIMIT) == rpc


@pytest.mark.parametrize("wire", list(WireFormat))
@pytest.mark.parametrize("status", [ReplyStatus.EXPIRED, ReplyStatus.REJECTED])
def test_failed_responses_carry_their_detail(tmp_path: Path, wire, status) -> None:
    code = 419 if status is ReplyStatus.EXPIRED else 403
    rpc = sample(FileKind.RESPONSE, wire, body=b"", status=status, detail="why", code=code)
    write(tmp_path / "f", rpc)
    got = read_rpc_file(tmp_path / "f", FileKind.RESPONSE, LIMIT)
    assert got.status is status and "why" in got.detail and got.body == b""


@settings(max_examples=50, deadline=None)
@given(body=st.binary(max_size=300), data=st.data())
def test_every_truncated_native_file_is_incomplete(tmp_path_factory, body: bytes, data) -> None:
    path = tmp_path_factory.mktemp("cut") / "f"
    full = write(path, sample(FileKind.REQUEST, WireFormat.NATIVE, body=body))
    cut = data.draw(st.integers(min_value=0, max_value=len(full) - 1))
    path.write_bytes(full[:cut])
    with pytest.raises(IncompleteFileError):
        read_rpc_file(path, FileKind.REQUEST, LIMIT)


@settings(max_examples=50, deadline=None)
@given(body=st.binary(max_size=300), data=st.data())
def test_truncated_syft_rpc_files_are_refused(tmp_path_factory, body: bytes, data) -> None:
    path = tmp_path_factory.mktemp("cut") / "f"
    full = write(path, sample(FileKind.REQUEST, WireFormat.SYFT_RPC, body=body))
    path.write_bytes(full[: data.draw(st.integers(min_value=0, max_value=len(full) - 1))])
    with pytest.raises(WireFormatError):
        read_rpc_file(path, FileKind.REQUEST, LIMIT)


def test_malformed_files(tmp_path: Path) -> None:
    path = tmp_path / "f"
    full = write(path, sample(FileKind.REQUEST, WireFormat.NATIVE))
    path.write_bytes(full + b"extra")
    with pytest.raises(WireFormatError, match="after its body"):
        read_rpc_file(path, FileKind.REQUEST, LIMIT)
    path.write_bytes(full)
    with pytest.raises(WireFormatError, match="not a response"):
        read_rpc_file(path, FileKind.RESPONSE, LIMIT)
    path.write_bytes(b"GIF89a")
    with pytest.raises(WireFormatError, match="neither"):
        read_rpc_file(path, FileKind.REQUEST, LIMIT)
    path.write_bytes(b'{"id": 1}')
    with pytest.raises(WireFormatError, match="needs the fields"):
        read_rpc_file(path, FileKind.REQUEST, LIMIT)


@pytest.mark.parametrize("wire", list(WireFormat))
def test_oversized_bodies_are_refused_before_reading(tmp_path: Path, wire) -> None:
    write(tmp_path / "f", sample(FileKind.REQUEST, wire, body=b"x" * 5000))
    with pytest.raises(BodyTooLargeError):
        read_rpc_file(tmp_path / "f", FileKind.REQUEST, 100)


def test_syft_rpc_bytes_are_identical_to_syft_rpcs_own(tmp_path: Path) -> None:
    protocol = pytest.importorskip("syft_rpc.protocol")
    from syft_core.url import SyftBoxURL

    created = datetime(2026, 1, 2, 3, 4, 5, 678901, tzinfo=UTC)
    expires = datetime(2026, 1, 2, 3, 19, 5, tzinfo=UTC)
    theirs = protocol.SyftRequest(
        id=uuid.uuid4(),
        sender="alice@x.org",
        url=SyftBoxURL("syft://bob@x.org/app_data/flwr/demo/rpc/messages"),
        body=b"\xfb\xff binary ?>",
        created=created,
        expires=expires,
    )
    ours = sample(
        FileKind.REQUEST,
        WireFormat.SYFT_RPC,
        body=theirs.body,
        id=str(theirs.id),
        created=created.timestamp(),
        expires=expires.timestamp(),
    )
    assert b"".join(bytes(f) for f in encode_rpc_file(ours)) == theirs.dumps().encode()
    theirs.dump(tmp_path / "r")
    assert read_rpc_file(tmp_path / "r", FileKind.REQUEST, LIMIT) == ours

    response = sample(
        FileKind.RESPONSE, WireFormat.SYFT_RPC, sender="bob@x.org", body=b"reply", id=str(theirs.id)
    )
    write(tmp_path / "s", response)
    loaded = protocol.SyftResponse.load(tmp_path / "s")
    assert (str(loaded.id), loaded.sender, loaded.body, loaded.status_code) == (
        str(theirs.id),
        "bob@x.org",
        b"reply",
        200,
    )


def test_syft_rpc_null_bodies_and_status_codes(tmp_path: Path) -> None:
    protocol = pytest.importorskip("syft_rpc.protocol")
    from syft_core.url import SyftBoxURL

    url = SyftBoxURL("syft://bob@x.org/app_data/flwr/demo/rpc/messages")
    for code, status in [
        (200, ReplyStatus.OK),
        (419, ReplyStatus.EXPIRED),
        (500, ReplyStatus.REJECTED),
    ]:
        body = None if code == 200 else b"Request expired"
        protocol.SyftResponse(sender="bob@x.org", url=url, body=body, status_code=code).dump(
            tmp_path / "r"
        )
        got = read_rpc_file(tmp_path / "r", FileKind.RESPONSE, LIMIT)
        assert got.status is status and got.body == b"" and got.code == code
        assert (got.recipient, got.app, got.endpoint) == ("bob@x.org", "flwr/demo", "messages")


def test_far_future_expiry_fits_in_iso_dates(tmp_path: Path) -> None:
    rpc = sample(FileKind.REQUEST, WireFormat.SYFT_RPC, expires=time.time() + 1e12)
    write(tmp_path / "f", rpc)
    assert read_rpc_file(tmp_path / "f", FileKind.REQUEST, LIMIT).expires > time.time() + 1e8
