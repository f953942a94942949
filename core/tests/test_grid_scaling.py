"""A round's cost in the grid grows with its datasites, not with their square.

A round of ``n`` messages can wake the grid up to ``n`` times (replies land one by one), so
anything the grid does per wake-up over all open messages (rebuilding what it waits on,
scanning every deadline, the liveness tracker's scan of every datasite) makes a round cost
``n^2``. These tests count the lines the grid and the tracker execute for a round in which
every wake-up delivers exactly one reply: per message, that count must not grow with ``n``.
Counting lines, not timing, keeps the test deterministic on a loaded machine.

Sealed, each message also costs a seal, an open and the peer's key document: the same count
over the grid and the channel must not grow with ``n`` either, and each datasite's document is
read once, not once per message of the round (or per wake-up).
"""

from __future__ import annotations

import json
import sys
import uuid
from collections.abc import Collection
from types import FrameType
from typing import Any

from flwr.app import Message, RecordDict

from core.tests.test_grid_replies import ScriptedTransport
from syft_flwr.crypto import IdentityKeys, ReplayStore, SecureChannel, build_document, envelope
from syft_flwr.crypto import channel as secure_channel
from syft_flwr.grid import syft_grid
from syft_flwr.grid.syft_grid import SyftGrid
from syft_flwr.server import liveness
from syft_flwr.server.liveness import LivenessTracker
from syft_flwr.testing.ports import RecordingPort
from syft_flwr.testing.protocol import instruction
from syft_flwr.wire import decode_message, encode_message

APP = "flwr/scaling"
TRACED = {syft_grid.__file__, liveness.__file__}
SEALED_TRACED = TRACED | {secure_channel.__file__, envelope.__file__}
SERVER = "server@scaling.test"


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


class SealedReplyPerWakeUp(ScriptedTransport):
    """:class:`OneReplyPerWakeUp` where every datasite opens its request and seals its reply
    with its own channel, as the client gate does (a test double)."""

    def __init__(self, channels: dict[str, SecureChannel]) -> None:
        super().__init__(notifies=True)
        self.channels = channels
        self.datasite_of: dict[str, str] = {}

    def send(self, datasite: str, app: str, endpoint: str, body: bytes, expires_at: float) -> str:
        future = uuid.uuid4().hex
        self.datasite_of[future] = datasite
        self.sent[future] = body
        return future

    def wait_ready(self, future_ids: Collection[str], timeout: float) -> set[str]:
        future = next(f for f in self.sent if f in future_ids and f not in self.slots)
        datasite = self.datasite_of[future]
        channel = self.channels[datasite]
        opened = channel.open(self.sent[future], sender=SERVER, app=APP, endpoint="messages")
        request = decode_message(opened.body)
        reply = encode_message(Message(RecordDict(), reply_to=request))
        sealed, _ = channel.seal(
            SERVER,
            APP,
            "messages",
            reply,
            opened.header.expires,
            reply_to=opened.header.message_id,
        )
        self.put(future, sealed)
        return ScriptedTransport.wait_ready(self, {future}, 0)


class Documents:
    """Published key documents, counting each read (a test double of a transport's)."""

    def __init__(self) -> None:
        self.documents: dict[str, bytes] = {}
        self.reads: dict[str, int] = {}

    def publish(self, keys: IdentityKeys) -> None:
        self.documents[keys.email] = json.dumps(build_document(keys)).encode()

    def fetch(self, email: str) -> bytes | None:
        self.reads[email] = self.reads.get(email, 0) + 1
        return self.documents.get(email)


def sealed_grid(n: int, port: RecordingPort) -> tuple[SyftGrid, Documents]:
    """A sealing grid of ``n`` datasites, each with its own channel, keys published."""
    documents = Documents()
    server = IdentityKeys.generate(SERVER)
    documents.publish(server)
    channels = {}
    for i in range(n):
        keys = IdentityKeys.generate(f"ds{i}@scaling.test")
        documents.publish(keys)
        channels[keys.email] = SecureChannel(keys, ReplayStore(":memory:"), documents.fetch)
    transport = SealedReplyPerWakeUp(channels)
    own = SecureChannel(server, ReplayStore(":memory:"), documents.fetch)
    grid = SyftGrid(APP, list(channels), transport, channel=own, port=port)
    return grid, documents


def lines_per_message(n: int, *, sealed: bool = False) -> float:
    """Lines of the grid and the liveness tracker (sealed: and of the channel and envelope)
    executed per message of one round."""
    datasites = [f"ds{i}@scaling.test" for i in range(n)]
    port = RecordingPort(liveness=LivenessTracker(datasites))
    if sealed:
        grid, documents = sealed_grid(n, port)
        traced = SEALED_TRACED
    else:
        grid = SyftGrid(APP, datasites, OneReplyPerWakeUp(), channel=None, port=port)
        traced = TRACED
    grid.set_run(7)
    messages = [instruction(grid, node_id, "train") for node_id in grid.get_node_ids()]
    count = 0

    def local(frame: FrameType, event: str, arg: Any) -> Any:
        nonlocal count
        if event == "line":
            count += 1
        return local

    def calls(frame: FrameType, event: str, arg: Any) -> Any:
        return local if frame.f_code.co_filename in traced else None

    sys.settrace(calls)
    try:
        replies = grid.send_and_receive(messages, timeout=600)
    finally:
        sys.settrace(None)
    assert len(replies) == n and not any(reply.has_error() for reply in replies)
    if sealed:
        server_reads = {
            email: reads for email, reads in documents.reads.items() if email in datasites
        }
        assert server_reads and max(server_reads.values()) == 1, server_reads
    return count / n


def test_a_round_of_single_wake_ups_costs_the_same_per_message_at_any_size() -> None:
    small, large = lines_per_message(40), lines_per_message(320)
    # A scan of all open messages per wake-up made this 8x (320 / 40); linear stays ~1x.
    assert large <= 1.25 * small, (small, large)


def test_a_sealed_round_costs_the_same_per_message_at_any_size() -> None:
    small, large = lines_per_message(20, sealed=True), lines_per_message(160, sealed=True)
    assert large <= 1.25 * small, (small, large)
