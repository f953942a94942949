"""A sealed model left in its file or its parts: read once, in chunks, as the core opens it,
written from one reused buffer; a part or a file changed under the reader is never opened."""

from __future__ import annotations

import os
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest

from syft_flwr.body_buffer import BodyBuffer
from syft_flwr.crypto import envelope
from syft_flwr.crypto.envelope import open_frames, parse_envelope, seal_stream
from syft_flwr.crypto.errors import DecryptionError
from syft_flwr.crypto.keys import IdentityKeys
from syft_flwr.testing.envelopes import header_fields
from syft_flwr.transport import IncompleteBodyError, ReceivedBody, join_body
from syft_flwr_syftbox import native_file
from syft_flwr_syftbox import parts as parts_module
from syft_flwr_syftbox import received as received_module
from syft_flwr_syftbox.layout import FileKind
from syft_flwr_syftbox.parts import PartChangedError, PartsBody, assemble, part_path, write_parts
from syft_flwr_syftbox.received import FileBody
from syft_flwr_syftbox.rpcfile import RpcFile, WireFormat
from syft_flwr_syftbox.safe_fs import SafeRoot

ALICE, BOB = IdentityKeys.generate("alice@example.org"), IdentityKeys.generate("bob@example.org")
PART = 8192
PLAINTEXT = os.urandom(5 * PART + 123)


@pytest.fixture(autouse=True)
def small_steps(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(envelope, "_STEP", 1000)
    monkeypatch.setattr(parts_module, "RELEASABLE_FROM", PART)


def stream() -> Any:
    return seal_stream(
        header_fields(ALICE, BOB), PLAINTEXT, ALICE.current.private, BOB.current.public
    )


def opened(body: ReceivedBody) -> bytes:
    frames = open_frames(parse_envelope(body), BOB.current.private, ALICE.current.public)
    return b"".join(frames)


@pytest.fixture(params=[None, "hasher"])
def hasher(request: pytest.FixtureRequest) -> Any:
    if request.param is None:
        yield None
        return
    with ThreadPoolExecutor(1) as executor:
        yield executor


def written(tmp_path: Path, hasher: Any) -> tuple[SafeRoot, Path, Any]:
    fs = SafeRoot(tmp_path)
    manifest = tmp_path / "m.request"
    listed = write_parts(fs, manifest, stream(), PART, fsync=False, hasher=hasher)
    return fs, manifest, listed


def test_a_sealed_model_in_parts_opens_as_it_is_read(tmp_path: Path, hasher: Any) -> None:
    fs, manifest, listed = written(tmp_path, hasher)
    body = assemble(fs, manifest, listed, hasher)
    assert isinstance(body, PartsBody)
    assert opened(body) == PLAINTEXT


def test_a_part_rewritten_after_the_check_is_never_opened(tmp_path: Path, hasher: Any) -> None:
    fs, manifest, listed = written(tmp_path, hasher)
    body = assemble(fs, manifest, listed, hasher)
    third = part_path(manifest, 2)
    third.write_bytes(bytes(byte ^ 1 for byte in third.read_bytes()))  # same size, in place
    with pytest.raises(PartChangedError, match="hash"):
        opened(body)  # type: ignore[arg-type]


def test_a_part_truncated_after_the_check_is_incomplete(tmp_path: Path, hasher: Any) -> None:
    fs, manifest, listed = written(tmp_path, hasher)
    body = assemble(fs, manifest, listed, hasher)
    os.truncate(part_path(manifest, 4), 10)
    with pytest.raises(IncompleteBodyError):
        opened(body)  # type: ignore[arg-type]


def test_parts_are_written_from_the_stream_byte_for_byte(tmp_path: Path, hasher: Any) -> None:
    sealed = stream()
    expected = join_body(stream())
    fs, manifest = SafeRoot(tmp_path), tmp_path / "m.request"
    listed = write_parts(fs, manifest, sealed, PART, fsync=False, hasher=hasher)
    data = b"".join(part_path(manifest, i).read_bytes() for i in range(len(listed)))
    assert len(data) == len(expected) == sum(part.size for part in listed)
    assert opened(_Bytes(data)) == PLAINTEXT


class _Bytes(ReceivedBody):
    def __init__(self, data: bytes) -> None:
        super().__init__(len(data))
        self.data, self.position = data, 0

    def _read(self, target: memoryview) -> int:
        count = min(len(target), len(self.data) - self.position)
        target[:count] = self.data[self.position : self.position + count]
        self.position += count
        return count


def test_a_large_plaintext_in_parts_is_handed_over_as_a_releasable_view(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Not sealed, it is read whole, into a BodyBuffer handed over as its view (never copied to
    make it bytes): a ReceivedData the core decodes as a buffer."""
    monkeypatch.setattr(received_module, "RELEASABLE_FROM", PART)
    fs, manifest = SafeRoot(tmp_path), tmp_path / "m.request"
    listed = write_parts(fs, manifest, PLAINTEXT, PART, fsync=False)
    body = assemble(fs, manifest, listed)
    assert isinstance(body, memoryview) and isinstance(body.obj, BodyBuffer)
    assert body == PLAINTEXT


def test_a_body_left_in_its_file_is_never_written_back() -> None:
    rpc = RpcFile(
        FileKind.REQUEST, WireFormat.NATIVE, "r1", "a@x.test", "b@x.test", "app", "ep", 0.0, 1.0,
        body=_Bytes(join_body(stream())),
    )  # fmt: skip
    with pytest.raises(TypeError, match="not written again"):
        native_file.encode(rpc)


def test_a_file_body_truncated_while_read_is_incomplete(tmp_path: Path) -> None:
    path = tmp_path / "body"
    path.write_bytes(b"head" + join_body(stream()))
    with path.open("rb") as handle:
        body = FileBody(handle, 4, path.stat().st_size - 4)
    assert body.head(4) == envelope.MAGIC
    os.truncate(path, 3 * PART)
    with pytest.raises(IncompleteBodyError):
        opened(body)


def test_a_file_body_rewritten_while_read_fails_authentication(tmp_path: Path) -> None:
    path = tmp_path / "body"
    path.write_bytes(join_body(stream()))
    with path.open("rb") as handle:
        body = FileBody(handle, 0, path.stat().st_size)
    with path.open("r+b") as handle:
        handle.seek(2 * PART)
        handle.write(b"\0" * 64)
    with pytest.raises(DecryptionError):
        opened(body)
