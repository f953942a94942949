"""The one-call folder walk (``openat2``) gives exactly what the portable walk gives.

:meth:`SafeRoot.folder` tries :func:`~syft_flwr_syftbox.beneath.open_folder_beneath` first and
walks component by component only where it answers ``None``. These tests hold the fast path to
that: on random trees of folders, files, FIFOs and symlinks (inside, outside, dangling, to
themselves), every path reaches the same folder or fails the same way with and without it; an
existing folder is reached without the walk; and a machine without the call walks.
"""

from __future__ import annotations

import ctypes
import errno
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from syft_flwr.errors import UnsafeFileError
from syft_flwr_syftbox import beneath, safe_fs
from syft_flwr_syftbox.safe_fs import SafeRoot

NAMES = ("a", "b", "c")
KINDS = ("folder", "file", "fifo", "link-inside", "link-outside", "link-dangling", "link-self")

needs_openat2 = pytest.mark.skipif(
    not beneath.available(), reason="this kernel has no openat2(2); the walk is all there is"
)


def plant(root: Path, outside: Path, tree: list[tuple[tuple[str, ...], str]]) -> None:
    """Create each ``(path, kind)`` below ``root`` whose parent exists as a real folder."""
    for parts, kind in tree:
        path = root.joinpath(*parts)
        if not path.parent.is_dir() or path.parent.is_symlink() or os.path.lexists(path):
            continue
        if kind == "folder":
            path.mkdir()
        elif kind == "file":
            path.write_bytes(b"x")
        elif kind == "fifo":
            os.mkfifo(path)
        elif kind == "link-inside":
            path.symlink_to(root)
        elif kind == "link-outside":
            path.symlink_to(outside)
        elif kind == "link-dangling":
            path.symlink_to(root / "nowhere")
        else:
            path.symlink_to(path)


def outcome(root: SafeRoot, path: Path, *, create: bool) -> tuple[object, ...]:
    """What reaching ``path`` gives: the folder's identity, or the error's type and text."""
    try:
        with root.folder(path, create=create) as fd:
            found = os.fstat(fd)
            return ("folder", found.st_dev, found.st_ino)
    except (OSError, UnsafeFileError) as exc:
        return ("error", type(exc).__name__, str(exc))


def walk_only(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(safe_fs, "open_folder_beneath", lambda root_fd, parts: None)


paths = st.lists(st.sampled_from(NAMES), min_size=1, max_size=4).map(tuple)
trees = st.lists(st.tuples(paths, st.sampled_from(KINDS)), max_size=25)


@needs_openat2
@settings(max_examples=150, deadline=None)
@given(tree=trees, asked=st.lists(paths, min_size=1, max_size=8), create=st.booleans())
def test_every_path_reaches_the_same_folder_or_fails_the_same_way(
    tree: list[tuple[tuple[str, ...], str]], asked: list[tuple[str, ...]], create: bool
) -> None:
    with tempfile.TemporaryDirectory() as workdir:
        root, outside = Path(workdir, "root"), Path(workdir, "outside")
        root.mkdir()
        outside.mkdir()
        plant(root, outside, tree)
        safe = SafeRoot(root)
        for parts in asked:
            path = root.joinpath(*parts)
            fast = outcome(safe, path, create=create)
            with pytest.MonkeyPatch.context() as patch:
                walk_only(patch)
                walked = outcome(safe, path, create=create)
            assert fast == walked, parts
        assert not any(outside.iterdir()), "something was created outside the root"


@needs_openat2
def test_an_existing_folder_is_reached_without_the_walk(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    deep = tmp_path.joinpath("datasites", "do1@x.org", "app_data", "app", "rpc", "train")
    deep.mkdir(parents=True)

    def no_walk(*args: object) -> int:
        raise AssertionError("the component-by-component walk ran")

    monkeypatch.setattr(safe_fs, "_child_folder", no_walk)
    with SafeRoot(tmp_path).folder(deep) as fd:
        assert os.path.samestat(os.fstat(fd), deep.stat())


@pytest.fixture
def restored_binding(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    monkeypatch.setattr(beneath, "_usable", beneath._usable)
    monkeypatch.setattr(beneath, "_syscall", beneath._syscall)
    yield


def test_a_machine_without_openat2_walks(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, restored_binding: None
) -> None:
    def missing(*args: object) -> int:
        ctypes.set_errno(errno.ENOSYS)
        return -1

    monkeypatch.setattr(beneath, "_usable", True)
    monkeypatch.setattr(beneath, "_syscall", missing)
    (tmp_path / "a" / "b").mkdir(parents=True)
    (tmp_path / "a" / "link").symlink_to(tmp_path)
    safe = SafeRoot(tmp_path)
    with safe.folder(tmp_path / "a" / "b") as fd:
        assert os.path.samestat(os.fstat(fd), (tmp_path / "a" / "b").stat())
    assert not beneath.available()
    with pytest.raises(UnsafeFileError, match="symlink"), safe.folder(tmp_path / "a" / "link"):
        pass
    with safe.folder(tmp_path / "new" / "deeper", create=True):
        pass
    assert (tmp_path / "new" / "deeper").is_dir()


@needs_openat2
def test_a_refused_path_leaves_the_fast_path_on(tmp_path: Path, restored_binding: None) -> None:
    """ENOENT and ELOOP are answers about the path, not about the machine."""
    (tmp_path / "link").symlink_to(tmp_path)
    fd = os.open(tmp_path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        assert beneath.open_folder_beneath(fd, ["missing"]) is None
        assert beneath.open_folder_beneath(fd, ["link"]) is None
        assert beneath.available()
    finally:
        os.close(fd)
