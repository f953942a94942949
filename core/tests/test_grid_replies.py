"""Replies the grid accepts: only the addressed datasite's answer to that very message.

A reply slot can hold something else (an old reply replayed there, another datasite's answer,
bytes a sync client left half-written): the grid ignores it and keeps waiting for the real reply
until the message's TTL, instead of settling the message as a failure.
"""

from __future__ import annotations

import threading
import time
import uuid
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
from flwr.app import Array, ArrayRecord, ConfigRecord, Message, RecordDict
from flwr.common.constant import ErrorCode

from syft_flwr.grid.syft_grid import SyftGrid
from syft_flwr.node_ids import node_id_for
from syft_flwr.server.journal import FutureJournal
from syft_flwr.testing.ports import RecordingPort
from syft_flwr.testing.protocol import instruction
from syft_flwr.transport import (
    Body,
    ReceivedData,
    Reply,
    ReplyStatus,
    RequestHandler,
    Transport,
    TransportCapabilities,
    TransportSettings,
    join_body,
)
from syft_flwr.wire import codec, decode_message, encode_message

ALICE, BOB = "alice@replies.test", "bob@replies.test"
APP = "flwr/replies"


class ScriptedTransport(Transport):
    """The reply slot of each future holds whatever the test puts there (a test double)."""

    def __init__(self, notifies: bool) -> None:
        super().__init__(TransportSettings("server@replies.test", poll_interval=0.02))
        self._notifies = notifies
        self.sent: dict[str, bytes] = {}
        self.slots: dict[str, Reply] = {}
        self.polls = 0
        self.sent_event = threading.Event()

    @property
    def capabilities(self) -> TransportCapabilities:
        return TransportCapabilities(notifies=self._notifies)

    def send(self, datasite: str, app: str, endpoint: str, body: bytes, expires_at: float) -> str:
        future = uuid.uuid4().hex
        self.sent[future] = body
        self.sent_event.set()
        return future

    def put(self, future: str, body: ReceivedData) -> None:
        self.slots[future] = Reply(future, ReplyStatus.OK, body=body)
        self.reply_arrived(future)

    def poll(self, future_id: str) -> Reply | None:
        self.polls += 1
        return self.slots.get(future_id)

    def forget(self, future_id: str) -> None:
        self.slots.pop(future_id, None)

    def serve(self, app: str, endpoint: str, handler: RequestHandler) -> None:
        raise NotImplementedError

    def run(self) -> None:
        raise NotImplementedError

    def stop(self) -> None:
        pass


def answer(request_body: bytes, marker: str = "real") -> bytes:
    request = decode_message(request_body)
    return encode_message(
        Message(RecordDict({"r": ConfigRecord({"who": marker})}), reply_to=request)
    )


def ask(transport: Transport, ttl: float) -> tuple[SyftGrid, Message, list[Message]]:
    grid = SyftGrid(APP, [ALICE, BOB], transport, msg_timeout=30)
    grid.set_run(3)
    message = instruction(grid, grid.node_id_of(ALICE), "query", ttl=ttl)
    replies: list[Message] = []
    thread = threading.Thread(
        target=lambda: replies.extend(grid.send_and_receive([message], timeout=30)), daemon=True
    )
    thread.start()
    return grid, message, replies


def wait_for_send(transport: ScriptedTransport) -> tuple[str, bytes]:
    assert transport.sent_event.wait(10), "the grid never sent"
    ((future, body),) = transport.sent.items()
    return future, body


def other_message_reply(grid: SyftGrid) -> bytes:
    """A genuine-looking reply of ALICE, but to another message (an old reply replayed)."""
    old = instruction(grid, grid.node_id_of(ALICE), "query", ttl=30)
    old.metadata.__dict__["_message_id"] = "an-earlier-message"
    return encode_message(Message(RecordDict(), reply_to=old))


def bobs_reply_to(request_body: bytes) -> bytes:
    request = decode_message(request_body)
    request.metadata.__dict__["_dst_node_id"] = node_id_for(BOB)
    return encode_message(Message(RecordDict(), reply_to=request))


def collect(replies: list[Message], timeout: float = 20.0) -> Message:
    deadline = time.monotonic() + timeout
    while not replies:
        assert time.monotonic() < deadline, "send_and_receive never returned"
        time.sleep(0.01)
    (reply,) = replies
    return reply


def test_a_replayed_old_reply_is_ignored_and_the_real_one_collected() -> None:
    for notifies in (True, False):
        transport = ScriptedTransport(notifies)
        grid, _, replies = ask(transport, ttl=30)
        future, body = wait_for_send(transport)
        for foreign in (other_message_reply(grid), bobs_reply_to(body), b"\x00half-written"):
            transport.put(future, foreign)
            time.sleep(0.05)
            assert not replies, f"a foreign reply settled the message (notifies={notifies})"
        transport.put(future, answer(body))
        reply = collect(replies)
        assert not reply.has_error(), reply.error
        assert reply.content["r"]["who"] == "real"


def test_only_a_foreign_reply_ends_in_an_expiry_that_names_it() -> None:
    transport = ScriptedTransport(notifies=False)
    grid, _, replies = ask(transport, ttl=1.0)
    future, _ = wait_for_send(transport)
    transport.put(future, other_message_reply(grid))
    reply = collect(replies)
    assert reply.has_error() and reply.error.code == ErrorCode.MESSAGE_UNAVAILABLE
    assert "ignored a reply that was not its answer" in reply.error.reason
    assert "an-earlier-message" in reply.error.reason
    # a polling transport is polled at its poll interval, not in a busy loop
    assert transport.polls < 1.0 / transport.settings.poll_interval * 4


def test_a_refusal_ends_the_message_at_once() -> None:
    transport = ScriptedTransport(notifies=True)
    _, _, replies = ask(transport, ttl=30)
    future, _ = wait_for_send(transport)
    transport.slots[future] = Reply(future, ReplyStatus.REJECTED, detail="not trusted")
    transport.reply_arrived(future)
    reply = collect(replies)
    assert reply.has_error() and reply.error.code == ErrorCode.NODE_UNAVAILABLE
    assert "not trusted" in reply.error.reason


def test_waiting_for_a_notifying_transport_does_not_spin() -> None:
    transport = ScriptedTransport(notifies=True)
    grid, _, replies = ask(transport, ttl=0.6)
    future, _ = wait_for_send(transport)
    transport.put(future, other_message_reply(grid))
    collect(replies)
    assert transport.polls < 10, f"polled {transport.polls} times while waiting"


class FramingTransport(ScriptedTransport):
    """A scripted transport that declares ``accepts_frames`` and keeps what ``send`` got."""

    def __init__(self) -> None:
        super().__init__(notifies=True)
        self.given: list[Body] = []

    @property
    def capabilities(self) -> TransportCapabilities:
        return TransportCapabilities(notifies=True, accepts_frames=True)

    def send(self, datasite: str, app: str, endpoint: str, body: Body, expires_at: float) -> str:
        self.given.append(body)
        return super().send(datasite, app, endpoint, join_body(body), expires_at)


def with_arrays(grid: SyftGrid) -> Message:
    message = instruction(grid, grid.node_id_of(ALICE), "train", ttl=30)
    arrays = ArrayRecord({"w": Array(np.arange(4096, dtype=np.float64))})
    message.content["arrays"] = arrays
    return message


def test_the_grid_hands_frames_only_to_a_transport_that_takes_them() -> None:
    """Plaintext goes to a framing transport as the codec's frames, the model's buffer among
    them (referenced, not joined); a transport written against ``body: bytes`` gets bytes."""
    framing = FramingTransport()
    grid = SyftGrid(APP, [ALICE], framing, msg_timeout=30)
    grid.set_run(3)
    message = with_arrays(grid)
    grid.push_messages([message])
    (given,) = framing.given
    assert not isinstance(given, bytes) and len(given) > 1, "the grid joined the frames"
    model = message.content.array_records["arrays"]["w"].data
    assert any(frame is model for frame in given), "the array buffer was copied"
    assert decode_message(join_body(given)).metadata.message_type == "train"

    plain = ScriptedTransport(notifies=True)
    grid = SyftGrid(APP, [ALICE], plain, msg_timeout=30)
    grid.set_run(3)
    grid.push_messages([with_arrays(grid)])
    ((_, body),) = plain.sent.items()
    assert isinstance(body, bytes)


@pytest.mark.parametrize("form", [bytes, memoryview], ids=["bytes", "memoryview"])
def test_the_journal_keeps_the_reply_bytes_that_arrived(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, form: Callable[[bytes], ReceivedData]
) -> None:
    """A collected reply is journaled as the very envelope the grid decoded, not encoded again,
    in either form a transport hands a body over from memory (a large one as a buffer's view)."""
    transport = ScriptedTransport(notifies=True)
    journal = FutureJournal(tmp_path)
    port = RecordingPort(journal=journal)
    grid = SyftGrid(APP, [ALICE], transport, msg_timeout=30, port=port)
    grid.set_run(3)
    (message_id,) = grid.push_messages([instruction(grid, grid.node_id_of(ALICE), "query")])
    ((future, request_body),) = transport.sent.items()
    reply_body = answer(request_body)
    encoded_replies: list[str] = []
    original = codec.encode_message_frames

    def counting(message: Message) -> list[bytes | memoryview]:
        if message.metadata.reply_to_message_id:
            encoded_replies.append(message.metadata.reply_to_message_id)
        return original(message)

    monkeypatch.setattr(codec, "encode_message_frames", counting)
    transport.put(future, form(reply_body))
    (reply,) = grid.pull_messages([message_id])
    assert not reply.has_error()
    (stored,) = journal._db.execute(
        "SELECT envelope FROM replies WHERE message_id = ?", (message_id,)
    ).fetchone()
    assert stored == reply_body
    assert encoded_replies == [], "the reply was encoded again for the journal"
    assert port.answers == [ALICE]
