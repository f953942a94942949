"""The conformance kit: an abstract test suite every syft-flwr transport should pass.

Modelled on fsspec's abstract tests: the suite is a set of mixin classes collected by
pytest through a subclass in the plugin's own tests. The one thing the suite needs is a
way to build connected transport instances; by default it asks the plugin for local
options from the transport class's ``local_options``, so a plugin's whole test file can be::

    from syft_flwr.testing.transport_suite import TransportSuite

    class TestPigeonTransport(TransportSuite):
        transport_name = "pigeon"

A transport whose plugin cannot describe a local setup overrides the ``make_transport``
fixture instead. Optional behaviour is switched on by the transport's declared
:class:`~syft_flwr.transport.TransportCapabilities` (``max_body_size``, ``persistent``) and
can be narrowed with the class attributes of :class:`TransportFixtures`.

A transport may hand a received body in any form of :data:`~syft_flwr.transport.ReceivedData`
(``bytes``, a ``memoryview``, a :class:`~syft_flwr.transport.ReceivedBody`): the suite reads
each as ``bytes(body)`` (its bodies are small) and passes the grid's through the core's decoder.

Requires the ``test`` extra of ``syft-flwr-core`` (pytest and hypothesis).
"""

from __future__ import annotations

import os
import threading
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager

import pytest
from flwr.app import ConfigRecord, Context, Message, RecordDict
from flwr.clientapp import ClientApp
from flwr.common.constant import ErrorCode

from syft_flwr.client.runner import ClientRunner
from syft_flwr.errors import BodyTooLargeError, InvalidAddressError, RequestRefusedError
from syft_flwr.grid.syft_grid import SyftGrid
from syft_flwr.services.auxiliary import AuxStatus
from syft_flwr.testing.attacker import ATTACK_MARKER, Attacker
from syft_flwr.testing.fixtures import (
    APP,
    ENDPOINT,
    MAX_TESTED_BODY,
    MakeTransport,
    TransportFixtures,
)
from syft_flwr.testing.local import empty_context
from syft_flwr.testing.protocol import ProtocolMachineTests, instruction
from syft_flwr.transport import (
    Body,
    Reply,
    ReplyStatus,
    Request,
    RequestHandler,
    RequestHead,
    Transport,
    TransportCapabilities,
    outgoing_body,
)
from syft_flwr.wire import decode_message, encode_message

__all__ = [
    "AuthorizationTests",
    "BodyTests",
    "DeliveryTests",
    "ExpiryTests",
    "GridTests",
    "MakeTransport",
    "ProtocolMachineTests",
    "RefusalTests",
    "RestartTests",
    "TransportFixtures",
    "TransportSuite",
]


def _signed_echo(identity: str) -> RequestHandler:
    """Answers ``<identity>|<body>``, so a reply shows who answered what."""
    return lambda request: f"{identity}|".encode() + bytes(request.body)


def _answer(body: bytes) -> RequestHandler:
    return lambda request: body


def _recording(calls: list[Request], body: bytes) -> RequestHandler:
    """Answers ``body`` and records every request it was handed."""

    def handle(request: Request) -> bytes:
        calls.append(request)
        return body

    return handle


class DeliveryTests(TransportFixtures):
    """Requests reach the right handler; replies reach the right future."""

    def test_request_reaches_handler_and_reply_matches(self, make_transport: MakeTransport) -> None:
        server, client = (
            make_transport(self.identity("server")),
            make_transport(self.identity("client")),
        )
        seen: list[Request] = []

        def handler(request: Request) -> bytes:
            seen.append(request)
            return b"re:" + bytes(request.body)

        client.serve(APP, ENDPOINT, handler)
        with self.serving(client):
            future = server.send(client.identity, APP, ENDPOINT, b"hello", self.later())
            reply = self.wait_reply(server, future)
        assert reply.status is ReplyStatus.OK
        assert bytes(reply.body) == b"re:hello"
        assert reply.future_id == future
        (request,) = seen
        assert request.sender == server.identity, "the sender must be set by the transport"
        assert (request.recipient, request.app, request.endpoint) == (
            client.identity,
            APP,
            ENDPOINT,
        )

    def test_future_ids_are_unique(self, make_transport: MakeTransport) -> None:
        server = make_transport(self.identity("server"))
        target = self.identity("nobody")
        futures = [server.send(target, APP, ENDPOINT, b"x", self.later()) for _ in range(50)]
        assert len(set(futures)) == len(futures)
        for future in futures:
            server.forget(future)

    def test_unknown_future_polls_none_and_forgets_quietly(
        self, make_transport: MakeTransport
    ) -> None:
        server = make_transport(self.identity("server"))
        assert server.poll(uuid.uuid4().hex) is None
        server.forget(uuid.uuid4().hex)

    def test_concurrent_senders_get_their_own_replies(self, make_transport: MakeTransport) -> None:
        clients = [make_transport(self.identity(f"client{i}")) for i in range(3)]
        senders = [make_transport(self.identity(f"sender{i}")) for i in range(4)]
        for client in clients:
            client.serve(APP, ENDPOINT, _signed_echo(client.identity))
        results: dict[tuple[int, int], Reply] = {}
        errors: list[BaseException] = []

        def send_all(index: int, sender: Transport) -> None:
            try:
                for n in range(10):
                    client = clients[(index + n) % len(clients)]
                    body = f"{index}:{n}".encode()
                    future = sender.send(client.identity, APP, ENDPOINT, body, self.later())
                    results[(index, n)] = self.wait_reply(sender, future)
            except BaseException as exc:
                errors.append(exc)

        with self.serving(clients[0]), self.serving(clients[1]), self.serving(clients[2]):
            threads = [
                threading.Thread(target=send_all, args=(i, s)) for i, s in enumerate(senders)
            ]
            for thread in threads:
                thread.start()
            for thread in threads:
                thread.join(self.timeout * 2)
        assert not errors, errors
        for (index, n), reply in results.items():
            expected_client = clients[(index + n) % len(clients)].identity
            assert bytes(reply.body) == f"{expected_client}|{index}:{n}".encode()
        assert len(results) == 40

    def test_many_datasites(self, make_transport: MakeTransport) -> None:
        server = make_transport(self.identity("server"))
        clients = [make_transport(self.identity(f"c{i}")) for i in range(self.many_datasites)]
        for client in clients:
            client.serve(APP, ENDPOINT, _answer(client.identity.encode()))
        threads = [threading.Thread(target=c.run, daemon=True) for c in clients]
        for thread in threads:
            thread.start()
        try:
            futures = {
                server.send(c.identity, APP, ENDPOINT, b"", self.later()): c for c in clients
            }
            for future, client in futures.items():
                assert bytes(self.wait_reply(server, future).body) == client.identity.encode()
        finally:
            for client in clients:
                client.stop()
            for thread in threads:
                thread.join(self.timeout)
        assert not any(thread.is_alive() for thread in threads), "run() ignored stop()"

    def test_futures_are_private_to_their_sender(self, make_transport: MakeTransport) -> None:
        server, client = (
            make_transport(self.identity("server")),
            make_transport(self.identity("client")),
        )
        stranger = make_transport(self.identity("stranger"))
        client.serve(APP, ENDPOINT, _answer(b"secret"))
        with self.serving(client):
            future = server.send(client.identity, APP, ENDPOINT, b"x", self.later())
            assert bytes(self.wait_reply(server, future).body) == b"secret"
        assert stranger.poll(future) is None, "another identity could read the reply"
        stranger.forget(future)
        assert server.poll(future) is not None, "another identity could forget the future"

    def test_unknown_endpoint_never_reaches_another_handler(
        self, make_transport: MakeTransport
    ) -> None:
        server, client = (
            make_transport(self.identity("server")),
            make_transport(self.identity("client")),
        )
        called: list[Request] = []
        client.serve(APP, ENDPOINT, _recording(called, b"ok"))
        with self.serving(client):
            future = server.send(
                client.identity, APP, "no-such-endpoint", b"x", self.later(self.ttl)
            )
            reply = self.wait_reply(server, future, self.ttl + self.timeout)
        assert reply.status in (ReplyStatus.REJECTED, ReplyStatus.EXPIRED)
        assert called == []

    @pytest.mark.parametrize(
        "datasite", ["../escape@x.org", "a/b@x.org", "", "two words@x.org", "nobody"]
    )
    def test_unsafe_datasite_is_refused(self, make_transport: MakeTransport, datasite: str) -> None:
        server = make_transport(self.identity("server"))
        with pytest.raises(InvalidAddressError):
            server.send(datasite, APP, ENDPOINT, b"x", self.later())

    @pytest.mark.parametrize("endpoint", ["../up", "a/../b", "", "/abs"])
    def test_unsafe_endpoint_is_refused(self, make_transport: MakeTransport, endpoint: str) -> None:
        server = make_transport(self.identity("server"))
        with pytest.raises(InvalidAddressError):
            server.send(self.identity("client"), APP, endpoint, b"x", self.later())


class RefusalTests(TransportFixtures):
    """A refused request is answered ``REJECTED`` with the reason, and a screen is honoured."""

    def test_a_refusing_handler_is_answered_rejected_with_its_reason(
        self, make_transport: MakeTransport
    ) -> None:
        server, client = (
            make_transport(self.identity("server")),
            make_transport(self.identity("client")),
        )

        def refuse(request: Request) -> bytes:
            raise RequestRefusedError(f"{request.sender} may not ask this")

        client.serve(APP, ENDPOINT, refuse)
        with self.serving(client):
            future = server.send(client.identity, APP, ENDPOINT, b"x", self.later())
            reply = self.wait_reply(server, future)
        assert reply.status is ReplyStatus.REJECTED, (
            "serve(): a handler raising RequestRefusedError must be answered REJECTED"
        )
        assert f"{server.identity} may not ask this" in reply.detail, (
            "serve(): the REJECTED reply must carry the RequestRefusedError's message as detail"
        )

    def test_serving_goes_on_after_a_refusal(self, make_transport: MakeTransport) -> None:
        server, client = (
            make_transport(self.identity("server")),
            make_transport(self.identity("client")),
        )

        def refuse_first(request: Request) -> bytes:
            if bytes(request.body) == b"no":
                raise RequestRefusedError("refused")
            return b"yes"

        client.serve(APP, ENDPOINT, refuse_first)
        with self.serving(client):
            refused = server.send(client.identity, APP, ENDPOINT, b"no", self.later())
            assert self.wait_reply(server, refused).status is ReplyStatus.REJECTED
            accepted = server.send(client.identity, APP, ENDPOINT, b"ok", self.later())
            assert bytes(self.wait_reply(server, accepted).body) == b"yes"

    def test_a_screened_sender_is_refused_before_its_body_is_read(
        self, make_transport: MakeTransport
    ) -> None:
        client = make_transport(self.identity("client"))
        if not client.capabilities.screens_requests:
            pytest.skip("the transport does not declare screens_requests")
        trusted, stranger = (
            make_transport(self.identity("trusted")),
            make_transport(self.identity("stranger")),
        )
        heads: list[RequestHead] = []
        bodies: list[bytes] = []

        def screen(head: RequestHead) -> str | None:
            heads.append(head)
            return None if head.sender == trusted.identity else f"{head.sender} is not trusted"

        def handler(request: Request) -> bytes:
            bodies.append(bytes(request.body))
            return b"served"

        client.set_request_screen(screen)
        client.serve(APP, ENDPOINT, handler)
        with self.serving(client):
            refused = stranger.send(client.identity, APP, ENDPOINT, b"stranger", self.later())
            reply = self.wait_reply(stranger, refused)
            served = trusted.send(client.identity, APP, ENDPOINT, b"trusted", self.later())
            assert bytes(self.wait_reply(trusted, served).body) == b"served"
        assert reply.status is ReplyStatus.REJECTED, "screen_request(): a refusal must be REJECTED"
        assert f"{stranger.identity} is not trusted" in reply.detail
        assert bodies == [b"trusted"], "a screened-out request reached the handler"
        head = next(h for h in heads if h.sender == stranger.identity)
        assert (head.recipient, head.app, head.endpoint) == (client.identity, APP, ENDPOINT)


class BodyTests(TransportFixtures):
    """Bodies are opaque bytes: every byte value, empty, up to the declared maximum."""

    def round_trip(self, make_transport: MakeTransport, body: Body) -> bytes:
        server, client = (
            make_transport(self.identity("server")),
            make_transport(self.identity("client")),
        )
        client.serve(APP, ENDPOINT, lambda request: bytes(request.body)[::-1])
        with self.serving(client):
            sent = outgoing_body(server, body)  # what the grid hands this transport
            future = server.send(client.identity, APP, ENDPOINT, sent, self.later())
            reply = self.wait_reply(server, future)
        assert reply.status is ReplyStatus.OK
        return bytes(reply.body)

    def test_body_given_as_frames_arrives_as_their_concatenation(
        self, make_transport: MakeTransport
    ) -> None:
        """``send`` with frames (as the grid passes the codec's, when the transport declares
        ``accepts_frames``): the request body is the frames joined, in order, whatever mix of
        ``bytes``, ``memoryview`` and empty frames they are."""
        data = os.urandom(3000)
        frames: list[bytes | memoryview] = [
            b"\x00head",
            memoryview(data)[:1000],
            b"",
            memoryview(bytearray(data[1000:2999])),
            data[2999:],
        ]
        expected = b"\x00head" + data
        assert self.round_trip(make_transport, frames) == expected[::-1], (
            "Transport.send: a body given as frames must arrive as their concatenation"
        )

    def test_binary_body_survives(self, make_transport: MakeTransport) -> None:
        body = bytes(range(256)) * 4 + b"\x00\r\n\x1a"
        assert self.round_trip(make_transport, body) == body[::-1]

    def test_empty_body_survives(self, make_transport: MakeTransport) -> None:
        assert self.round_trip(make_transport, b"") == b""

    def declared_maximum(self, make_transport: MakeTransport) -> int:
        maximum = make_transport(self.identity("probe")).capabilities.max_body_size
        if maximum is None:
            pytest.skip("the transport declares no maximum body size")
        if maximum > MAX_TESTED_BODY:
            pytest.skip(
                f"declared maximum {maximum} is above what the kit sends ({MAX_TESTED_BODY})"
            )
        return maximum

    def test_body_of_exactly_the_maximum_is_delivered(self, make_transport: MakeTransport) -> None:
        maximum = self.declared_maximum(make_transport)
        body = os.urandom(maximum)
        assert self.round_trip(make_transport, body) == body[::-1]

    def test_body_one_byte_over_the_maximum_is_refused(self, make_transport: MakeTransport) -> None:
        maximum = self.declared_maximum(make_transport)
        server = make_transport(self.identity("server"))
        with pytest.raises(BodyTooLargeError) as info:
            server.send(self.identity("client"), APP, ENDPOINT, b"\0" * (maximum + 1), self.later())
        assert str(maximum) in str(info.value), "the error should name the limit"


class ExpiryTests(TransportFixtures):
    """Expired requests end EXPIRED and never reach a handler."""

    def test_unanswered_request_expires(self, make_transport: MakeTransport) -> None:
        server = make_transport(self.identity("server"))
        future = server.send(self.identity("silent"), APP, ENDPOINT, b"x", self.later(self.ttl))
        reply = self.wait_reply(server, future, self.ttl + self.timeout)
        assert reply.status is ReplyStatus.EXPIRED

    def test_waiters_wake_for_an_expiry(self, make_transport: MakeTransport) -> None:
        server = make_transport(self.identity("server"))
        future = server.send(self.identity("silent"), APP, ENDPOINT, b"x", self.later(self.ttl))
        started = time.monotonic()
        deadline = started + self.ttl + self.timeout
        while server.poll(future) is None and time.monotonic() < deadline:
            server.wait_ready([future], deadline - time.monotonic())
        assert server.poll(future) is not None, "wait_ready never reported the expiry"

    def test_expired_request_never_reaches_the_handler(self, make_transport: MakeTransport) -> None:
        server, client = (
            make_transport(self.identity("server")),
            make_transport(self.identity("client")),
        )
        called: list[Request] = []
        future = server.send(client.identity, APP, ENDPOINT, b"x", self.later(self.ttl))
        assert (
            self.wait_reply(server, future, self.ttl + self.timeout).status is ReplyStatus.EXPIRED
        )
        client.serve(APP, ENDPOINT, _recording(called, b"late"))
        with self.serving(client):
            probe = server.send(client.identity, APP, ENDPOINT, b"probe", self.later())
            assert self.wait_reply(server, probe).status is ReplyStatus.OK
        assert [bytes(request.body) for request in called] == [b"probe"]

    def test_an_answer_after_the_expiry_is_ignored(self, make_transport: MakeTransport) -> None:
        server, client = (
            make_transport(self.identity("server")),
            make_transport(self.identity("client")),
        )
        expired_seen, handler_entered = threading.Event(), threading.Event()

        def late_handler(request: Request) -> bytes:
            handler_entered.set()
            expired_seen.wait(self.answer_ttl + self.timeout)
            return b"too late"

        client.serve(APP, ENDPOINT, late_handler)
        with self.serving(client):
            future = server.send(client.identity, APP, ENDPOINT, b"x", self.later(self.answer_ttl))
            assert handler_entered.wait(self.timeout), "the request never reached the handler"
            assert self.wait_reply(server, future, self.answer_ttl + self.timeout).status is (
                ReplyStatus.EXPIRED
            )
            expired_seen.set()
        reply = server.poll(future)
        assert reply is not None and reply.status is ReplyStatus.EXPIRED, "a late answer won"


class RestartTests(TransportFixtures):
    """Serving can stop and start again without losing requests."""

    def test_stop_then_run_again_keeps_serving(self, make_transport: MakeTransport) -> None:
        server, client = (
            make_transport(self.identity("server")),
            make_transport(self.identity("client")),
        )
        client.serve(APP, ENDPOINT, lambda request: bytes(request.body))
        with self.serving(client):
            first = server.send(client.identity, APP, ENDPOINT, b"1", self.later())
            assert bytes(self.wait_reply(server, first).body) == b"1"
        pending = server.send(client.identity, APP, ENDPOINT, b"2", self.later())
        with self.serving(client):
            assert bytes(self.wait_reply(server, pending).body) == b"2"

    def test_stop_before_run_makes_run_return(self, make_transport: MakeTransport) -> None:
        server, client = (
            make_transport(self.identity("server")),
            make_transport(self.identity("client")),
        )
        client.serve(APP, ENDPOINT, lambda request: bytes(request.body))
        client.stop()
        client.stop()
        thread = threading.Thread(target=client.run, daemon=True)
        thread.start()
        thread.join(self.timeout)
        assert not thread.is_alive(), "a stop() before run() was forgotten: run() kept serving"
        with self.serving(client):  # and a later run() serves again
            future = server.send(client.identity, APP, ENDPOINT, b"again", self.later())
            assert bytes(self.wait_reply(server, future).body) == b"again"

    @staticmethod
    def restartable(capabilities: TransportCapabilities) -> None:
        if not capabilities.persistent:
            pytest.skip("the transport does not keep futures across a restart")

    def test_requests_wait_for_a_restarted_client(
        self, make_transport: MakeTransport, capabilities: TransportCapabilities
    ) -> None:
        self.restartable(capabilities)
        server, client_id = make_transport(self.identity("server")), self.identity("client")
        future = server.send(client_id, APP, ENDPOINT, b"queued", self.later())
        make_transport(client_id).close()  # an instance that came and went without serving
        client = make_transport(client_id)
        client.serve(APP, ENDPOINT, lambda request: bytes(request.body))
        with self.serving(client):
            assert bytes(self.wait_reply(server, future).body) == b"queued"

    def test_restarted_sender_collects_replies(
        self, make_transport: MakeTransport, capabilities: TransportCapabilities
    ) -> None:
        self.restartable(capabilities)
        server_id = self.identity("server")
        first, client = make_transport(server_id), make_transport(self.identity("client"))
        client.serve(APP, ENDPOINT, lambda request: b"re:" + bytes(request.body))
        future = first.send(client.identity, APP, ENDPOINT, b"before restart", self.later())
        first.close()
        with self.serving(client):
            second = make_transport(server_id)
            assert bytes(self.wait_reply(second, future).body) == b"re:before restart"


def _echo_app(calls: list[Message]) -> ClientApp:
    app = ClientApp()

    @app.query()
    def query(message: Message, context: Context) -> Message:
        calls.append(message)
        return Message(
            RecordDict({"echo": ConfigRecord({"id": message.metadata.message_id})}),
            reply_to=message,
        )

    return app


class FederationFixtures(TransportFixtures):
    """A server grid and client runners trusting it, over the transport under test."""

    @contextmanager
    def federation(
        self, make_transport: MakeTransport, datasites: int = 2
    ) -> Iterator[tuple[SyftGrid, list[ClientRunner], list[list[Message]], list[threading.Thread]]]:
        server = make_transport(self.identity("server"))
        clients = [make_transport(self.identity(f"client{i}")) for i in range(datasites)]
        calls: list[list[Message]] = [[] for _ in clients]
        runners = [
            ClientRunner(
                _echo_app(c), empty_context(), t, APP, trusted_aggregators=[server.identity]
            )
            for t, c in zip(clients, calls, strict=True)
        ]
        grid = SyftGrid(  # plaintext, as the runners: the suite tests the transport
            APP, [t.identity for t in clients], server, msg_timeout=self.timeout, channel=None
        )
        grid.set_run(7)
        threads = [threading.Thread(target=r.run, daemon=True) for r in runners]
        for thread in threads:
            thread.start()
        try:
            yield grid, runners, calls, threads
        finally:
            for transport in clients:
                transport.stop()
            for thread in threads:
                thread.join(self.timeout)

    @staticmethod
    def query(grid: SyftGrid, node_id: int, ttl: float | None = None) -> Message:
        return instruction(grid, node_id, "query", ttl=ttl)


class GridTests(FederationFixtures):
    """``SyftGrid`` and the client runner on top of the transport."""

    def test_every_message_gets_its_own_reply(self, make_transport: MakeTransport) -> None:
        with self.federation(make_transport) as (grid, _, calls, _):
            messages = [self.query(grid, node) for node in grid.get_node_ids() for _ in range(3)]
            replies = grid.send_and_receive(messages, timeout=self.timeout)
        assert len(replies) == len(messages)
        sent_ids = {m.metadata.message_id for m in messages}
        assert {r.metadata.reply_to_message_id for r in replies} == sent_ids
        for reply in replies:
            assert not reply.has_error(), reply.error
            assert reply.content["echo"]["id"] == reply.metadata.reply_to_message_id
        assert sum(len(c) for c in calls) == len(messages)

    def test_duplicate_delivery_reaches_the_app_once(self, make_transport: MakeTransport) -> None:
        """The same message sent twice reaches the app once, and both deliveries are answered
        with its reply (the medium may deliver the copy first): a server that sends a message
        again after a crash gets the answer without the datasite working twice."""
        with self.federation(make_transport, datasites=1) as (grid, _, calls, _):
            (node,) = grid.get_node_ids()
            message = self.query(grid, node, ttl=self.timeout)
            (message_id,) = grid.push_messages([message])
            body = encode_message(message)
            again = grid.transport.send(
                grid.datasite_of(node),
                APP,
                ENDPOINT,
                body,
                message.metadata.created_at + self.timeout,
            )
            replies = self.collect(grid, [message_id])
            copy_reply = self.wait_reply(grid.transport, again)
        assert len(replies) == 1, "the grid must settle the message (reply or expiry)"
        assert not replies[0].has_error(), f"the message was not answered: {replies[0].error}"
        assert copy_reply.status is ReplyStatus.OK, (
            f"the copy was not answered with the message's reply: {copy_reply}"
        )
        assert decode_message(copy_reply.body).metadata.reply_to_message_id == message_id
        assert [m.metadata.message_id for m in calls[0]] == [message_id], (
            "run(): the same message reached the app twice"
        )

    def collect(self, grid: SyftGrid, ids: list[str]) -> list[Message]:
        deadline = time.monotonic() + self.timeout + self.ttl
        replies: list[Message] = []
        while len(replies) < len(ids) and time.monotonic() < deadline:
            replies.extend(grid.pull_messages(ids))
            time.sleep(self.poll_interval)
        return replies

    def test_malformed_body_never_reaches_the_app(self, make_transport: MakeTransport) -> None:
        with self.federation(make_transport, datasites=1) as (grid, _, calls, _):
            (node,) = grid.get_node_ids()
            garbage = grid.transport.send(
                grid.datasite_of(node), APP, ENDPOINT, b"\x00garbage", self.later(self.ttl)
            )
            replies = grid.send_and_receive([self.query(grid, node)], timeout=self.timeout)
            assert (
                self.wait_reply(grid.transport, garbage, self.ttl + self.timeout).status
                is not ReplyStatus.OK
            )
        assert len(replies) == 1 and not replies[0].has_error()
        assert len(calls[0]) == 1

    def test_message_ttl_is_never_exceeded(self, make_transport: MakeTransport) -> None:
        with self.federation(make_transport, datasites=1) as (grid, runners, _, threads):
            (node,) = grid.get_node_ids()
            runners[0].transport.stop()
            threads[0].join(self.timeout)
            started = time.monotonic()
            (reply,) = grid.send_and_receive([self.query(grid, node, ttl=self.ttl)], timeout=None)
            waited = time.monotonic() - started
        assert reply.has_error() and reply.error.code == ErrorCode.MESSAGE_UNAVAILABLE
        assert waited < self.ttl + self.timeout

    def test_stop_signal_reaches_every_datasite(self, make_transport: MakeTransport) -> None:
        with self.federation(make_transport, datasites=3) as (grid, runners, _, threads):
            assert sorted(grid.send_stop_signal(reason="conformance done")) == sorted(
                grid.datasites
            )
            for thread in threads:
                thread.join(self.timeout + self.ttl)
            assert all(not thread.is_alive() for thread in threads)
        assert [runner.stop_reason for runner in runners] == ["conformance done"] * 3


class AuthorizationTests(FederationFixtures):
    """Only the aggregator drives a datasite: a stranger on the same medium is refused.

    The core decides who may ask; these tests check that the transport gives it the truth to
    decide on (``Request.sender`` is who really sent the request, never a claim) and carries
    the refusal back (``REJECTED`` with the reason).
    """

    def attacker(self, make_transport: MakeTransport) -> Attacker:
        return Attacker(make_transport(self.identity("mallory")), APP, timeout=self.timeout)

    def assert_refused(self, reply: Message, attacker: Attacker) -> None:
        assert reply.has_error() and reply.error.code == ErrorCode.NODE_UNAVAILABLE, (
            "a stranger's request must be answered with a refusal (REJECTED), got "
            f"{reply.error if reply.has_error() else 'a real answer'}"
        )
        assert f"{attacker.identity} is not a trusted aggregator" in (reply.error.reason or ""), (
            "the refusal must reach the stranger: Request.sender must be the real sender"
        )

    def test_a_stranger_cannot_make_a_datasite_work(self, make_transport: MakeTransport) -> None:
        attacker = self.attacker(make_transport)
        with self.federation(make_transport, datasites=1) as (grid, _, calls, _):
            (victim,) = grid.datasites
            for run_id in (grid.run.run_id, 999):  # the live run and a made-up one
                self.assert_refused(attacker.send(victim, run_id, "query"), attacker)
            (reply,) = grid.send_and_receive(
                [self.query(grid, grid.get_node_ids()[0])], timeout=self.timeout
            )
        assert not reply.has_error(), "the aggregator must still be served"
        assert all(ATTACK_MARKER not in message.content for message in calls[0]), (
            "a stranger's message reached the ClientApp"
        )
        assert len(calls[0]) == 1

    def test_a_strangers_stop_signal_does_not_stop_the_datasite(
        self, make_transport: MakeTransport
    ) -> None:
        attacker = self.attacker(make_transport)
        with self.federation(make_transport, datasites=1) as (grid, runners, _, threads):
            (victim,) = grid.datasites
            attacker.stop(victim, grid.run.run_id)
            attacker.push(victim, 12345)  # a fake run just before the real stop
            (reply,) = grid.send_and_receive(
                [self.query(grid, grid.get_node_ids()[0])], timeout=self.timeout
            )
            assert not reply.has_error(), "a stranger's stop signal stopped the datasite"
            assert runners[0].stop_reason is None
            grid.send_stop_signal(reason="the real stop")
            threads[0].join(self.timeout + self.ttl)
            assert not threads[0].is_alive(), "the aggregator's stop signal did not stop it"
        assert runners[0].stop_reason == "the real stop"

    def test_a_stranger_cannot_bind_the_datasite_to_its_run(
        self, make_transport: MakeTransport
    ) -> None:
        attacker = self.attacker(make_transport)
        with self.federation(make_transport, datasites=1) as (grid, runners, calls, _):
            (victim,) = grid.datasites
            check, start = attacker.check_and_start(victim, 4242)
            (reply,) = grid.send_and_receive(
                [self.query(grid, grid.get_node_ids()[0])], timeout=self.timeout
            )
        for answer in (check, start):
            assert answer.status is AuxStatus.REJECTED, (
                f"a stranger's resource check or job start was answered: {answer}"
            )
            assert f"{attacker.identity} is not a trusted aggregator" in answer.detail
        assert runners[0].services.job_run_id is None, "a stranger bound the datasite to its run"
        assert not reply.has_error() and len(calls[0]) == 1


class TransportSuite(
    DeliveryTests,
    RefusalTests,
    BodyTests,
    ExpiryTests,
    RestartTests,
    GridTests,
    AuthorizationTests,
    ProtocolMachineTests,
):
    """Every conformance test; subclass it and set ``transport_name``."""
