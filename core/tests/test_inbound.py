"""The request gate every endpoint shares: who asks, duplicates, expiry, addressing, sealing."""

from __future__ import annotations

import json
import logging
import time
import zlib
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
from flwr.app import Array, ArrayRecord, ConfigRecord, Message, Metadata, RecordDict

from syft_flwr.audit import AuditTrail, read_audit
from syft_flwr.authorization import SenderPolicy
from syft_flwr.crypto.channel import SecureChannel
from syft_flwr.crypto.document import build_document
from syft_flwr.crypto.keys import IdentityKeys
from syft_flwr.crypto.replay import ReplayStore
from syft_flwr.errors import RequestRefusedError, UnauthorizedSenderError
from syft_flwr.grid.gate import SEEN_CAPACITY, RequestGate
from syft_flwr.message_factory import message_with_metadata
from syft_flwr.node_ids import node_id_for
from syft_flwr.transport import (
    ReceivedData,
    Request,
    RequestHead,
    Transport,
    TransportCapabilities,
    TransportSettings,
    join_body,
)
from syft_flwr.wire import decode_message, encode_message, encode_message_frames

ME = "alice@gate.test"
SERVER = "server@gate.test"
MALLORY = "mallory@gate.test"
TRUST_SERVER = SenderPolicy([SERVER])


def flower_message(
    message_id: str = "m1", dst: str = ME, ttl: float = 30.0, dst_node_id: int | None = None
) -> Message:
    metadata = Metadata(
        run_id=1,
        message_id=message_id,
        src_node_id=1,
        dst_node_id=node_id_for(dst) if dst_node_id is None else dst_node_id,
        reply_to_message_id="",
        group_id="g",
        created_at=time.time(),
        ttl=ttl,
        message_type="query",
    )
    return message_with_metadata(metadata, content=RecordDict({"c": ConfigRecord({"x": 1})}))


def request(
    body: ReceivedData,
    rid: str = "r1",
    ttl: float = 30.0,
    endpoint: str = "messages",
    sender: str = SERVER,
) -> Request:
    now = time.time()
    return Request(rid, sender, ME, "flwr/app", endpoint, body, now, now + ttl)


BODY_FORMS = pytest.mark.parametrize("form", [bytes, memoryview], ids=["bytes", "memoryview"])
"""The forms of ``Request.body`` a transport hands over from memory (a large body read into a
buffer comes as its view); a body left in its medium is in test_onepass_body."""


@BODY_FORMS
def test_admits_a_request_once_by_request_id_and_by_message_id(
    form: Callable[[bytes], ReceivedData],
) -> None:
    gate = RequestGate(ME, policy=TRUST_SERVER)
    body = form(encode_message(flower_message()))
    admitted = gate.admit(request(body))
    assert admitted is not None and admitted.message.metadata.message_id == "m1"
    assert admitted.envelope_id == b"" and admitted.still_fresh()
    assert gate.admit(request(body)) is None
    assert gate.admit(request(body, rid="r2", endpoint="aux")) is None  # replayed elsewhere


def test_messages_of_a_syft_flwr_05_server_are_admitted() -> None:
    """syft-flwr 0.5.x addresses a datasite as CRC-32 of its email and sends every message
    with an empty id: each request is admitted once, by its request id, none as a duplicate."""
    gate = RequestGate(ME, policy=TRUST_SERVER)
    legacy_id = zlib.crc32(ME.encode())
    bodies = [encode_message(flower_message("", dst_node_id=legacy_id)) for _ in range(3)]
    admitted = [gate.admit(request(body, rid=f"r{i}")) for i, body in enumerate(bodies)]
    assert all(a is not None and a.message.metadata.message_id == "" for a in admitted)
    assert gate.admit(request(bodies[0], rid="r0")) is None  # the same request again
    also = encode_message(flower_message("", dst_node_id=zlib.crc32(b"bob@gate.test")))
    with pytest.raises(RequestRefusedError, match="addressed to node"):
        gate.admit(request(also, rid="r9"))  # 0.5.x's id of another datasite


def test_drops_expired_and_refuses_garbage_and_misaddressed_requests() -> None:
    gate = RequestGate(ME, policy=TRUST_SERVER)
    assert gate.admit(request(encode_message(flower_message()), ttl=-1)) is None
    with pytest.raises(RequestRefusedError, match="malformed request"):
        gate.admit(request(b"garbage", rid="r2"))
    other = encode_message(flower_message("m3", dst="bob@gate.test"))
    with pytest.raises(RequestRefusedError, match="addressed to node"):
        gate.admit(request(other, rid="r3"))


def test_a_message_past_its_own_ttl_is_dropped_after_it_opened(tmp_path: Path) -> None:
    """The gate's one time-of-use check: the transport delivered the request in time, but the
    message inside is past its own TTL (or went stale while it was opened), so no handler
    sees it, and the drop is audited."""
    trail = AuditTrail(tmp_path / "audit.jsonl")
    gate = RequestGate(ME, policy=TRUST_SERVER, audit=trail)
    stale = flower_message()
    stale.metadata.__dict__["_created_at"] = time.time() - 60
    assert gate.admit(request(encode_message(stale))) is None
    (record,) = read_audit(tmp_path / "audit.jsonl")
    assert (record["outcome"], record["reason"]) == ("dropped", "expired before it was served")


def test_plaintext_reply_is_the_encoded_message() -> None:
    gate = RequestGate(ME, policy=TRUST_SERVER)
    admitted = gate.admit(request(encode_message(flower_message())))
    assert admitted is not None
    reply = Message(RecordDict(), reply_to=admitted.message)
    body = gate.seal_reply(admitted, reply)
    assert body is not None
    assert decode_message(body).metadata.reply_to_message_id == "m1"


def test_forgets_the_oldest_ids_beyond_its_capacity() -> None:
    gate = RequestGate(ME, policy=TRUST_SERVER)
    for index in range(SEEN_CAPACITY + 1):
        assert not gate._remember(f"k{index}", time.time() + 60)
    assert not gate._remember("k0", time.time() + 60)  # evicted, so new again


@pytest.fixture(scope="module")
def identities() -> dict[str, IdentityKeys]:
    return {email: IdentityKeys.generate(email) for email in (ME, SERVER)}


def channel(email: str, identities: dict[str, IdentityKeys], root: Path) -> SecureChannel:
    documents = {
        name: json.dumps(build_document(keys)).encode() for name, keys in identities.items()
    }
    return SecureChannel(identities[email], ReplayStore(root / f"{email}.replay"), documents.get)


@BODY_FORMS
def test_sealed_request_opens_and_the_reply_is_sealed_to_its_sender(
    tmp_path: Path, identities: dict[str, IdentityKeys], form: Callable[[bytes], ReceivedData]
) -> None:
    mine, server = channel(ME, identities, tmp_path), channel(SERVER, identities, tmp_path)
    gate = RequestGate(ME, mine, policy=TRUST_SERVER)
    sealed, envelope_id = server.seal(
        ME, "flwr/app", "aux", encode_message_frames(flower_message()), time.time() + 30
    )
    admitted = gate.admit(request(form(sealed), endpoint="aux"))
    assert admitted is not None and admitted.envelope_id == envelope_id
    body = gate.seal_reply(admitted, Message(RecordDict(), reply_to=admitted.message))
    assert body is not None
    opened = server.open(body, sender=ME, app="flwr/app", endpoint="aux", reply_to=envelope_id)
    assert decode_message(opened.body).metadata.reply_to_message_id == "m1"
    assert admitted.sealed
    # sealed for another endpoint: refused
    other, _ = server.seal(
        ME, "flwr/app", "messages", encode_message_frames(flower_message("m2")), time.time() + 30
    )
    with pytest.raises(RequestRefusedError, match="WrongRecipientError"):
        gate.admit(request(other, rid="r2", endpoint="aux"))
    # plaintext to an encrypting datasite: refused, never decoded as plaintext
    with pytest.raises(RequestRefusedError, match="cannot open"):
        gate.admit(request(encode_message(flower_message("m3")), rid="r3"))
    mine.close()
    server.close()


def test_a_request_sealed_by_one_trusted_sender_cannot_come_from_another(
    tmp_path: Path, identities: dict[str, IdentityKeys]
) -> None:
    """Both the transport's sender and the envelope's authenticated sender must match."""
    everyone = {**identities, MALLORY: IdentityKeys.generate(MALLORY)}
    mine = channel(ME, everyone, tmp_path)
    mallory = channel(MALLORY, everyone, tmp_path)
    gate = RequestGate(ME, mine, policy=SenderPolicy([SERVER, MALLORY]))
    sealed, _ = mallory.seal(
        ME, "flwr/app", "messages", encode_message_frames(flower_message()), time.time() + 30
    )
    # mallory's envelope, put where the server's requests arrive
    with pytest.raises(RequestRefusedError, match="SenderMismatchError"):
        gate.admit(request(sealed))
    mine.close()
    mallory.close()


def test_a_stranger_is_refused_before_its_body_is_opened(
    tmp_path: Path, identities: dict[str, IdentityKeys]
) -> None:
    class Untouchable:
        def __getattr__(self, name: str) -> object:
            raise AssertionError(f"the channel was used ({name}) for a stranger's request")

    gate = RequestGate(ME, Untouchable(), policy=TRUST_SERVER)  # type: ignore[arg-type]
    body = encode_message(flower_message())
    with pytest.raises(UnauthorizedSenderError, match=f"{MALLORY} is not a trusted aggregator"):
        gate.admit(request(body, sender=MALLORY))
    assert gate.screen(RequestHead("r9", MALLORY, ME, "flwr/app", "messages", 10)) is not None
    assert gate.screen(RequestHead("r9", SERVER, ME, "flwr/app", "messages", 10)) is None


def test_the_trusted_sender_is_compared_in_normal_form() -> None:
    gate = RequestGate(ME, policy=SenderPolicy(["  Server@Gate.Test "]))
    assert gate.admit(request(encode_message(flower_message()), sender="server@gate.test"))


def test_every_decision_is_in_the_audit_trail(tmp_path: Path) -> None:
    trail = AuditTrail(tmp_path / "audit.jsonl")
    gate = RequestGate(ME, policy=TRUST_SERVER, audit=trail)
    body = encode_message(flower_message())
    admitted = gate.admit(request(body))
    assert admitted is not None
    gate.accept(admitted)
    assert gate.admit(request(body)) is None
    with pytest.raises(UnauthorizedSenderError):
        gate.admit(request(body, rid="r2", sender=MALLORY))
    gate.screen(RequestHead("r3", MALLORY, ME, "flwr/app", "aux", 123))
    lines = read_audit(trail.path)
    assert [(line["sender"], line["outcome"]) for line in lines] == [
        (SERVER, "accepted"),
        (SERVER, "dropped"),
        (MALLORY, "refused"),
        (MALLORY, "refused"),
    ]
    accepted, _, refused, screened = lines
    assert (accepted["run_id"], accepted["message_type"], accepted["body_size"]) == (
        1,
        "query",
        len(body),
    )
    assert refused["run_id"] is None and refused["message_type"] is None  # never opened
    assert "not a trusted aggregator" in refused["reason"]
    assert (screened["endpoint"], screened["body_size"], screened["request_id"]) == (
        "aux",
        123,
        "r3",
    )


def test_a_stranger_is_warned_about_once_per_run(caplog: pytest.LogCaptureFixture) -> None:
    gate = RequestGate(ME, policy=TRUST_SERVER)
    body = encode_message(flower_message())
    with caplog.at_level(logging.DEBUG, logger="syft_flwr.grid.gate"):
        for index in range(50):
            with pytest.raises(UnauthorizedSenderError):
                gate.admit(request(body, rid=f"r{index}", sender=MALLORY))
        gate.serving_run = 8
        with pytest.raises(UnauthorizedSenderError):
            gate.admit(request(body, rid="again", sender=MALLORY))
    warnings = [r for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 2 and all(MALLORY in r.getMessage() for r in warnings)


def test_a_second_delivery_of_a_message_gets_the_reply_already_given(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    gate = RequestGate(ME, policy=TRUST_SERVER)
    body = encode_message(flower_message())
    first = gate.admit(request(body))
    assert first is not None and first.answered is None
    reply = Message(RecordDict({"r": ConfigRecord({"n": 1})}), reply_to=first.message)
    assert gate.seal_reply(first, reply) is not None
    again = gate.admit(request(body, rid="r2"))  # a server sending it again after a crash
    assert again is not None and again.answered is reply
    assert decode_message(gate.answer_again(again) or b"").metadata.reply_to_message_id == "m1"
    # from another sender it is no second delivery of *this* message: nothing to reuse
    other = RequestGate(ME, policy=SenderPolicy([SERVER, MALLORY]))
    assert other.admit(request(body, rid="r3", sender=MALLORY)) is not None
    # once its request expired, the reply is not given again (nor is the message fresh)
    monkeypatch.setattr("syft_flwr.grid.gate.time.time", lambda: time.time_ns() / 1e9 + 3600)
    assert gate.admit(request(body, rid="r4", ttl=7200)) is None


def test_replies_kept_for_second_deliveries_stay_within_their_budget(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    import numpy as np
    from flwr.app import Array, ArrayRecord

    monkeypatch.setattr("syft_flwr.grid.gate.REPLY_CACHE_BYTES", 3500)  # 3 replies of ~1.1 kB
    gate = RequestGate(ME, policy=TRUST_SERVER)
    admitted = []
    for index in range(3):
        item = gate.admit(request(encode_message(flower_message(f"m{index}")), rid=f"r{index}"))
        assert item is not None
        arrays = ArrayRecord({"w": Array(np.zeros(250, dtype=np.float32))})  # 1000 bytes
        gate.seal_reply(item, Message(RecordDict({"a": arrays}), reply_to=item.message))
        admitted.append(item)
    big = gate.admit(request(encode_message(flower_message("m9")), rid="r9"))
    assert big is not None
    huge = ArrayRecord({"w": Array(np.zeros(1000, dtype=np.float32))})  # over the budget alone
    gate.seal_reply(big, Message(RecordDict({"a": huge}), reply_to=big.message))
    assert gate.admit(request(encode_message(flower_message("m9")), rid="x9")) is None
    kept = [
        gate.admit(request(encode_message(flower_message(f"m{i}")), rid=f"x{i}")) for i in range(3)
    ]
    assert all(item is not None and item.answered is not None for item in kept)


class _Screening(Transport):
    """Just enough of a transport to install a gate on: it only reports its capabilities."""

    def __init__(
        self, screens: bool = False, delivers_once: bool = False, frames: bool = False
    ) -> None:
        super().__init__(TransportSettings(ME))
        self._capabilities = TransportCapabilities(
            notifies=True,
            screens_requests=screens,
            delivers_once=delivers_once,
            accepts_frames=frames,
        )

    @property
    def capabilities(self) -> TransportCapabilities:
        return self._capabilities

    def send(self, *args: object) -> str:
        raise AssertionError("not used")

    def poll(self, future_id: str) -> None:
        raise AssertionError("not used")

    def forget(self, future_id: str) -> None:
        raise AssertionError("not used")

    def serve(self, *args: object) -> None:
        raise AssertionError("not used")

    def run(self) -> None:
        raise AssertionError("not used")

    def stop(self) -> None:
        pass


def test_the_sender_policy_is_asked_once_per_request() -> None:
    """Sender policy has one owner per request: the transport's screen when it screens with
    this very gate, else :meth:`RequestGate.admit`; never both, never neither."""
    asked: list[str] = []

    class Counting(SenderPolicy):
        def refusal(self, sender: str) -> str | None:
            asked.append(sender)
            return super().refusal(sender)

    body = encode_message(flower_message())
    screening = _Screening(screens=True)
    gate = RequestGate(ME, policy=Counting([SERVER]))
    gate.install(screening)
    assert screening.screen_request(RequestHead("r1", SERVER, ME, "flwr/app", "messages")) is None
    assert gate.admit(request(body)) is not None
    assert asked == [SERVER], "admit asked the policy again after the transport's screen"

    for transport, rid in ((_Screening(screens=False), "r2"), (_Screening(screens=True), "r3")):
        asked.clear()
        gate = RequestGate(ME, policy=Counting([SERVER]))
        gate.install(transport)
        if transport.capabilities.screens_requests:
            transport.set_request_screen(lambda head: None)  # someone else's screen now
        with pytest.raises(UnauthorizedSenderError):
            gate.admit(request(encode_message(flower_message(f"m{rid}")), rid, sender=MALLORY))
        assert asked == [MALLORY], "a request no screen of this gate saw must be checked here"


def test_request_ids_are_remembered_only_where_the_transport_does_not() -> None:
    """A transport that declares ``delivers_once`` owns "this request id once": the gate does
    not keep a second memory of it. Any other transport may deliver twice, and the gate drops
    the second delivery."""
    for delivers_once in (False, True):
        gate = RequestGate(ME, policy=TRUST_SERVER)
        gate.install(_Screening(delivers_once=delivers_once))
        plain = encode_message(flower_message(""))  # no message id: only the request id counts
        assert gate.admit(request(plain)) is not None
        again = gate.admit(request(plain))
        assert (again is not None) is delivers_once


def test_a_plaintext_reply_goes_as_frames_only_to_a_transport_that_takes_them() -> None:
    """The reply's array buffers reach a framing transport as they are (no join); a transport
    written against ``bytes`` gets the joined envelope."""
    weights = Array(np.arange(2048, dtype=np.float32))
    for frames in (True, False):
        gate = RequestGate(ME, policy=TRUST_SERVER)
        gate.install(_Screening(frames=frames))
        admitted = gate.admit(request(encode_message(flower_message(f"m-{frames}"))))
        assert admitted is not None
        reply = Message(RecordDict({"a": ArrayRecord({"w": weights})}), reply_to=admitted.message)
        body = gate.seal_reply(admitted, reply)
        assert body is not None
        assert isinstance(body, bytes) is not frames
        if frames:
            assert any(frame is weights.data for frame in body), "the reply's array was copied"
        assert decode_message(join_body(body)).metadata.reply_to_message_id == f"m-{frames}"
