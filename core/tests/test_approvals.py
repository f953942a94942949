"""Owner approvals: pending runs and decisions in separate files, unreadable means undecided."""

from __future__ import annotations

from pathlib import Path

import pytest

from syft_flwr.approvals import ApprovalBook, ApprovalMode
from syft_flwr.errors import ConfigError


def test_requests_of_a_run_accumulate_until_it_is_decided(tmp_path: Path) -> None:
    clock = iter([100.0, 105.0, 110.0, 120.0]).__next__
    book = ApprovalBook(tmp_path, clock=clock)
    assert book.decision(7) is None and not book.known(7)
    book.note_request(7, "agg@x.org", "flwr/app", "syft_flwr.resources.check", {"cpus": 2.0})
    run = book.note_request(7, "agg@x.org", "flwr/app", "train")
    assert (run.first_seen, run.last_seen, run.requests) == (100.0, 105.0, 2)
    assert run.message_types == ("syft_flwr.resources.check", "train")
    assert run.resources == {"cpus": 2.0}  # kept from the resource check
    assert [pending.run_id for pending in book.pending()] == [7] and book.known(7)
    decision = book.decide(7, approve=False)
    assert (decision.decision, decision.decided_at, decision.approved) == ("denied", 110.0, False)
    assert book.decision(7) == decision and book.pending() == []
    assert book.decide(7, approve=True).approved  # the owner may change their mind


def test_an_unreadable_decision_keeps_the_run_held(tmp_path: Path) -> None:
    book = ApprovalBook(tmp_path)
    book.note_request(3, "agg@x.org", "flwr/app", "train")
    (tmp_path / "3.decision.json").write_text('{"run_id": 3, "decision": "yes please"}')
    assert book.decision(3) is None
    (tmp_path / "3.decision.json").write_bytes(b"\xff\xfe")
    assert book.decision(3) is None
    (tmp_path / "3.decision.json").write_text(
        '{"run_id": 4, "decision": "approved", "decided_at": 1}'
    )
    assert book.decision(3) is None, "a decision copied from another run must not count"


def test_the_mode_is_auto_or_manual() -> None:
    assert ApprovalMode.parse("manual", "here") is ApprovalMode.MANUAL
    with pytest.raises(ConfigError, match='approve in here must be "auto" or "manual"'):
        ApprovalMode.parse("yes", "here")
