"""Crash-safe workspace files: atomic replace, JSON documents and JSON-lines logs."""

from __future__ import annotations

import json
import os
import stat
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from syft_flwr import files
from syft_flwr.errors import WorkspaceError, WorkspaceIOError
from syft_flwr.files import (
    LineAppender,
    append_json_line,
    read_json,
    read_json_lines,
    write_atomic,
    write_json,
)


def _mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


# --- write_atomic ---------------------------------------------------------------------------


def test_write_atomic_writes_the_bytes(tmp_path: Path) -> None:
    target = tmp_path / "model.bin"
    write_atomic(target, b"\x00\x01payload\xff")
    assert target.read_bytes() == b"\x00\x01payload\xff"


@pytest.mark.parametrize(
    "data", [bytearray(b"from a bytearray"), memoryview(b"from a memoryview")], ids=type
)
def test_write_atomic_accepts_bytes_like_objects(tmp_path: Path, data: object) -> None:
    target = tmp_path / "f"
    write_atomic(target, data)  # type: ignore[arg-type]
    assert target.read_bytes() == bytes(data)  # type: ignore[call-overload]


def test_write_atomic_creates_missing_parent_folders(tmp_path: Path) -> None:
    target = tmp_path / "a" / "b" / "c.json"
    write_atomic(target, b"x")
    assert target.read_bytes() == b"x"


def test_write_atomic_file_is_readable_by_its_owner_only(tmp_path: Path) -> None:
    target = tmp_path / "secret"
    write_atomic(target, b"x")
    assert _mode(target) == 0o600


def test_write_atomic_replacement_is_also_0600(tmp_path: Path) -> None:
    target = tmp_path / "f"
    target.write_bytes(b"old")
    target.chmod(0o644)
    write_atomic(target, b"new")
    assert target.read_bytes() == b"new"
    assert _mode(target) == 0o600


def test_write_atomic_replaces_old_content_and_leaves_no_temp_files(tmp_path: Path) -> None:
    target = tmp_path / "f"
    write_atomic(target, b"first, and longer than the second")
    write_atomic(target, b"second")
    assert target.read_bytes() == b"second"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["f"]


def test_write_atomic_into_an_existing_folder_makes_no_folder_and_steps_over_leftovers(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The server writes several files a round into folders that exist: no mkdir for them. A
    temporary file an earlier process (with the same id) left behind is not reused."""
    target = tmp_path / "run.json"
    write_atomic(target, b"first")
    leftover = tmp_path / f".run.json.{os.getpid()}.{next(files._temp_serial) + 1}"
    leftover.write_bytes(b"left by a killed process")
    made: list[Path] = []
    mkdir = Path.mkdir

    def counting(self: Path, *args: object, **kwargs: object) -> None:
        made.append(self)
        mkdir(self, *args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(Path, "mkdir", counting)
    write_atomic(target, b"second")
    write_atomic(target, b"third")
    assert made == []
    assert target.read_bytes() == b"third"
    assert leftover.read_bytes() == b"left by a killed process"


def test_write_atomic_empty_data(tmp_path: Path) -> None:
    target = tmp_path / "f"
    target.write_bytes(b"old")
    write_atomic(target, b"")
    assert target.read_bytes() == b""


def test_failing_data_keeps_the_old_content_and_leaves_no_temp_file(tmp_path: Path) -> None:
    target = tmp_path / "f"
    write_atomic(target, b"old content")
    released = memoryview(b"never written")
    released.release()  # any use of its buffer now raises ValueError
    with pytest.raises(ValueError):
        write_atomic(target, released)
    assert target.read_bytes() == b"old content"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["f"]


def test_data_that_is_not_bytes_like_fails_without_creating_the_file(tmp_path: Path) -> None:
    target = tmp_path / "f"
    with pytest.raises(TypeError):
        write_atomic(target, "text, not bytes")  # type: ignore[arg-type]
    assert list(tmp_path.iterdir()) == []


def test_failure_after_the_write_keeps_the_old_content(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A crash between writing the temp file and renaming it must not touch the target."""
    target = tmp_path / "f"
    write_atomic(target, b"old content")

    def failing_fsync(fd: int) -> None:
        raise OSError("disk on fire")

    monkeypatch.setattr(os, "fsync", failing_fsync)
    with pytest.raises(WorkspaceIOError, match=f"cannot write {target}: disk on fire"):
        write_atomic(target, b"new content")
    assert target.read_bytes() == b"old content"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["f"]


def test_failure_of_the_rename_keeps_the_old_content(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    target = tmp_path / "f"
    write_atomic(target, b"old content")

    def failing_replace(src: object, dst: object) -> None:
        raise OSError("rename refused")

    monkeypatch.setattr(os, "replace", failing_replace)
    with pytest.raises(WorkspaceIOError, match="rename refused"):
        write_atomic(target, b"new content")
    assert target.read_bytes() == b"old content"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["f"]


@given(data=st.binary(max_size=4096))
def test_write_atomic_round_trips_any_bytes(
    tmp_path_factory: pytest.TempPathFactory, data: bytes
) -> None:
    target = tmp_path_factory.mktemp("atomic") / "f"
    write_atomic(target, data)
    assert target.read_bytes() == data


# --- write_json / read_json -----------------------------------------------------------------


def test_write_json_read_json_round_trip(tmp_path: Path) -> None:
    value = {"b": [1, 2.5, "three", None, True], "a": {"nested": {}}}
    path = tmp_path / "doc.json"
    write_json(path, value)
    assert read_json(path) == value
    assert _mode(path) == 0o600


def test_write_json_is_indented_sorted_and_ends_with_a_newline(tmp_path: Path) -> None:
    path = tmp_path / "doc.json"
    write_json(path, {"z": 1, "a": 2})
    text = path.read_text()
    assert text == json.dumps({"a": 2, "z": 1}, indent=2) + "\n"


def test_write_json_refuses_a_non_json_value_and_keeps_the_old_file(tmp_path: Path) -> None:
    path = tmp_path / "doc.json"
    write_json(path, {"ok": 1})
    with pytest.raises(TypeError):
        write_json(path, {"bad": object()})
    assert read_json(path) == {"ok": 1}
    assert sorted(p.name for p in tmp_path.iterdir()) == ["doc.json"]


def test_read_json_of_a_missing_file_names_it(tmp_path: Path) -> None:
    path = tmp_path / "nowhere.json"
    with pytest.raises(WorkspaceError, match="is missing") as info:
        read_json(path)
    assert str(path) in str(info.value)


@pytest.mark.parametrize(
    "content",
    [b"", b"{not json", b'{"a": 1', b"\xff\xfe\x00garbage"],
    ids=["empty", "broken", "truncated", "not-utf8"],
)
def test_read_json_of_a_damaged_file_names_it(tmp_path: Path, content: bytes) -> None:
    path = tmp_path / "damaged.json"
    path.write_bytes(content)
    with pytest.raises(WorkspaceError, match="unreadable") as info:
        read_json(path)
    assert str(path) in str(info.value)


def test_read_json_of_a_directory_is_a_workspace_error(tmp_path: Path) -> None:
    with pytest.raises(WorkspaceError) as info:
        read_json(tmp_path)
    assert str(tmp_path) in str(info.value)


json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers()
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(),
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=8), children, max_size=4)
    ),
    max_leaves=20,
)


@given(value=json_values)
def test_write_json_round_trips_any_json_value(
    tmp_path_factory: pytest.TempPathFactory, value: object
) -> None:
    path = tmp_path_factory.mktemp("json") / "doc.json"
    write_json(path, value)
    assert read_json(path) == value


# --- append_json_line / read_json_lines -----------------------------------------------------


def test_read_json_lines_of_a_missing_file_is_empty(tmp_path: Path) -> None:
    assert read_json_lines(tmp_path / "none.jsonl") == []


def test_append_json_line_appends_in_order(tmp_path: Path) -> None:
    path = tmp_path / "sub" / "log.jsonl"
    for i in range(3):
        append_json_line(path, {"round": i, "value": i / 2})
    assert read_json_lines(path) == [{"round": i, "value": i / 2} for i in range(3)]
    assert path.read_text().count("\n") == 3


def test_append_json_line_writes_one_compact_line_per_value(tmp_path: Path) -> None:
    path = tmp_path / "log.jsonl"
    append_json_line(path, {"text": "two\nlines", "b": 1})
    lines = path.read_text().splitlines()
    assert len(lines) == 1
    assert json.loads(lines[0]) == {"text": "two\nlines", "b": 1}


def test_append_json_line_stringifies_what_json_cannot_hold(tmp_path: Path) -> None:
    path = tmp_path / "log.jsonl"
    append_json_line(path, {"where": Path("/x/y")})
    assert read_json_lines(path) == [{"where": "/x/y"}]


def test_a_torn_last_line_is_skipped(tmp_path: Path) -> None:
    path = tmp_path / "log.jsonl"
    append_json_line(path, {"round": 1})
    append_json_line(path, {"round": 2})
    with path.open("a") as handle:
        handle.write('{"round": 3, "trai')  # the process died mid-append
    assert read_json_lines(path) == [{"round": 1}, {"round": 2}]


def test_a_line_appended_after_a_torn_line_is_kept(tmp_path: Path) -> None:
    """After a crash mid-append, the resumed run's next line must not be glued to the torn one."""
    path = tmp_path / "log.jsonl"
    append_json_line(path, {"round": 1})
    with path.open("a") as handle:
        handle.write('{"round": 2, "trai')
    append_json_line(path, {"round": 2})
    append_json_line(path, {"round": 3})
    assert read_json_lines(path) == [{"round": 1}, {"round": 2}, {"round": 3}]


def test_an_appender_opens_its_file_once_for_many_lines(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A run's events.jsonl gains several lines per message: one open, not one per line."""
    path = tmp_path / "events.jsonl"
    opened: list[str] = []
    real_open = os.open

    def counting(name: str | os.PathLike[str], *args: int) -> int:
        opened.append(os.fspath(name))
        return real_open(name, *args)

    monkeypatch.setattr(os, "open", counting)
    appender = LineAppender(path)
    for i in range(5):
        appender.append({"event": i})
    monkeypatch.setattr(os, "open", real_open)
    assert opened == [str(path)]
    assert read_json_lines(path) == [{"event": i} for i in range(5)]
    assert _mode(path) == 0o600
    appender.close()
    appender.close()  # idempotent
    appender.append({"event": 5})  # opens the file again
    appender.close()
    assert len(read_json_lines(path)) == 6


def test_an_appender_ends_a_torn_line_before_its_first(tmp_path: Path) -> None:
    """The file a killed server left: its last line torn, then a restarted one appends."""
    path = tmp_path / "events.jsonl"
    append_json_line(path, {"event": 1})
    with path.open("a") as handle:
        handle.write('{"event": 2, "da')
    appender = LineAppender(path)
    appender.append({"event": 2})
    appender.append({"event": 3})
    appender.close()
    assert read_json_lines(path) == [{"event": 1}, {"event": 2}, {"event": 3}]


def test_an_appender_that_cannot_write_raises_and_tries_again_later(tmp_path: Path) -> None:
    path = tmp_path / "no-folder"
    path.write_text("a file where the folder should be")
    appender = LineAppender(path / "events.jsonl")
    for _ in range(2):
        with pytest.raises(WorkspaceIOError, match=r"events\.jsonl"):
            appender.append({"event": 1})
    path.unlink()
    appender.append({"event": 1})
    appender.close()
    assert read_json_lines(path / "events.jsonl") == [{"event": 1}]


def test_garbage_and_blank_lines_are_skipped(tmp_path: Path) -> None:
    path = tmp_path / "log.jsonl"
    path.write_text('{"a": 1}\n\nnot json\n{"b": 2}\n')
    assert read_json_lines(path) == [{"a": 1}, {"b": 2}]


@given(values=st.lists(json_values, max_size=6))
def test_json_lines_round_trip(
    tmp_path_factory: pytest.TempPathFactory, values: list[object]
) -> None:
    path = tmp_path_factory.mktemp("jsonl") / "log.jsonl"
    for value in values:
        append_json_line(path, value)
    assert read_json_lines(path) == values


def test_fsync_dir_closes_its_descriptor(tmp_path: Path) -> None:
    before = len(os.listdir("/proc/self/fd")) if os.path.isdir("/proc/self/fd") else None
    for _ in range(20):
        write_atomic(tmp_path / "f", b"x")
    if before is not None:
        assert len(os.listdir("/proc/self/fd")) <= before
