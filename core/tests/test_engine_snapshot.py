"""State snapshots: committing a round's model and history, loading them back, and the checks."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from flwr.app import Array, ArrayRecord
from hypothesis import given
from hypothesis import strategies as st

from syft_flwr.errors import WireFormatError, WorkspaceError, WorkspaceIOError
from syft_flwr.server import snapshot as snapshot_module
from syft_flwr.server.snapshot import (
    SNAPSHOT_VERSION,
    RunSnapshot,
    SnapshotStore,
    decode_model,
    encode_model,
    from_json_value,
    to_json_value,
)
from syft_flwr.server.workspace import RunInfo, RunWorkspace, Workspace


def make_run(tmp_path: Path, run_id: int = 7) -> RunWorkspace:
    info = RunInfo(run_id=run_id, app_name="demo", datasites=("a@x.org",), transport="memory")
    return Workspace(tmp_path / "ws").create_run(info)


def make_model(seed: int = 0) -> ArrayRecord:
    rng = np.random.default_rng(seed)
    return ArrayRecord(
        {
            "dense.weight": Array(rng.standard_normal((3, 4)).astype(np.float32)),
            "dense.bias": Array(rng.standard_normal(4)),
            "counts": Array(np.arange(5, dtype=np.int64)),
            "scalar": Array(np.array(2.5, dtype=np.float16)),
        }
    )


def assert_same_model(got: ArrayRecord, expected: ArrayRecord) -> None:
    assert list(got.keys()) == list(expected.keys())
    for key in expected:
        a, b = got[key].numpy(), expected[key].numpy()
        assert a.dtype == b.dtype, key
        assert a.shape == b.shape, key
        assert np.array_equal(a, b), key


HISTORY = {"train": {"1": {"loss": 0.5}}, "blob": {"$bytes": "00ff"}}


# --- save / load / model --------------------------------------------------------------------


def test_nothing_committed_loads_none(tmp_path: Path) -> None:
    store = SnapshotStore(make_run(tmp_path))
    assert store.load() is None
    assert not store.run.final_model_file.exists()


def test_save_load_model_round_trip(tmp_path: Path) -> None:
    run = make_run(tmp_path)
    store = SnapshotStore(run)
    model = make_model()
    saved = store.save(3, 10, "message", model, HISTORY)
    assert saved.run_id == 7 and saved.round == 3 and saved.num_rounds == 10
    assert saved.style == "message" and saved.history == HISTORY
    assert saved.model_file == "model-3.sfwm"
    assert saved.complete is False and saved.created_at > 0
    assert saved.metrics == ({"round": 3},)
    assert (run.state_dir / "model-3.sfwm").is_file()

    loaded = store.load()
    assert loaded == saved
    assert_same_model(store.model(loaded), model)


def test_a_fresh_store_on_the_same_run_sees_the_snapshot(tmp_path: Path) -> None:
    """What a restarted server process does: a new store object on the same folder."""
    run = make_run(tmp_path)
    model = make_model(1)
    SnapshotStore(run).save(2, 4, "legacy", model, {})
    again = SnapshotStore(RunWorkspace(run.path))
    loaded = again.load()
    assert loaded is not None and loaded.round == 2 and loaded.style == "legacy"
    assert_same_model(again.model(loaded), model)


def test_snapshot_json_has_the_documented_fields(tmp_path: Path) -> None:
    run = make_run(tmp_path)
    SnapshotStore(run).save(0, 3, "message", make_model(), {"a": [1, 2]})
    value = json.loads(run.snapshot_file.read_text())
    assert value["version"] == SNAPSHOT_VERSION
    assert {k: value[k] for k in ("run_id", "round", "num_rounds", "style", "model_file")} == {
        "run_id": 7,
        "round": 0,
        "num_rounds": 3,
        "style": "message",
        "model_file": "model-0.sfwm",
    }
    assert value["history"] == {"a": [1, 2]} and value["complete"] is False


def test_pruning_keeps_only_the_committed_model(tmp_path: Path) -> None:
    """Older model files go after the commit (derived): a kill before that leaves them."""
    run = make_run(tmp_path)
    store = SnapshotStore(run)
    store.save(1, 3, "message", make_model(1), {})
    store.save(2, 3, "message", make_model(2), {})
    assert sorted(p.name for p in run.state_dir.glob("model-*.sfwm")) == [
        "model-1.sfwm",
        "model-2.sfwm",
    ]
    loaded = store.load()
    assert loaded is not None and loaded.round == 2
    store.prune_models(loaded)
    store.prune_models(loaded)  # idempotent
    assert sorted(p.name for p in run.state_dir.glob("model-*.sfwm")) == ["model-2.sfwm"]
    assert_same_model(store.model(loaded), make_model(2))


def test_saving_reads_no_earlier_snapshot_back(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The snapshot grows with every round (each round's metrics): a store starts each save
    from the snapshot it wrote, so a run reads it at most once, however many rounds."""
    run = make_run(tmp_path)
    store = SnapshotStore(run)
    reads: list[Path] = []
    read_json = snapshot_module.read_json

    def counting(path: Path) -> Any:
        reads.append(path)
        return read_json(path)

    monkeypatch.setattr(snapshot_module, "read_json", counting)
    for round_ in range(5):
        saved = store.save(round_, 5, "message", make_model(), {}, {"loss": float(round_)})
    assert reads == []
    assert [m["round"] for m in saved.metrics] == [0, 1, 2, 3, 4]
    assert SnapshotStore(RunWorkspace(run.path)).load() == saved


def test_a_store_that_loaded_the_snapshot_saves_on_from_it(tmp_path: Path) -> None:
    """A restarted server's store: one load, then saves carry the earlier rounds' metrics."""
    run = make_run(tmp_path)
    SnapshotStore(run).save(0, 3, "message", make_model(), {}, {"loss": 1.0})
    again = SnapshotStore(RunWorkspace(run.path))
    assert again.load() is not None
    saved = again.save(1, 3, "message", make_model(), {}, {"loss": 0.5})
    assert saved.metrics == ({"round": 0, "loss": 1.0}, {"round": 1, "loss": 0.5})


def test_a_later_prune_lists_no_folder_and_still_removes_every_older_model(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The first prune lists the state folder (a killed server may have left any model file);
    later ones remove what the store wrote since, without listing the folder again."""
    run = make_run(tmp_path)
    (run.state_dir / "model-9.sfwm").write_bytes(b"left by a kill")
    store = SnapshotStore(run)
    store.prune_models(store.save(1, 5, "message", make_model(), {}))
    listings: list[str] = []
    glob = Path.glob

    def counting(self: Path, pattern: str) -> Any:
        listings.append(pattern)
        return glob(self, pattern)

    monkeypatch.setattr(Path, "glob", counting)
    store.save(2, 5, "message", make_model(), {})  # committed, its prune killed
    store.prune_models(store.save(3, 5, "message", make_model(), {}))
    assert listings == []
    monkeypatch.setattr(Path, "glob", glob)
    assert sorted(p.name for p in run.state_dir.glob("model-*.sfwm")) == ["model-3.sfwm"]


def test_the_snapshot_carries_one_metrics_line_per_committed_round(tmp_path: Path) -> None:
    store = SnapshotStore(make_run(tmp_path))
    store.save(0, 3, "message", make_model(), {}, {"server": {"loss": 1.0}})
    store.save(1, 3, "message", make_model(), {}, {"train": {"loss": 0.9}})
    store.save(2, 3, "message", make_model(), {}, {"train": {"loss": 0.8}})
    again = store.save(2, 3, "message", make_model(), {}, {"train": {"loss": 0.7}})
    assert [m["round"] for m in again.metrics] == [0, 1, 2], "a recommitted round is added"
    assert again.metrics[-1]["train"] == {"loss": 0.7}
    loaded = store.load()
    assert loaded is not None and loaded.metrics == again.metrics


def test_saving_the_same_round_again_replaces_it(tmp_path: Path) -> None:
    run = make_run(tmp_path)
    store = SnapshotStore(run)
    store.save(1, 3, "message", make_model(1), {"v": 1})
    store.save(1, 3, "message", make_model(5), {"v": 2})
    loaded = store.load()
    assert loaded is not None and loaded.history == {"v": 2}
    assert_same_model(store.model(loaded), make_model(5))
    assert [p.name for p in run.state_dir.glob("model-*.sfwm")] == ["model-1.sfwm"]


def test_an_empty_model_round_trips(tmp_path: Path) -> None:
    store = SnapshotStore(make_run(tmp_path))
    snapshot = store.save(0, 1, "message", ArrayRecord(), {})
    assert len(store.model(snapshot)) == 0


def test_state_files_are_private(tmp_path: Path) -> None:
    run = make_run(tmp_path)
    SnapshotStore(run).save(1, 2, "message", make_model(), {})
    assert (run.snapshot_file.stat().st_mode & 0o777) == 0o600
    assert ((run.state_dir / "model-1.sfwm").stat().st_mode & 0o777) == 0o600


def test_encode_decode_model(tmp_path: Path) -> None:
    model = make_model(3)
    assert_same_model(decode_model(encode_model(model, run_id=1)), model)


# --- load errors ----------------------------------------------------------------------------


def _write_snapshot(run: RunWorkspace, **changes: Any) -> None:
    value = RunSnapshot(run.run_id, 1, 3, "message", {}, "model-1.sfwm").to_json()
    value.update(changes)
    run.snapshot_file.write_text(json.dumps(value))


def test_damaged_snapshot_json_is_a_workspace_error(tmp_path: Path) -> None:
    run = make_run(tmp_path)
    run.snapshot_file.write_text('{"version": 1, "run_')
    with pytest.raises(WorkspaceError, match=r"snapshot\.json"):
        SnapshotStore(run).load()


def test_a_snapshot_that_is_not_an_object_is_a_workspace_error(tmp_path: Path) -> None:
    run = make_run(tmp_path)
    run.snapshot_file.write_text("[1, 2, 3]")
    with pytest.raises(WorkspaceError, match="not a valid snapshot"):
        SnapshotStore(run).load()


@pytest.mark.parametrize("version", [None, 0, 2, "1"])
def test_a_snapshot_of_another_version_is_a_workspace_error(
    tmp_path: Path, version: object
) -> None:
    run = make_run(tmp_path)
    _write_snapshot(run, version=version)
    with pytest.raises(WorkspaceError, match="unsupported version"):
        SnapshotStore(run).load()


@pytest.mark.parametrize(
    "changes",
    [
        {"round": "three"},
        {"num_rounds": None},
        {"history": [1, 2]},
        {"created_at": "yesterday"},
        {"run_id": "seven"},
    ],
    ids=["round", "num_rounds", "history", "created_at", "run_id"],
)
def test_a_snapshot_with_a_bad_field_is_a_workspace_error(
    tmp_path: Path, changes: dict[str, Any]
) -> None:
    run = make_run(tmp_path)
    _write_snapshot(run, **changes)
    with pytest.raises(WorkspaceError, match="not a valid snapshot"):
        SnapshotStore(run).load()


@pytest.mark.parametrize("field", ["run_id", "round", "style", "history", "model_file"])
def test_a_snapshot_missing_a_field_is_a_workspace_error(tmp_path: Path, field: str) -> None:
    run = make_run(tmp_path)
    value = RunSnapshot(run.run_id, 1, 3, "message", {}, "model-1.sfwm").to_json()
    del value[field]
    run.snapshot_file.write_text(json.dumps(value))
    with pytest.raises(WorkspaceError, match="not a valid snapshot"):
        SnapshotStore(run).load()


def test_a_snapshot_of_another_run_is_a_workspace_error(tmp_path: Path) -> None:
    run = make_run(tmp_path, run_id=7)
    _write_snapshot(run, run_id=8)
    with pytest.raises(WorkspaceError, match="belongs to run 8, not 7"):
        SnapshotStore(run).load()


@pytest.mark.parametrize(
    "name", ["../../run.json", "/etc/passwd", "sub/model-1.sfwm", ".hidden", ".."]
)
def test_a_snapshot_naming_an_unsafe_model_file_is_refused(tmp_path: Path, name: str) -> None:
    run = make_run(tmp_path)
    _write_snapshot(run, model_file=name)
    with pytest.raises(WorkspaceError, match="unsafe model file"):
        SnapshotStore(run).load()


# --- model errors ---------------------------------------------------------------------------


def test_a_missing_model_file_is_a_workspace_error(tmp_path: Path) -> None:
    run = make_run(tmp_path)
    store = SnapshotStore(run)
    snapshot = store.save(1, 3, "message", make_model(), {})
    (run.state_dir / snapshot.model_file).unlink()
    with pytest.raises(WorkspaceError, match="unusable"):
        store.model(snapshot)


@pytest.mark.parametrize("damage", ["truncate", "garbage", "empty", "flip"])
def test_a_damaged_model_file_is_a_workspace_error(tmp_path: Path, damage: str) -> None:
    run = make_run(tmp_path)
    store = SnapshotStore(run)
    snapshot = store.save(1, 3, "message", make_model(), {})
    path = run.state_dir / snapshot.model_file
    data = path.read_bytes()
    if damage == "truncate":
        path.write_bytes(data[: len(data) // 2])
    elif damage == "garbage":
        path.write_bytes(b"definitely not a syft-flwr envelope" * 10)
    elif damage == "empty":
        path.write_bytes(b"")
    else:
        path.write_bytes(bytes([data[0] ^ 0xFF]) + data[1:])
    with pytest.raises(WorkspaceError, match="unusable") as info:
        store.model(snapshot)
    assert str(path) in str(info.value)


def test_a_valid_message_without_a_model_is_refused() -> None:
    from flwr.app import ConfigRecord, Metadata, RecordDict

    from syft_flwr.message_factory import message_with_metadata
    from syft_flwr.wire import encode_message

    metadata = Metadata(
        run_id=1,
        message_id="",
        src_node_id=0,
        dst_node_id=0,
        reply_to_message_id="",
        group_id="g",
        created_at=1.0,
        ttl=1.0,
        message_type="system",
    )
    message = message_with_metadata(metadata, content=RecordDict({"c": ConfigRecord({"a": 1})}))
    with pytest.raises(WireFormatError, match="no model"):
        decode_model(encode_message(message))


# --- the final model ------------------------------------------------------------------------


def test_the_final_model_is_the_committed_one(tmp_path: Path) -> None:
    run = make_run(tmp_path)
    store = SnapshotStore(run)
    model = make_model(4)
    saved = store.save(3, 3, "message", model, HISTORY)
    store.write_final_model(saved)
    store.write_final_model(saved)  # idempotent: a restart while finishing writes it again
    assert run.final_model_file.read_bytes() == (run.state_dir / saved.model_file).read_bytes()
    assert_same_model(decode_model(run.final_model_file.read_bytes()), model)


def test_the_final_model_of_a_missing_model_file_is_a_workspace_error(tmp_path: Path) -> None:
    run = make_run(tmp_path)
    store = SnapshotStore(run)
    snapshot = store.save(1, 1, "message", make_model(), {})
    (run.state_dir / snapshot.model_file).unlink()
    with pytest.raises(WorkspaceError, match="unusable"):
        store.write_final_model(snapshot)
    assert not run.final_model_file.exists()


# --- to_json_value / from_json_value --------------------------------------------------------


def test_to_json_value_tags_bytes_and_lists_tuples() -> None:
    value = {"b": b"\x00\xff", "t": (1, (2, 3)), 5: "int key"}
    assert to_json_value(value) == {
        "b": {"$bytes": "00ff"},
        "t": [1, [2, 3]],
        "5": "int key",
    }


def test_from_json_value_untags_bytes() -> None:
    assert from_json_value({"x": [{"$bytes": ""}, {"$bytes": "6869"}]}) == {"x": [b"", b"hi"]}
    # a dict with other keys beside the tag is not bytes
    assert from_json_value({"$bytes": "00", "y": 1}) == {"$bytes": "00", "y": 1}


def _listify(value: Any) -> Any:
    """What the round trip is expected to give: tuples become lists."""
    if isinstance(value, dict):
        return {k: _listify(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_listify(v) for v in value]
    return value


_keys = st.text(max_size=10).filter(lambda key: key != "$bytes")
metric_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**63), max_value=2**63 - 1)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=20)
    | st.binary(max_size=20),
    lambda children: (
        st.lists(children, max_size=4)
        | st.lists(children, max_size=4).map(tuple)
        | st.dictionaries(_keys, children, max_size=4)
    ),
    max_leaves=25,
)


@given(value=metric_values)
def test_json_value_round_trip_through_json(value: Any) -> None:
    encoded = json.dumps(to_json_value(value), allow_nan=False)
    assert from_json_value(json.loads(encoded)) == _listify(value)


@given(value=metric_values)
def test_json_value_round_trip_keeps_types(value: Any) -> None:
    back = from_json_value(json.loads(json.dumps(to_json_value(value))))

    def same(a: Any, b: Any) -> bool:
        if isinstance(b, (list, tuple)):
            return isinstance(a, list) and len(a) == len(b) and all(map(same, a, b))
        if isinstance(b, dict):
            return isinstance(a, dict) and a.keys() == b.keys() and all(same(a[k], b[k]) for k in b)
        return type(a) is type(b) and a == b

    assert same(back, value)


@given(history=st.dictionaries(_keys, metric_values, max_size=4))
def test_history_survives_a_snapshot(
    tmp_path_factory: pytest.TempPathFactory, history: Any
) -> None:
    run = make_run(tmp_path_factory.mktemp("snap"))
    store = SnapshotStore(run)
    store.save(1, 2, "legacy", ArrayRecord(), to_json_value(history))
    loaded = store.load()
    assert loaded is not None
    assert from_json_value(loaded.history) == _listify(history)


# --- the snapshot's text ----------------------------------------------------------------------


@given(
    rounds=st.lists(st.integers(min_value=0, max_value=12), min_size=1, max_size=12),
    reload_at=st.integers(min_value=0, max_value=12),
)
def test_the_snapshot_is_what_json_writes_for_the_committed_rounds(
    tmp_path_factory: pytest.TempPathFactory, rounds: list[int], reload_at: int
) -> None:
    """Joined from each round's line encoded once, the file is byte for byte what
    ``json.dumps(..., sort_keys=True)`` writes for the snapshot; a round committed again
    replaces its line and drops the later rounds'; a restarted store goes on from the file."""
    run = make_run(tmp_path_factory.mktemp("text"))
    store = SnapshotStore(run)
    want: dict[int, dict[str, Any]] = {}
    for step, round_ in enumerate(rounds):
        if step == reload_at:
            store = SnapshotStore(RunWorkspace(run.path))
        line = {"loss": 1.0 / (step + 1), "blob": {"$bytes": "00"}, "step": step}
        saved = store.save(round_, 12, "message", ArrayRecord(), {"step": [step]}, line)
        want = {r: m for r, m in want.items() if r < round_}
        want[round_] = {"round": round_, **line}
        text = run.snapshot_file.read_bytes()
        value = json.loads(text)
        assert text == (json.dumps(value, sort_keys=True) + "\n").encode()
        assert value == {**saved.to_json(), "metrics": [want[r] for r in sorted(want)]}
        assert saved.metrics == tuple(want[r] for r in sorted(want))


def test_a_failed_commit_leaves_the_next_save_on_the_committed_lines(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A round whose snapshot could not be written is not committed: the next save carries
    the committed rounds' lines, not that round's."""
    run = make_run(tmp_path)
    store = SnapshotStore(run)
    store.save(0, 3, "message", ArrayRecord(), {}, {"loss": 1.0})
    write_atomic = snapshot_module.write_atomic

    def full_disk(path: Path, data: bytes, *, fsync: bool = True) -> None:
        if path == run.snapshot_file:
            raise WorkspaceIOError(f"cannot write {path}: no space left")
        write_atomic(path, data, fsync=fsync)

    monkeypatch.setattr(snapshot_module, "write_atomic", full_disk)
    with pytest.raises(WorkspaceIOError):
        store.save(1, 3, "message", ArrayRecord(), {}, {"loss": 0.5})
    monkeypatch.setattr(snapshot_module, "write_atomic", write_atomic)
    saved = store.save(2, 3, "message", ArrayRecord(), {}, {"loss": 0.25})
    assert saved.metrics == ({"round": 0, "loss": 1.0}, {"round": 2, "loss": 0.25})
    loaded = SnapshotStore(RunWorkspace(run.path)).load()
    assert loaded is not None and loaded.metrics == saved.metrics
