"""The future journal: recording, claiming, stored replies and the crash-resume path."""

from __future__ import annotations

import stat
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from flwr.app import Array, ArrayRecord, Error, Message, Metadata, MetricRecord, RecordDict

from syft_flwr.errors import WorkspaceError
from syft_flwr.message_factory import message_with_metadata
from syft_flwr.server import journal as journal_module
from syft_flwr.server.journal import FutureJournal, JournalEntry
from syft_flwr.testing.strategies import canonical_message
from syft_flwr.wire import encode_message

SITE_A = "a@x.org"
SITE_B = "b@x.org"


@pytest.fixture
def journal(tmp_path: Path) -> Iterator[FutureJournal]:
    opened = FutureJournal(tmp_path / "state")
    yield opened
    opened.close()


def make_entry(message_id: str, **changes: Any) -> JournalEntry:
    fields: dict[str, Any] = {
        "message_id": message_id,
        "epoch": 1,
        "datasite": SITE_A,
        "message_type": "train",
        "group_id": "1",
        "future_id": f"future-{message_id}",
        "created_at": 1000.0,
        "ttl": 60.0,
        "expires_at": 1060.0,
        "envelope_id": b"\x00\x01" + message_id.encode(),
    }
    fields.update(changes)
    return JournalEntry(**fields)


def make_reply(reply_to: str = "m1", *, error: bool = False) -> Message:
    metadata = Metadata(
        run_id=7,
        message_id="reply" + reply_to,
        src_node_id=11,
        dst_node_id=1,
        reply_to_message_id=reply_to,
        group_id="1",
        created_at=1_700_000_000.5,
        ttl=60.0,
        message_type="train",
    )
    if error:
        return message_with_metadata(metadata, error=Error(code=3, reason="client failed"))
    content = RecordDict(
        {
            "arrays": ArrayRecord({"w": Array(np.arange(6, dtype=np.float32).reshape(2, 3))}),
            "metrics": MetricRecord({"loss": 0.25, "num-examples": 10}),
        }
    )
    return message_with_metadata(metadata, content=content)


def reopen(journal: FutureJournal) -> FutureJournal:
    """What a restarted server does: close, then open a new journal on the same folder."""
    journal.close()
    return FutureJournal(journal.directory)


# --- opening --------------------------------------------------------------------------------


def test_opening_creates_the_folder_database_and_replies_folder(tmp_path: Path) -> None:
    directory = tmp_path / "deep" / "state"
    journal = FutureJournal(directory)
    try:
        assert (directory / "journal.sqlite").is_file()
        assert (directory / "replies").is_dir()
        assert stat.S_IMODE((directory / "replies").stat().st_mode) == 0o700
        assert journal.entries() == []
    finally:
        journal.close()


def test_a_database_that_is_not_sqlite_is_a_workspace_error(tmp_path: Path) -> None:
    (tmp_path / "journal.sqlite").write_bytes(b"this is not a SQLite database file at all" * 10)
    with pytest.raises(WorkspaceError, match="cannot open the future journal"):
        FutureJournal(tmp_path)


def test_close_is_idempotent(tmp_path: Path) -> None:
    journal = FutureJournal(tmp_path)
    journal.close()
    journal.close()


# --- record / entries -----------------------------------------------------------------------


def test_recorded_entries_come_back_oldest_first(journal: FutureJournal) -> None:
    entries = [make_entry("m3"), make_entry("m1", epoch=2), make_entry("m2", datasite=SITE_B)]
    for entry in entries:
        journal.record(entry)
    assert journal.entries() == entries


def test_record_keeps_every_field(journal: FutureJournal) -> None:
    entry = make_entry(
        "abc",
        epoch=4,
        message_type="evaluate",
        group_id="g4",
        created_at=1.25,
        ttl=2.5,
        expires_at=3.75,
        envelope_id=bytes(range(256)),
        collected=True,
    )
    journal.record(entry)
    assert journal.entries() == [entry]


def test_recording_the_same_message_again_replaces_it(journal: FutureJournal) -> None:
    journal.record(make_entry("m1", future_id="old"))
    journal.record(make_entry("m2"))
    journal.record(make_entry("m1", future_id="new"))
    assert [(e.message_id, e.future_id) for e in journal.entries()] == [
        ("m2", "future-m2"),
        ("m1", "new"),
    ]


# --- claim ----------------------------------------------------------------------------------


def test_an_entry_recorded_in_this_process_is_never_claimed(journal: FutureJournal) -> None:
    journal.record(make_entry("m1"))
    assert journal.claim(1, SITE_A, "train", "1") is None


def test_nothing_to_claim_in_an_empty_journal(journal: FutureJournal) -> None:
    assert journal.claim(1, SITE_A, "train", "1") is None


def test_entries_survive_reopening_and_can_be_claimed(journal: FutureJournal) -> None:
    entry = make_entry("m1")
    journal.record(entry)
    resumed = reopen(journal)
    try:
        assert resumed.entries() == [entry]
        assert resumed.claim(1, SITE_A, "train", "1") == entry
    finally:
        resumed.close()


@pytest.mark.parametrize(
    ("field", "other"),
    [("epoch", 2), ("datasite", SITE_B), ("message_type", "evaluate"), ("group_id", "2")],
)
def test_claim_matches_on_every_key(journal: FutureJournal, field: str, other: object) -> None:
    journal.record(make_entry("m1"))
    resumed = reopen(journal)
    try:
        key: dict[str, Any] = {
            "epoch": 1,
            "datasite": SITE_A,
            "message_type": "train",
            "group_id": "1",
        }
        key[field] = other
        assert resumed.claim(**key) is None
        key[field] = make_entry("m1").__dict__[field]
        claimed = resumed.claim(**key)
        assert claimed is not None and claimed.message_id == "m1"
    finally:
        resumed.close()


def test_claims_are_given_once_oldest_first(journal: FutureJournal) -> None:
    journal.record(make_entry("first"))
    journal.record(make_entry("second"))
    journal.record(make_entry("third"))
    resumed = reopen(journal)
    try:
        got = [resumed.claim(1, SITE_A, "train", "1") for _ in range(4)]
        assert [e.message_id if e else None for e in got] == ["first", "second", "third", None]
    finally:
        resumed.close()


def claim_steps(journal: FutureJournal, entries: int) -> int:
    """SQLite VM steps of one claim in a round of ``entries`` messages to as many datasites."""
    for i in range(entries):
        journal.record(make_entry(f"m{i}", datasite=f"ds{i}@x.org"))
    steps = 0

    def count() -> int:
        nonlocal steps
        steps += 1
        return 0

    journal._db.set_progress_handler(count, 1)
    try:
        assert journal.claim(1, f"ds{entries // 2}@x.org", "train", "1") is None  # recorded here
    finally:
        journal._db.set_progress_handler(None, 1)
    return steps


def test_a_claim_reads_only_its_own_entries_not_the_whole_round(tmp_path: Path) -> None:
    small, large = FutureJournal(tmp_path / "small"), FutureJournal(tmp_path / "large")
    try:
        # a full scan grows 20x from 50 to 1,000 entries; an indexed search barely at all
        assert claim_steps(large, 1000) <= 2 * claim_steps(small, 50)
    finally:
        small.close()
        large.close()


def test_claim_order_follows_recording_not_message_id(journal: FutureJournal) -> None:
    journal.record(make_entry("zzz"))
    journal.record(make_entry("aaa"))
    resumed = reopen(journal)
    try:
        first = resumed.claim(1, SITE_A, "train", "1")
        assert first is not None and first.message_id == "zzz"
    finally:
        resumed.close()


def test_a_new_entry_after_reopening_is_not_claimable_but_old_ones_are(
    journal: FutureJournal,
) -> None:
    journal.record(make_entry("old"))
    resumed = reopen(journal)
    try:
        resumed.record(make_entry("new"))
        assert [e.message_id for e in resumed.entries()] == ["old", "new"]  # seq continues
        claimed = resumed.claim(1, SITE_A, "train", "1")
        assert claimed is not None and claimed.message_id == "old"
        assert resumed.claim(1, SITE_A, "train", "1") is None
    finally:
        resumed.close()


def test_entries_recorded_after_reopening_sort_after_the_old_ones(
    journal: FutureJournal,
) -> None:
    for name in ("a", "b", "c"):
        journal.record(make_entry(name))
    resumed = reopen(journal)
    try:
        resumed.record(make_entry("d"))
        resumed.record(make_entry("b", future_id="again"))  # replaced: now the newest
        assert [e.message_id for e in resumed.entries()] == ["a", "c", "d", "b"]
    finally:
        resumed.close()


def test_concurrent_claims_never_hand_out_an_entry_twice(journal: FutureJournal) -> None:
    for i in range(50):
        journal.record(make_entry(f"m{i}"))
    resumed = reopen(journal)
    claimed: list[str] = []
    lock = threading.Lock()
    start = threading.Barrier(8)

    def worker() -> None:
        start.wait()
        while (entry := resumed.claim(1, SITE_A, "train", "1")) is not None:
            with lock:
                claimed.append(entry.message_id)

    threads = [threading.Thread(target=worker) for _ in range(8)]
    try:
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        assert sorted(claimed) == sorted(f"m{i}" for i in range(50))
    finally:
        resumed.close()


# --- collected / stored_reply ---------------------------------------------------------------


@pytest.fixture
def as_file(monkeypatch: pytest.MonkeyPatch) -> None:
    """Every reply counts as large: stored as a file, as a model is."""
    monkeypatch.setattr(journal_module, "INLINE_REPLY_BYTES", -1)


def test_a_collected_reply_round_trips(journal: FutureJournal) -> None:
    """A small reply is stored in the private database, with no file to create or remove."""
    journal.record(make_entry("m1"))
    reply = make_reply("m1")
    journal.collected("m1", encode_message(reply))
    (entry,) = journal.entries()
    assert entry.collected is True
    stored = journal.stored_reply("m1")
    assert canonical_message(stored) == canonical_message(reply)
    assert list((journal.directory / "replies").iterdir()) == []
    assert stat.S_IMODE((journal.directory / "journal.sqlite").stat().st_mode) == 0o600


def test_a_large_collected_reply_is_a_private_file(journal: FutureJournal, as_file: None) -> None:
    journal.record(make_entry("m1"))
    reply = make_reply("m1")
    journal.collected("m1", encode_message(reply))
    assert canonical_message(journal.stored_reply("m1")) == canonical_message(reply)
    path = journal.directory / "replies" / "m1.sfwm"
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    resumed = reopen(journal)
    try:
        assert canonical_message(resumed.stored_reply("m1")) == canonical_message(reply)
    finally:
        resumed.close()


def test_a_reply_file_of_an_earlier_version_is_still_read(journal: FutureJournal) -> None:
    """Journals written before replies went into the database hold them as files."""
    journal.record(make_entry("m1"))
    reply = make_reply("m1")
    (journal.directory / "replies" / "m1.sfwm").write_bytes(encode_message(reply))
    journal._db.execute("UPDATE entries SET collected = 1 WHERE message_id = 'm1'")
    assert canonical_message(journal.stored_reply("m1")) == canonical_message(reply)
    journal.drop_through(1)
    assert list((journal.directory / "replies").iterdir()) == []


def test_an_error_reply_round_trips(journal: FutureJournal) -> None:
    journal.record(make_entry("m1"))
    reply = make_reply("m1", error=True)
    journal.collected("m1", encode_message(reply))
    stored = journal.stored_reply("m1")
    assert stored.has_error() and stored.error.reason == "client failed"
    assert canonical_message(stored) == canonical_message(reply)


def test_a_collected_reply_is_there_after_reopening(journal: FutureJournal) -> None:
    journal.record(make_entry("m1"))
    journal.record(make_entry("m2", datasite=SITE_B))
    reply = make_reply("m1")
    journal.collected("m1", encode_message(reply))
    resumed = reopen(journal)
    try:
        first = resumed.claim(1, SITE_A, "train", "1")
        second = resumed.claim(1, SITE_B, "train", "1")
        assert first is not None and first.collected
        assert second is not None and not second.collected
        assert canonical_message(resumed.stored_reply(first.message_id)) == canonical_message(reply)
    finally:
        resumed.close()


def test_collecting_only_marks_that_entry(journal: FutureJournal) -> None:
    journal.record(make_entry("m1"))
    journal.record(make_entry("m2"))
    journal.collected("m2", encode_message(make_reply("m2")))
    assert [(e.message_id, e.collected) for e in journal.entries()] == [
        ("m1", False),
        ("m2", True),
    ]


def test_stored_reply_of_an_uncollected_message_is_a_workspace_error(
    journal: FutureJournal,
) -> None:
    journal.record(make_entry("m1"))
    with pytest.raises(WorkspaceError, match="unusable"):
        journal.stored_reply("m1")


def test_a_damaged_stored_reply_is_a_workspace_error(journal: FutureJournal) -> None:
    journal.record(make_entry("m1"))
    journal.collected("m1", encode_message(make_reply("m1")))
    journal._db.execute("UPDATE replies SET envelope = substr(envelope, 1, 10)")
    with pytest.raises(WorkspaceError, match="unusable") as info:
        journal.stored_reply("m1")
    assert "journal.sqlite (m1)" in str(info.value)


def test_a_damaged_reply_file_is_a_workspace_error(journal: FutureJournal, as_file: None) -> None:
    journal.record(make_entry("m1"))
    journal.collected("m1", encode_message(make_reply("m1")))
    path = journal.directory / "replies" / "m1.sfwm"
    path.write_bytes(path.read_bytes()[:10])
    with pytest.raises(WorkspaceError, match="unusable") as info:
        journal.stored_reply("m1")
    assert str(path) in str(info.value)


@pytest.mark.parametrize("message_id", ["../evil", "a/b", "", ".hidden", "id with space", "a\\b"])
def test_unsafe_message_ids_are_refused(journal: FutureJournal, message_id: str) -> None:
    with pytest.raises(WorkspaceError, match="unsafe message id"):
        journal.collected(message_id, encode_message(make_reply()))
    with pytest.raises(WorkspaceError, match="unsafe message id"):
        journal.stored_reply(message_id)
    assert list((journal.directory / "replies").iterdir()) == []
    assert not (journal.directory.parent / "evil.sfwm").exists()


# --- drop_through ---------------------------------------------------------------------------


@pytest.mark.parametrize("storage", ["inline", "file"])
def test_drop_through_removes_committed_rounds_and_their_replies(
    journal: FutureJournal, storage: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    if storage == "file":
        monkeypatch.setattr(journal_module, "INLINE_REPLY_BYTES", -1)
    journal.record(make_entry("r1a", epoch=1))
    journal.record(make_entry("r2a", epoch=2))
    journal.record(make_entry("r1b", epoch=1, datasite=SITE_B))
    journal.record(make_entry("r3a", epoch=3))
    for message_id in ("r1a", "r2a", "r3a"):
        journal.collected(message_id, encode_message(make_reply(message_id)))

    dropped = journal.drop_through(2)
    assert [e.message_id for e in dropped] == ["r1a", "r2a", "r1b"]
    assert dropped[0].collected and not dropped[2].collected
    assert [e.message_id for e in journal.entries()] == ["r3a"]
    files = sorted(p.name for p in (journal.directory / "replies").iterdir())
    assert files == (["r3a.sfwm"] if storage == "file" else [])
    assert journal._db.execute("SELECT COUNT(*) FROM replies").fetchone() == (
        (0,) if storage == "file" else (1,)
    )
    assert journal.stored_reply("r3a").metadata.reply_to_message_id == "r3a"


def test_drop_through_of_nothing_returns_nothing(journal: FutureJournal) -> None:
    journal.record(make_entry("m1", epoch=5))
    assert journal.drop_through(4) == []
    assert len(journal.entries()) == 1


def test_dropped_entries_are_gone_after_reopening(journal: FutureJournal) -> None:
    journal.record(make_entry("m1", epoch=1))
    journal.record(make_entry("m2", epoch=2))
    journal.drop_through(1)
    resumed = reopen(journal)
    try:
        assert resumed.claim(1, SITE_A, "train", "1") is None
        claimed = resumed.claim(2, SITE_A, "train", "1")
        assert claimed is not None and claimed.message_id == "m2"
    finally:
        resumed.close()
