"""Requests reach the handler and replies reach the sender, at any fan-out."""

from __future__ import annotations

import sys
import threading
from concurrent.futures import ThreadPoolExecutor
from contextlib import ExitStack

import pytest

from syft_flwr.transport import Reply, ReplyStatus, Request
from syft_flwr_memory import MemoryTransport

APP, EP = "flwr/demo", "messages"

# A timer or run loop that dies in its thread must fail the test, not just warn.
pytestmark = pytest.mark.filterwarnings("error::pytest.PytestUnhandledThreadExceptionWarning")


def echo(request: Request) -> bytes:
    return request.body


def test_round_trip(make, serving, wait_reply, later) -> None:
    alice, bob = make("alice@x.org"), make("bob@x.org")
    seen: list[Request] = []

    def handler(request: Request) -> bytes:
        seen.append(request)
        return b"re:" + request.body

    bob.serve(APP, EP, handler)
    with serving(bob):
        future_id = alice.send("bob@x.org", APP, EP, b"hello", later())
        reply = wait_reply(alice, future_id)
    assert reply == Reply(future_id, ReplyStatus.OK, body=b"re:hello")
    (request,) = seen
    assert (request.id, request.sender, request.recipient) == (
        future_id,
        "alice@x.org",
        "bob@x.org",
    )
    assert (request.app, request.endpoint, request.body) == (APP, EP, b"hello")


def test_poll_does_not_consume_and_forget_does(make, serving, wait_reply, later) -> None:
    alice, bob = make("alice@x.org"), make("bob@x.org")
    bob.serve(APP, EP, echo)
    with serving(bob):
        future_id = alice.send("bob@x.org", APP, EP, b"x", later())
        wait_reply(alice, future_id)
    assert alice.poll(future_id) == alice.poll(future_id) is not None
    alice.forget(future_id)
    alice.forget(future_id)
    assert alice.poll(future_id) is None
    assert alice.poll("no-such-future") is None


def test_binary_safe_and_empty_bodies(make, serving, wait_reply, later) -> None:
    alice, bob = make("alice@x.org"), make("bob@x.org")
    bob.serve(APP, EP, echo)
    binary = bytes(range(256)) * 64
    bodies = [binary, b"", bytearray(b"\x00\xff\n\r"), memoryview(binary)[10:20]]
    with serving(bob):
        futures = [alice.send("bob@x.org", APP, EP, body, later()) for body in bodies]
        replies = [wait_reply(alice, future_id) for future_id in futures]
    assert [reply.body for reply in replies] == [bytes(body) for body in bodies]
    assert all(type(reply.body) is bytes for reply in replies)


def test_body_is_shared_not_copied(make, serving, wait_reply, later) -> None:
    alice, bob = make("alice@x.org"), make("bob@x.org")
    body = b"\x01" * 1_000_000
    seen: list[bytes] = []
    bob.serve(APP, EP, lambda request: seen.append(request.body) or b"")
    with serving(bob):
        wait_reply(alice, alice.send("bob@x.org", APP, EP, body, later()))
    assert seen[0] is body


def test_body_is_released_once_answered(make, serving, wait_reply, later) -> None:
    # The expiry timer outlives the reply; it must not keep a round's weights alive.
    alice, bob = make("alice@x.org"), make("bob@x.org")
    body = bytes(4096)
    baseline = sys.getrefcount(body)
    bob.serve(APP, EP, lambda request: b"ok")
    with serving(bob):
        assert wait_reply(alice, alice.send("bob@x.org", APP, EP, body, later(3600))).body == b"ok"
    assert sys.getrefcount(body) == baseline


def test_future_ids_are_unique_hex(make, later) -> None:
    alice = make("alice@x.org")
    ids = {alice.send("bob@x.org", APP, EP, b"", later()) for _ in range(500)}
    assert len(ids) == 500
    assert all(len(future_id) == 32 and int(future_id, 16) >= 0 for future_id in ids)


def test_handler_returning_none_sends_no_reply(make, serving, later) -> None:
    alice, bob = make("alice@x.org"), make("bob@x.org")
    handled = threading.Event()

    def handler(request: Request) -> None:
        handled.set()

    bob.serve(APP, EP, handler)
    with serving(bob):
        future_id = alice.send("bob@x.org", APP, EP, b"", later())
        assert handled.wait(5)
    assert alice.poll(future_id) is None


def test_concurrent_senders(make, serving, wait_reply, later) -> None:
    bob = make("bob@x.org")
    bob.serve(APP, EP, lambda request: request.sender.encode() + b":" + request.body)
    senders = [make(f"s{i}@x.org") for i in range(8)]

    def burst(sender: MemoryTransport) -> list[tuple[str, bytes]]:
        sent = [(sender.send("bob@x.org", APP, EP, str(n).encode(), later()), n) for n in range(50)]
        return [(fid, f"{sender.identity}:{n}".encode()) for fid, n in sent]

    with serving(bob), ThreadPoolExecutor(len(senders)) as pool:
        bursts = list(pool.map(burst, senders))
        for sender, expected in zip(senders, bursts, strict=True):
            for future_id, body in expected:
                assert wait_reply(sender, future_id).body == body
    assert len({fid for expected in bursts for fid, _ in expected}) == 8 * 50


def test_two_hundred_datasites(make, serving, wait_all, later) -> None:
    server = make("server@x.org")
    clients = [make(f"client{i}@x.org") for i in range(200)]
    for client in clients:
        client.serve(APP, EP, lambda request, me=client.identity: me.encode() + request.body)
    with ExitStack() as stack:
        for client in clients:
            stack.enter_context(serving(client))
        futures = {server.send(c.identity, APP, EP, b"!", later()): c for c in clients}
        wait_all(server, futures)
        for future_id, client in futures.items():
            assert server.poll(future_id) == Reply(
                future_id, ReplyStatus.OK, body=client.identity.encode() + b"!"
            )
