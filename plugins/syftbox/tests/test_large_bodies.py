"""Large bodies are written from their frames and read back once, never joined or copied."""

from __future__ import annotations

import os
import tracemalloc
from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

from syft_flwr.body_buffer import BodyBuffer
from syft_flwr_syftbox import native_file
from syft_flwr_syftbox.layout import FileKind
from syft_flwr_syftbox.parts import assemble, write_parts
from syft_flwr_syftbox.rpcfile import RpcFile, WireFormat
from syft_flwr_syftbox.safe_fs import SafeRoot

MIB = 2**20
SIZE = 32 * MIB
T = TypeVar("T")


def traced(run: Callable[[], T]) -> tuple[T, int]:
    """What ``run`` returns, and the peak of Python allocations while it ran."""
    tracemalloc.start()
    try:
        value = run()
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    return value, peak


def frames() -> list[bytes]:
    return [os.urandom(SIZE // 2), b"a frame boundary inside a part", os.urandom(SIZE // 2)]


def test_parts_are_written_from_frames_and_read_into_one_released_buffer(tmp_path: Path) -> None:
    fs = SafeRoot(tmp_path.resolve())
    manifest = tmp_path.resolve() / "a@x.org" / "id.request"
    body = frames()
    parts, written_peak = traced(lambda: write_parts(fs, manifest, body, 4 * MIB, fsync=False))
    read, read_peak = traced(lambda: assemble(fs, manifest, parts))
    assert written_peak < 0.05 * SIZE, f"writing held {written_peak / SIZE:.2f}x the body"
    assert read_peak < 0.05 * SIZE, f"reading held {read_peak / SIZE:.2f}x the body"
    assert isinstance(read, memoryview) and isinstance(read.obj, BodyBuffer)
    assert read == b"".join(body)


def test_a_large_native_file_is_read_into_one_released_buffer(tmp_path: Path) -> None:
    body = frames()
    rpc = RpcFile(
        FileKind.REQUEST, WireFormat.NATIVE, "id", "a@x.org", "b@x.org", "app", "ep", 1.0, 2.0, body
    )
    path = tmp_path / "id.request"
    with path.open("wb") as handle:
        handle.writelines(native_file.encode(rpc))
    size = path.stat().st_size

    def read() -> RpcFile:
        with path.open("rb") as handle:
            return native_file.decode(handle, size, FileKind.REQUEST, 2 * SIZE)

    decoded, peak = traced(read)
    assert peak < 0.05 * SIZE, f"reading held {peak / SIZE:.2f}x the body"
    assert isinstance(decoded.body, memoryview) and isinstance(decoded.body.obj, BodyBuffer)
    assert decoded.body == b"".join(body)


def test_a_small_body_stays_bytes(tmp_path: Path) -> None:
    fs = SafeRoot(tmp_path.resolve())
    manifest = tmp_path.resolve() / "a@x.org" / "id.request"
    parts = write_parts(fs, manifest, [b"x" * 1000], 300, fsync=False)
    assert assemble(fs, manifest, parts) == b"x" * 1000
    assert isinstance(assemble(fs, manifest, parts), bytes)
