"""Aux requests: the wire form, the handler registry, the serving side and the sender.

Senders and datasites are real: memory transports on a private network, a real ``SyftGrid``
at the aux endpoint, real Flower messages. Every wait is bounded by the request's timeout.
"""

from __future__ import annotations

import logging
import math
import threading
import time
from collections.abc import Callable, Iterator

import pytest
from flwr.app import ConfigRecord, Error, Message, Metadata, RecordDict
from flwr.common.constant import ErrorCode
from hypothesis import given
from hypothesis import strategies as st

from syft_flwr.authorization import SenderPolicy
from syft_flwr.errors import (
    AuxError,
    GridError,
    RequestRefusedError,
    SyftFlwrError,
    UnauthorizedSenderError,
)
from syft_flwr.grid.gate import RequestGate
from syft_flwr.grid.syft_grid import SyftGrid
from syft_flwr.message_factory import message_with_metadata
from syft_flwr.node_ids import node_id_for
from syft_flwr.services.auxiliary import (
    AUX_ENDPOINT,
    AUX_ERROR_BAD_REQUEST,
    AUX_ERROR_HANDLER_FAILED,
    AUX_ERROR_UNKNOWN_TOPIC,
    AUX_GROUP_ID,
    AUX_HEADER_KEY,
    AUX_VERSION,
    AuxHandlerRegistry,
    AuxReply,
    AuxRequest,
    AuxSender,
    AuxService,
    AuxStatus,
    build_aux_request,
    parse_aux_request,
    serve_aux,
)
from syft_flwr.transport import Request, TransportSettings
from syft_flwr.wire import decode_message, encode_message
from syft_flwr_memory.network import MemoryNetwork
from syft_flwr_memory.transport import MemoryTransport

APP = "flwr/aux-test"
SERVER = "server@aux.test"
ALICE = "alice@aux.test"
BOB = "bob@aux.test"
WAIT = 20.0
"""Upper bound of every wait for an answer that is expected; passing tests never come close."""

MakeTransport = Callable[..., MemoryTransport]
Serve = Callable[[str, AuxHandlerRegistry], MemoryTransport]


@pytest.fixture
def make() -> Iterator[MakeTransport]:
    network = MemoryNetwork()
    made: list[MemoryTransport] = []

    def factory(identity: str, **options: object) -> MemoryTransport:
        transport = MemoryTransport(TransportSettings(identity, options), network=network)
        made.append(transport)
        return transport

    yield factory
    for transport in made:
        transport.close()
    network.close()


@pytest.fixture
def serve(make: MakeTransport) -> Iterator[Serve]:
    """``serve(email, registry)``: that datasite answers aux requests from a thread."""
    running: list[tuple[MemoryTransport, threading.Thread]] = []

    def start(email: str, registry: AuxHandlerRegistry) -> MemoryTransport:
        transport = make(email)
        serve_aux(transport, APP, registry, senders=[SERVER])
        thread = threading.Thread(target=transport.run, daemon=True)
        thread.start()
        running.append((transport, thread))
        return transport

    yield start
    for transport, thread in running:
        transport.stop()
        thread.join(WAIT)
        assert not thread.is_alive()


def aux_sender(
    make: MakeTransport, datasites: list[str], run_id: int | None = 7, **options: object
) -> AuxSender:
    grid = SyftGrid(
        APP,
        datasites,
        make(SERVER, **options),
        endpoint=AUX_ENDPOINT,
        msg_timeout=WAIT,
        reports_rounds=False,
    )
    if run_id is not None:
        grid.set_run(run_id)
    return AuxSender(grid)


def echo_registry(calls: list[AuxRequest] | None = None) -> AuxHandlerRegistry:
    registry = AuxHandlerRegistry()

    def echo(request: AuxRequest) -> RecordDict:
        if calls is not None:
            calls.append(request)
        return RecordDict({"echo": ConfigRecord({"topic": request.topic, "from": request.sender})})

    registry.register("echo", echo)
    return registry


def request_record(**values: int | str) -> RecordDict:
    return RecordDict({"args": ConfigRecord(dict(values))})


# -- wire form ---------------------------------------------------------------------------------


def test_request_carries_the_header_and_leaves_the_callers_records_alone() -> None:
    caller = request_record(x=1)
    message = build_aux_request("echo", caller, run_id=3, dst_node_id=42, ttl=5.0)
    assert list(caller.keys()) == ["args"]
    metadata = message.metadata
    assert (metadata.message_type, metadata.group_id) == ("system", AUX_GROUP_ID)
    assert (metadata.run_id, metadata.dst_node_id, metadata.ttl) == (3, 42, 5.0)
    assert dict(message.content[AUX_HEADER_KEY]) == {"topic": "echo", "version": AUX_VERSION}


@given(
    topic=st.text(min_size=1, max_size=40).filter(str.strip),
    values=st.dictionaries(st.text(min_size=1, max_size=10), st.integers(-(2**62), 2**62)),
)
def test_request_survives_the_wire(topic: str, values: dict[str, int]) -> None:
    content = RecordDict({"args": ConfigRecord(dict(values))})
    sent = build_aux_request(topic, content, run_id=1, dst_node_id=9, ttl=10.0)
    parsed_topic, parsed = parse_aux_request(decode_message(encode_message(sent)))
    assert parsed_topic == topic
    assert list(parsed.keys()) == ["args"] and dict(parsed["args"]) == values


@pytest.mark.parametrize("topic", [None, 3, b"echo", "", "   "])
def test_request_with_a_bad_topic_is_refused(topic: object) -> None:
    with pytest.raises(AuxError, match="topic"):
        build_aux_request(topic, RecordDict(), run_id=1, dst_node_id=9, ttl=1.0)  # type: ignore[arg-type]


def test_request_must_be_a_record_dict_without_the_reserved_key() -> None:
    with pytest.raises(AuxError, match="RecordDict"):
        build_aux_request("t", {"a": 1}, run_id=1, dst_node_id=9, ttl=1.0)  # type: ignore[arg-type]
    reserved = RecordDict({AUX_HEADER_KEY: ConfigRecord({"topic": "x"})})
    with pytest.raises(AuxError, match="reserved"):
        build_aux_request("t", reserved, run_id=1, dst_node_id=9, ttl=1.0)


def message(
    content: RecordDict | None,
    *,
    message_type: str = "system",
    group_id: str = AUX_GROUP_ID,
    error: Error | None = None,
) -> Message:
    metadata = Metadata(
        run_id=5,
        message_id="m1",
        src_node_id=1,
        dst_node_id=node_id_for(ALICE),
        reply_to_message_id="",
        group_id=group_id,
        created_at=time.time(),
        ttl=30.0,
        message_type=message_type,
    )
    return message_with_metadata(metadata, content=content, error=error)


def header(**values: object) -> RecordDict:
    return RecordDict({AUX_HEADER_KEY: ConfigRecord(values)})  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("bad", "why"),
    [
        (message(header(topic="t", version=1), message_type="train"), "not an aux request"),
        (message(header(topic="t", version=1), group_id="final"), "not an aux request"),
        (message(None, error=Error(1, "x")), "carries an error"),
        (message(RecordDict()), "no 'syft_flwr.aux' header"),
        (message(header(topic="t", version=2)), "version 2"),
        (message(header(topic="t")), "version None"),
        (message(header(version=1)), "no topic"),
        (message(header(topic=" ", version=1)), "no topic"),
    ],
)
def test_malformed_aux_messages_are_named(bad: Message, why: str) -> None:
    with pytest.raises(AuxError, match=why):
        parse_aux_request(bad)


# -- the registry ------------------------------------------------------------------------------


@pytest.mark.parametrize(("topic", "why"), [(None, "string"), (7, "string"), ("", "non-empty")])
def test_register_refuses_a_bad_topic(topic: object, why: str) -> None:
    with pytest.raises(AuxError, match=why):
        AuxHandlerRegistry().register(topic, lambda request: None)  # type: ignore[arg-type]


def test_register_refuses_a_whitespace_topic() -> None:
    with pytest.raises(AuxError, match="non-empty"):
        AuxHandlerRegistry().register(" \t", lambda request: None)


def test_register_refuses_a_handler_that_is_not_callable() -> None:
    with pytest.raises(AuxError, match="callable"):
        AuxHandlerRegistry().register("t", "not a function")  # type: ignore[arg-type]


def test_register_refuses_a_second_handler_for_a_topic() -> None:
    registry = AuxHandlerRegistry()
    registry.register("t", lambda request: None)
    with pytest.raises(AuxError, match="already has a handler"):
        registry.register("t", lambda request: None)
    registry.unregister("t")
    registry.register("t", lambda request: None)
    assert registry.topics == frozenset({"t"})


def test_unregister_of_an_unknown_topic_is_an_error() -> None:
    with pytest.raises(AuxError, match="no handler to unregister"):
        AuxHandlerRegistry().unregister("nope")


def aux_message(topic: str, content: RecordDict | None = None) -> Message:
    sent = build_aux_request(
        topic, content or RecordDict(), run_id=5, dst_node_id=node_id_for(ALICE), ttl=30.0
    )
    sent.metadata.__dict__["_message_id"] = "m1"
    return sent


def test_dispatch_hands_the_handler_the_request_and_replies_with_its_records() -> None:
    calls: list[AuxRequest] = []
    reply = echo_registry(calls).dispatch(aux_message("echo", request_record(x=1)), SERVER)
    assert not reply.has_error()
    assert reply.metadata.reply_to_message_id == "m1"
    assert reply.metadata.src_node_id == node_id_for(ALICE)
    assert dict(reply.content["echo"]) == {"topic": "echo", "from": SERVER}
    (request,) = calls
    assert (request.topic, request.sender, request.run_id) == ("echo", SERVER, 5)
    assert list(request.content.keys()) == ["args"]


def test_dispatch_of_a_handler_returning_none_is_an_empty_reply() -> None:
    registry = AuxHandlerRegistry()
    registry.register("quiet", lambda request: None)
    reply = registry.dispatch(aux_message("quiet"), SERVER)
    assert reply.has_content() and len(reply.content) == 0


def test_dispatch_of_an_unknown_topic_is_a_typed_error_reply() -> None:
    reply = echo_registry().dispatch(aux_message("nope"), SERVER)
    assert reply.error.code == AUX_ERROR_UNKNOWN_TOPIC
    assert "'nope'" in reply.error.reason
    assert reply.metadata.reply_to_message_id == "m1"


def test_dispatch_of_a_raising_handler_is_logged_and_a_typed_error_reply(
    caplog: pytest.LogCaptureFixture,
) -> None:
    registry = AuxHandlerRegistry()

    def boom(request: AuxRequest) -> RecordDict:
        raise RuntimeError("disk on fire")

    registry.register("boom", boom)
    with caplog.at_level(logging.ERROR, logger="syft_flwr.services.auxiliary"):
        reply = registry.dispatch(aux_message("boom"), SERVER)
    assert reply.error.code == AUX_ERROR_HANDLER_FAILED
    assert "RuntimeError: disk on fire" in reply.error.reason
    assert "disk on fire" in caplog.text


def test_dispatch_of_a_handler_returning_the_wrong_type_is_a_handler_failure() -> None:
    registry = AuxHandlerRegistry()
    registry.register("bad", lambda request: {"not": "records"})  # type: ignore[arg-type,return-value]
    reply = registry.dispatch(aux_message("bad"), SERVER)
    assert reply.error.code == AUX_ERROR_HANDLER_FAILED
    assert "returned dict" in reply.error.reason


def test_dispatch_of_a_malformed_request_is_a_bad_request_reply() -> None:
    reply = echo_registry().dispatch(message(RecordDict()), SERVER)
    assert reply.error.code == AUX_ERROR_BAD_REQUEST


# -- replies -----------------------------------------------------------------------------------


@pytest.mark.parametrize("status", list(AuxStatus))
def test_reply_is_ok_when_answered_or_sent(status: AuxStatus) -> None:
    assert AuxReply(ALICE, status).ok is (status in (AuxStatus.OK, AuxStatus.SENT))


# -- the serving side --------------------------------------------------------------------------


def request_for(body: bytes, rid: str = "r1", ttl: float = 30.0, sender: str = SERVER) -> Request:
    now = time.time()
    return Request(rid, sender, ALICE, APP, AUX_ENDPOINT, body, now, now + ttl)


def test_service_answers_once_and_refuses_what_the_gate_refuses() -> None:
    calls: list[AuxRequest] = []
    service = AuxService(echo_registry(calls), RequestGate(ALICE, policy=SenderPolicy([SERVER])))
    body = encode_message(aux_message("echo"))
    reply = decode_message(service.handle(request_for(body)) or b"")
    assert dict(reply.content["echo"])["topic"] == "echo"
    assert service.handle(request_for(body)) is None  # the same request again
    again = decode_message(service.handle(request_for(body, rid="r2")) or b"")  # same message
    assert again.metadata.reply_to_message_id == reply.metadata.reply_to_message_id
    with pytest.raises(RequestRefusedError, match="malformed"):
        service.handle(request_for(b"garbage", rid="r3"))
    stranger = encode_message(aux_message("echo"))
    with pytest.raises(UnauthorizedSenderError, match=r"mallory@aux\.test is not a trusted"):
        service.handle(request_for(stranger, rid="r4", sender="mallory@aux.test"))
    assert len(calls) == 1
    assert all(request.sender == SERVER and not request.authenticated for request in calls)


def test_service_drops_a_message_that_expired_before_dispatch() -> None:
    calls: list[AuxRequest] = []
    service = AuxService(echo_registry(calls), RequestGate(ALICE, policy=SenderPolicy([SERVER])))
    stale = aux_message("echo")
    stale.metadata.__dict__["_created_at"] = time.time() - 60  # its own TTL (30 s) is over
    assert service.handle(request_for(encode_message(stale))) is None
    assert calls == []


# -- the sender --------------------------------------------------------------------------------


def test_sender_needs_an_aux_grid(make: MakeTransport) -> None:
    grid = SyftGrid(APP, [ALICE], make(SERVER))
    with pytest.raises(AuxError, match="endpoint='aux'"):
        AuxSender(grid)


@pytest.mark.parametrize("targets", [None, [], [ALICE, BOB], [BOB, ALICE, BOB]])
def test_targets_none_or_empty_mean_every_datasite(
    make: MakeTransport, serve: Serve, targets: list[str] | None
) -> None:
    serve(ALICE, echo_registry())
    serve(BOB, echo_registry())
    replies = aux_sender(make, [ALICE, BOB]).send_aux_request(
        targets, "echo", request_record(), WAIT
    )
    assert set(replies) == {ALICE, BOB}
    assert all(reply.status is AuxStatus.OK for reply in replies.values())
    assert all(reply.datasite == email for email, reply in replies.items())
    assert all(reply.content is not None for reply in replies.values())
    assert replies[ALICE].content["echo"]["from"] == SERVER  # type: ignore[index]


def test_only_the_named_targets_are_asked(make: MakeTransport, serve: Serve) -> None:
    calls: list[AuxRequest] = []
    serve(ALICE, echo_registry(calls))
    serve(BOB, echo_registry(calls))
    replies = aux_sender(make, [ALICE, BOB]).send_aux_request([BOB], "echo", RecordDict(), WAIT)
    assert list(replies) == [BOB]
    assert len(calls) == 1


@pytest.mark.parametrize(
    ("targets", "why"),
    [
        (["mallory@aux.test"], "not a datasite of this run"),
        ([ALICE, "mallory@aux.test"], "not a datasite of this run"),
        ([ALICE, 3], "must be a datasite email"),
        (ALICE, "not the string"),
    ],
)
def test_bad_targets_fail_before_anything_is_sent(
    make: MakeTransport, serve: Serve, targets: object, why: str
) -> None:
    calls: list[AuxRequest] = []
    serve(ALICE, echo_registry(calls))
    sender = aux_sender(make, [ALICE, BOB])
    with pytest.raises(AuxError, match=why):
        sender.send_aux_request(targets, "echo", RecordDict(), WAIT)  # type: ignore[arg-type]
    with pytest.raises(AuxError, match=why):
        sender.fire_and_forget_aux_request(targets, "echo", RecordDict())  # type: ignore[arg-type]
    # Alice serves in arrival order: had anything been sent, it would be answered first.
    sender.send_aux_request([ALICE], "echo", request_record(probe=1), WAIT)
    assert [dict(call.content["args"]) for call in calls] == [{"probe": 1}]


@pytest.mark.parametrize("timeout", [0, -1, math.nan, math.inf, True, "5", None])
def test_timeout_must_be_a_positive_number(make: MakeTransport, timeout: object) -> None:
    with pytest.raises(AuxError, match="positive number of seconds"):
        aux_sender(make, [ALICE]).send_aux_request(None, "echo", RecordDict(), timeout)  # type: ignore[arg-type]


def test_fire_and_forget_ttl_must_be_a_positive_number(make: MakeTransport) -> None:
    with pytest.raises(AuxError, match="ttl must be a positive"):
        aux_sender(make, [ALICE]).fire_and_forget_aux_request(None, "echo", RecordDict(), ttl=0)


def test_bad_topic_or_request_fails_before_sending(make: MakeTransport) -> None:
    sender = aux_sender(make, [ALICE])
    with pytest.raises(AuxError, match="topic"):
        sender.send_aux_request(None, "", RecordDict(), WAIT)
    with pytest.raises(AuxError, match="RecordDict"):
        sender.send_aux_request(None, "echo", {"x": 1}, WAIT)  # type: ignore[arg-type]
    with pytest.raises(AuxError, match="reserved"):
        sender.send_aux_request(None, "echo", header(topic="x"), WAIT)


def test_secure_without_encryption_is_refused_before_sending(make: MakeTransport) -> None:
    sender = aux_sender(make, [ALICE])
    with pytest.raises(AuxError, match="encryption is off"):
        sender.send_aux_request(None, "echo", RecordDict(), WAIT, secure=True)
    with pytest.raises(AuxError, match="encryption is off"):
        sender.fire_and_forget_aux_request(None, "echo", RecordDict(), secure=True)


def test_a_grid_without_a_run_fails_before_sending(make: MakeTransport) -> None:
    with pytest.raises(GridError, match="set_run"):
        aux_sender(make, [ALICE], run_id=None).send_aux_request(None, "echo", RecordDict(), WAIT)


def test_every_outcome_comes_back_per_datasite(make: MakeTransport, serve: Serve) -> None:
    carol = "carol@aux.test"
    registry = echo_registry()

    def boom(request: AuxRequest) -> RecordDict:
        raise ValueError("no")

    registry.register("boom", boom)
    serve(ALICE, registry)
    serve(BOB, registry)
    make(carol)  # exists but never serves: silent
    sender = aux_sender(make, [ALICE, BOB, carol])
    replies = sender.send_aux_request([ALICE, BOB], "boom", RecordDict(), WAIT)
    assert {r.status for r in replies.values()} == {AuxStatus.HANDLER_FAILED}
    assert "ValueError: no" in replies[ALICE].detail and replies[ALICE].content is None
    replies = sender.send_aux_request([ALICE], "nope", RecordDict(), WAIT)
    assert replies[ALICE].status is AuxStatus.UNKNOWN_TOPIC
    started = time.monotonic()
    replies = sender.send_aux_request([carol], "echo", RecordDict(), 0.5)
    assert replies[carol].status is AuxStatus.TIMEOUT
    assert "no reply" in replies[carol].detail
    assert time.monotonic() - started < WAIT
    # the serving loops went on
    replies = sender.send_aux_request([ALICE, BOB], "echo", RecordDict(), WAIT)
    assert {r.status for r in replies.values()} == {AuxStatus.OK}


def test_a_datasite_without_the_aux_endpoint_rejects(make: MakeTransport) -> None:
    transport = make(ALICE)
    transport.serve(APP, "messages", lambda request: None)  # a Flower-only (0.5.x) client
    thread = threading.Thread(target=transport.run, daemon=True)
    thread.start()
    try:
        replies = aux_sender(make, [ALICE]).send_aux_request(None, "echo", RecordDict(), WAIT)
    finally:
        transport.stop()
        thread.join(WAIT)
    assert replies[ALICE].status is AuxStatus.REJECTED
    assert "unknown endpoint" in replies[ALICE].detail


def test_a_failed_send_is_unreachable_for_that_target_only(
    make: MakeTransport, serve: Serve
) -> None:
    serve(ALICE, echo_registry())
    serve(BOB, echo_registry())
    sender = aux_sender(make, [ALICE, BOB], max_body_size=4096)
    big = RecordDict({"blob": ConfigRecord({"b": b"x" * 8192})})
    replies = sender.send_aux_requests({ALICE: big, BOB: RecordDict()}, "echo", WAIT)
    assert replies[ALICE].status is AuxStatus.UNREACHABLE
    assert "BodyTooLargeError" in replies[ALICE].detail
    assert replies[BOB].status is AuxStatus.OK
    forgotten = sender.fire_and_forget_aux_request(None, "echo", big)
    assert {r.status for r in forgotten.values()} == {AuxStatus.UNREACHABLE}


def test_failures_are_warnings_unless_optional(
    make: MakeTransport, caplog: pytest.LogCaptureFixture
) -> None:
    make(ALICE)
    sender = aux_sender(make, [ALICE])
    with caplog.at_level(logging.DEBUG, logger="syft_flwr.services.auxiliary"):
        sender.send_aux_request(None, "echo", RecordDict(), 0.2)
        sender.send_aux_request(None, "echo", RecordDict(), 0.2, optional=True)
    levels = [r.levelno for r in caplog.records if "aux request 'echo'" in r.getMessage()]
    assert levels == [logging.WARNING, logging.DEBUG]


def test_send_aux_requests_with_nothing_to_send_returns_nothing(make: MakeTransport) -> None:
    assert aux_sender(make, [ALICE]).send_aux_requests({}, "echo", WAIT) == {}


def test_fire_and_forget_reports_sent_and_the_request_arrives(
    make: MakeTransport, serve: Serve
) -> None:
    arrived = threading.Event()
    registry = AuxHandlerRegistry()
    registry.register("note", lambda request: arrived.set())  # type: ignore[func-returns-value]
    serve(ALICE, registry)
    replies = aux_sender(make, [ALICE]).fire_and_forget_aux_request(None, "note", RecordDict())
    assert replies == {ALICE: AuxReply(ALICE, AuxStatus.SENT)}
    assert arrived.wait(WAIT)


def test_error_codes_do_not_collide_with_flower() -> None:
    flower = {int(v) for k, v in vars(ErrorCode).items() if k.isupper()}
    ours = {AUX_ERROR_UNKNOWN_TOPIC, AUX_ERROR_HANDLER_FAILED, AUX_ERROR_BAD_REQUEST}
    assert not flower & ours and min(ours) >= 1000


def test_sender_errors_share_the_root() -> None:
    assert issubclass(AuxError, SyftFlwrError)


def test_send_aux_requests_needs_a_mapping(make: MakeTransport) -> None:
    with pytest.raises(AuxError, match="requests must map datasites"):
        aux_sender(make, [ALICE]).send_aux_requests([ALICE], "echo", WAIT)  # type: ignore[arg-type]
