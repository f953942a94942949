"""The adaptive poll interval."""

from __future__ import annotations

from syft_flwr_gdrive.schedule import PollSchedule


def test_idle_polls_back_off_and_activity_resets() -> None:
    schedule = PollSchedule(base=1.0, maximum=8.0)
    intervals = []
    for step in range(6):
        schedule.polled(busy=False, now=float(step))
        intervals.append(schedule.interval)
    assert intervals == [2.0, 4.0, 8.0, 8.0, 8.0, 8.0]
    assert schedule.wait_time(now=5.0) == 8.0
    schedule.poke(now=5.0)
    assert schedule.interval == 1.0 and schedule.wait_time(now=5.0) == 1.0
    schedule.poke(now=5.0, immediately=True)
    assert schedule.wait_time(now=5.0) == 0.0


def test_awaiting_replies_keeps_the_short_interval() -> None:
    schedule = PollSchedule(base=0.5, maximum=10.0)
    for step in range(5):
        schedule.polled(busy=True, now=float(step))
    assert schedule.interval == 0.5
    schedule.failed(now=10.0)
    assert schedule.interval == 1.0
