"""A round's cost in the grid grows with its datasites, not with their square.

A round of ``n`` messages can wake the grid up to ``n`` times (replies land one by one), so
anything the grid does per wake-up over all open messages (rebuilding what it waits on,
scanning every deadline, the liveness tracker's scan of every datasite) makes a round cost
``n^2``. These tests count the lines the grid and the tracker execute for a round in which
every wake-up delivers exactly one reply: per message, that count must not grow with ``n``.
Counting lines, not timing, keeps the test deterministic on a loaded machine.
"""

from __future__ import annotations

import sys
from collections.abc import Collection
from types import FrameType
from typing import Any

from flwr.app import Message, RecordDict

from core.tests.test_grid_replies import ScriptedTransport
from syft_flwr.grid import syft_grid
from syft_flwr.grid.syft_grid import SyftGrid
from syft_flwr.server import liveness
from syft_flwr.server.liveness import LivenessTracker
from syft_flwr.testing.ports import RecordingPort
from syft_flwr.testing.protocol import instruction
from syft_flwr.wire import decode_message, encode_message

APP = "flwr/scaling"
TRACED = {syft_grid.__file__, liveness.__file__}


class OneReplyPerWakeUp(ScriptedTransport):
    """Each ``wait_ready`` answers the oldest unanswered future it is given, and only it:
    the worst case for a grid that does work per wake-up (a test double)."""

    def __init__(self) -> None:
        super().__init__(notifies=True)

    def wait_ready(self, future_ids: Collection[str], timeout: float) -> set[str]:
        future = next(f for f in self.sent if f in future_ids and f not in self.slots)
        request = decode_message(self.sent[future])
        self.put(future, encode_message(Message(RecordDict(), reply_to=request)))
        return super().wait_ready({future}, 0)


def lines_per_message(n: int) -> float:
    """Lines of the grid and the liveness tracker executed per message of one round."""
    datasites = [f"ds{i}@scaling.test" for i in range(n)]
    port = RecordingPort(liveness=LivenessTracker(datasites))
    grid = SyftGrid(APP, datasites, OneReplyPerWakeUp(), channel=None, port=port)
    grid.set_run(7)
    messages = [instruction(grid, node_id, "train") for node_id in grid.get_node_ids()]
    count = 0

    def local(frame: FrameType, event: str, arg: Any) -> Any:
        nonlocal count
        if event == "line":
            count += 1
        return local

    def calls(frame: FrameType, event: str, arg: Any) -> Any:
        return local if frame.f_code.co_filename in TRACED else None

    sys.settrace(calls)
    try:
        replies = grid.send_and_receive(messages, timeout=600)
    finally:
        sys.settrace(None)
    assert len(replies) == n and not any(reply.has_error() for reply in replies)
    return count / n


def test_a_round_of_single_wake_ups_costs_the_same_per_message_at_any_size() -> None:
    small, large = lines_per_message(40), lines_per_message(320)
    # A scan of all open messages per wake-up made this 8x (320 / 40); linear stays ~1x.
    assert large <= 1.25 * small, (small, large)
