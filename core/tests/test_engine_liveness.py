"""Client liveness with an injected clock: lost after the grace period, rejoin on an answer."""

from __future__ import annotations

import math

import pytest
from hypothesis import given
from hypothesis import strategies as st

from syft_flwr.errors import ConfigError
from syft_flwr.server.liveness import DEFAULT_LOST_AFTER, ClientState, LivenessTracker

A = "a@x.org"
B = "b@x.org"


class FakeClock:
    def __init__(self, now: float = 1000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


class Recorder:
    def __init__(self) -> None:
        self.calls: list[tuple[str, bool, str]] = []

    def __call__(self, datasite: str, lost: bool, reason: str) -> None:
        self.calls.append((datasite, lost, reason))

    def transitions(self) -> list[tuple[str, bool]]:
        return [(datasite, lost) for datasite, lost, _ in self.calls]


def make(
    lost_after: float = 10.0, datasites: tuple[str, ...] = (A, B)
) -> tuple[LivenessTracker, FakeClock, Recorder]:
    clock = FakeClock()
    recorder = Recorder()
    tracker = LivenessTracker(datasites, lost_after=lost_after, on_change=recorder, clock=clock)
    return tracker, clock, recorder


# --- construction ---------------------------------------------------------------------------


@pytest.mark.parametrize("lost_after", [0, 0.0, -1, -0.5, math.nan, -math.inf])
def test_a_grace_period_that_is_not_positive_is_a_config_error(lost_after: float) -> None:
    with pytest.raises(ConfigError, match="lost_after must be a positive number"):
        LivenessTracker([A], lost_after=lost_after)


def test_defaults() -> None:
    tracker = LivenessTracker([A])
    assert tracker.lost_after == DEFAULT_LOST_AFTER == 300.0
    assert tracker.state(A) == ClientState(last_seen=None, waiting_since=None, lost=False)
    assert tracker.next_check_in() == math.inf
    tracker.answered(A)  # no callback given: nothing to call, no error
    assert tracker.state(A).last_seen is not None


# --- lost after the grace period ------------------------------------------------------------


def test_not_lost_before_the_grace_period() -> None:
    tracker, clock, recorder = make(lost_after=10.0)
    tracker.sent(A)
    clock.advance(9.999)
    assert tracker.check() == []
    assert not tracker.is_lost(A)
    assert recorder.calls == []


def test_lost_once_the_grace_period_passed() -> None:
    tracker, clock, recorder = make(lost_after=10.0)
    tracker.sent(A)
    clock.advance(10.0)  # exactly the grace period counts
    assert tracker.check() == [A]
    assert tracker.is_lost(A)
    assert not tracker.is_lost(B)
    assert recorder.calls == [(A, True, "no answer for 10 s to an outstanding request")]


def test_lost_is_reported_once() -> None:
    tracker, clock, recorder = make()
    tracker.sent(A)
    clock.advance(20)
    assert tracker.check() == [A]
    clock.advance(100)
    tracker.sent(A)
    assert tracker.check() == []
    assert recorder.transitions() == [(A, True)]


def test_a_datasite_never_sent_to_is_never_lost() -> None:
    tracker, clock, recorder = make()
    clock.advance(10_000)
    assert tracker.check() == []
    assert not tracker.is_lost(A) and not tracker.is_lost(B)
    assert recorder.calls == []


def test_the_oldest_unanswered_request_counts() -> None:
    tracker, clock, _ = make(lost_after=10.0)
    tracker.sent(A)
    first = clock.now
    clock.advance(6)
    tracker.sent(A)  # a second request does not restart the wait
    assert tracker.state(A).waiting_since == first
    clock.advance(4)
    assert tracker.check() == [A]


def test_several_datasites_lost_in_one_check() -> None:
    tracker, clock, recorder = make(lost_after=5.0)
    tracker.sent(A)
    tracker.sent(B)
    clock.advance(5)
    assert sorted(tracker.check()) == [A, B]
    assert sorted(recorder.transitions()) == [(A, True), (B, True)]


def test_the_grace_period_is_formatted_in_the_reason() -> None:
    tracker, clock, recorder = make(lost_after=2.5)
    tracker.sent(A)
    clock.advance(3)
    tracker.check()
    assert recorder.calls == [(A, True, "no answer for 2.5 s to an outstanding request")]


# --- answered / joined ----------------------------------------------------------------------


def test_the_first_answer_joins() -> None:
    tracker, clock, recorder = make()
    tracker.sent(A)
    clock.advance(3)
    tracker.answered(A)
    assert recorder.calls == [(A, False, "first answer")]
    assert tracker.state(A) == ClientState(last_seen=clock.now, waiting_since=None, lost=False)


def test_later_answers_do_not_report_again() -> None:
    tracker, clock, recorder = make()
    tracker.answered(A)
    for _ in range(3):
        tracker.sent(A)
        clock.advance(1)
        tracker.answered(A)
    assert recorder.calls == [(A, False, "first answer")]
    assert tracker.state(A).last_seen == clock.now


def test_an_answer_resets_the_wait() -> None:
    tracker, clock, recorder = make(lost_after=10.0)
    tracker.sent(A)
    clock.advance(8)
    tracker.answered(A)
    assert tracker.state(A).waiting_since is None
    clock.advance(8)  # 16 s after the first request, but nothing is outstanding
    assert tracker.check() == []
    tracker.sent(A)
    restarted = clock.now
    clock.advance(8)
    assert tracker.check() == []
    assert tracker.state(A).waiting_since == restarted
    clock.advance(2)
    assert tracker.check() == [A]
    assert recorder.transitions() == [(A, False), (A, True)]


def test_a_lost_datasite_rejoins_when_it_answers_again() -> None:
    tracker, clock, recorder = make(lost_after=10.0)
    tracker.answered(A)  # seen once: first answer
    tracker.sent(A)
    clock.advance(10)
    assert tracker.check() == [A]
    clock.advance(50)
    tracker.answered(A)
    assert not tracker.is_lost(A)
    assert tracker.state(A) == ClientState(last_seen=clock.now, waiting_since=None, lost=False)
    assert [(ds, lost, reason) for ds, lost, reason in recorder.calls] == [
        (A, False, "first answer"),
        (A, True, "no answer for 10 s to an outstanding request"),
        (A, False, "answered again"),
    ]
    tracker.answered(A)
    assert len(recorder.calls) == 3  # no further transition


def test_lost_before_it_ever_answered_then_answering_is_a_rejoin() -> None:
    tracker, clock, recorder = make(lost_after=10.0)
    tracker.sent(A)
    clock.advance(10)
    tracker.check()
    tracker.answered(A)
    assert recorder.calls[-1] == (A, False, "answered again")
    assert len(recorder.calls) == 2


def test_a_rejoined_datasite_can_be_lost_again() -> None:
    tracker, clock, recorder = make(lost_after=10.0)
    tracker.sent(A)
    clock.advance(10)
    tracker.check()
    tracker.answered(A)
    tracker.sent(A)
    clock.advance(10)
    assert tracker.check() == [A]
    assert recorder.transitions() == [(A, True), (A, False), (A, True)]


def test_the_callback_is_called_outside_the_lock() -> None:
    """A callback that asks the tracker about the datasite must not deadlock."""
    clock = FakeClock()
    seen: list[tuple[str, bool]] = []
    tracker: LivenessTracker

    def on_change(datasite: str, lost: bool, reason: str) -> None:
        seen.append((datasite, tracker.is_lost(datasite)))
        tracker.next_check_in()

    tracker = LivenessTracker([A], lost_after=1.0, on_change=on_change, clock=clock)
    tracker.sent(A)
    clock.advance(1)
    tracker.check()
    tracker.answered(A)
    assert seen == [(A, True), (A, False)]


# --- next_check_in --------------------------------------------------------------------------


def test_next_check_in_is_infinite_when_nothing_is_outstanding() -> None:
    tracker, _, _ = make()
    assert tracker.next_check_in() == math.inf


def test_next_check_in_counts_down_to_the_earliest_datasite() -> None:
    tracker, clock, _ = make(lost_after=10.0)
    tracker.sent(A)
    clock.advance(3)
    tracker.sent(B)
    assert tracker.next_check_in() == pytest.approx(7.0)
    clock.advance(5)
    assert tracker.next_check_in() == pytest.approx(2.0)
    clock.advance(3)  # A overdue (11 s) but not checked yet
    assert tracker.next_check_in() == 0.0
    assert tracker.check() == [A]  # B has waited 8 s: 2 s left
    assert tracker.next_check_in() == pytest.approx(2.0)


def test_next_check_in_ignores_lost_datasites() -> None:
    tracker, clock, _ = make(lost_after=10.0)
    tracker.sent(A)
    clock.advance(10)
    tracker.check()
    tracker.sent(B)
    assert tracker.next_check_in() == pytest.approx(10.0)
    tracker.answered(B)
    assert tracker.next_check_in() == math.inf


@given(
    sends=st.lists(st.integers(min_value=0, max_value=1000), min_size=1, max_size=6),
    lost_after=st.integers(min_value=1, max_value=500),
    later=st.integers(min_value=0, max_value=600),
)
def test_next_check_in_predicts_check(sends: list[int], lost_after: int, later: int) -> None:
    """Nobody is lost before ``now + next_check_in()``; somebody is at that moment.

    Whole seconds keep the clock arithmetic exact.
    """
    names = [f"d{i}@x.org" for i in range(len(sends))]
    clock = FakeClock(0.0)
    tracker = LivenessTracker(names, lost_after=lost_after, clock=clock)
    for name, at in sorted(zip(names, sends, strict=True), key=lambda pair: pair[1]):
        clock.now = float(at)
        tracker.sent(name)
    clock.now = float(max(sends) + later)
    wait = tracker.next_check_in()
    assert wait == max(0.0, min(sends) + lost_after - clock.now)
    if wait > 0:
        clock.now += wait - 0.5
        assert tracker.check() == []
        clock.now += 0.5
    newly_lost = tracker.check()
    assert newly_lost == [
        n for n, at in zip(names, sends, strict=True) if at + lost_after <= clock.now
    ]
    assert newly_lost


# --- unknown datasites ----------------------------------------------------------------------


def test_unknown_datasites_are_ignored() -> None:
    tracker, clock, recorder = make(datasites=(A,))
    tracker.sent("stranger@x.org")
    tracker.answered("stranger@x.org")
    clock.advance(1000)
    assert tracker.check() == []
    assert not tracker.is_lost("stranger@x.org")
    assert tracker.next_check_in() == math.inf
    assert recorder.calls == []


def test_state_of_an_unknown_datasite_is_a_key_error() -> None:
    tracker, _, _ = make(datasites=(A,))
    with pytest.raises(KeyError):
        tracker.state("stranger@x.org")


def test_state_is_a_copy() -> None:
    tracker, _, _ = make()
    copy = tracker.state(A)
    copy.lost = True
    copy.waiting_since = 1.0
    assert tracker.state(A) == ClientState()
