"""Atomic publication: complete or absent, never partial; temp names every sync engine ignores."""

from __future__ import annotations

import errno
import fnmatch
import os
import threading
from pathlib import Path

import pytest

from syft_flwr_syftbox.atomic import is_temp_name, temp_name, write_atomic


def test_temp_names_match_every_syftbox_ignore_rule() -> None:
    name = temp_name("0c1d.request")
    # Go and Rust clients: "*.syft.tmp.*" and "*.tmp"; legacy Python client: "*.tmp".
    assert fnmatch.fnmatch(name, "*.syft.tmp.*") and fnmatch.fnmatch(name, "*.tmp")
    assert name.startswith(".") and not name.endswith((".request", ".response"))
    assert is_temp_name(name) and not is_temp_name("0c1d.request")
    assert temp_name("x") != temp_name("x")


def test_writes_frames_and_leaves_no_temp_file(tmp_path: Path) -> None:
    target = tmp_path / "a.request"
    frames = [b"head", bytearray(b"-"), memoryview(b"body" * 1000)[4:], b""]
    write_atomic(target, frames)
    assert target.read_bytes() == b"head-" + b"body" * 999
    assert os.listdir(tmp_path) == ["a.request"]


def test_many_frames_exceed_iov_max(tmp_path: Path) -> None:
    frames = [bytes([i % 256]) * 3 for i in range(5000)]
    write_atomic(tmp_path / "many", frames, fsync=False)
    assert (tmp_path / "many").read_bytes() == b"".join(frames)


def test_never_overwrites_unless_asked(tmp_path: Path) -> None:
    target = tmp_path / "a.response"
    write_atomic(target, [b"first"])
    with pytest.raises(FileExistsError):
        write_atomic(target, [b"second"])
    assert target.read_bytes() == b"first"
    write_atomic(target, [b"third"], replace=True)
    assert target.read_bytes() == b"third"
    assert os.listdir(tmp_path) == ["a.response"]


def test_falls_back_to_rename_without_hard_links(tmp_path: Path, monkeypatch) -> None:
    def no_links(*args: object, **kwargs: object) -> None:
        raise OSError(errno.EPERM, "hard links not supported")

    monkeypatch.setattr(os, "link", no_links)
    target = tmp_path / "a.request"
    write_atomic(target, [b"data"])
    assert target.read_bytes() == b"data"
    with pytest.raises(FileExistsError):
        write_atomic(target, [b"again"])
    assert os.listdir(tmp_path) == ["a.request"]


def test_failed_write_cleans_up(tmp_path: Path) -> None:
    with pytest.raises(OSError):
        write_atomic(tmp_path / "missing-folder" / "a.request", [b"x"])
    assert os.listdir(tmp_path) == []


def test_concurrent_reader_sees_complete_files_only(tmp_path: Path) -> None:
    content = bytes(range(256)) * 4096  # 1 MiB
    names = [tmp_path / f"{i}.request" for i in range(40)]
    torn: list[int] = []
    done = threading.Event()

    def read() -> None:
        while not done.is_set():
            for name in names:
                try:
                    data = name.read_bytes()
                except FileNotFoundError:
                    continue
                if data != content:
                    torn.append(len(data))

    reader = threading.Thread(target=read)
    reader.start()
    try:
        for name in names:
            write_atomic(name, [content[:1000], content[1000:]], fsync=False)
    finally:
        done.set()
        reader.join(10)
    assert not torn, f"a reader saw partial files of sizes {torn[:5]}"
