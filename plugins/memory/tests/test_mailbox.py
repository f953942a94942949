"""Mailbox semantics: waiting, expiry, rejection, and what survives a restart."""

from __future__ import annotations

import logging
import math
import threading
import time

import pytest

from syft_flwr.errors import TransportError
from syft_flwr.transport import Reply, ReplyStatus, Request

APP, EP = "flwr/demo", "messages"

# A timer or run loop that dies in its thread must fail the test, not just warn.
pytestmark = pytest.mark.filterwarnings("error::pytest.PytestUnhandledThreadExceptionWarning")


def echo(request: Request) -> bytes:
    return request.body


def test_expiry_gives_expired_and_wakes_wait_ready(make, later) -> None:
    alice = make("alice@x.org")
    started = time.monotonic()
    future_id = alice.send("nobody@x.org", APP, EP, b"", later(0.2))
    assert alice.wait_ready([future_id], timeout=5) == {future_id}
    elapsed = time.monotonic() - started
    assert 0.15 <= elapsed < 4
    reply = alice.poll(future_id)
    assert reply is not None and reply.status is ReplyStatus.EXPIRED


def test_far_future_expiries_do_not_stall_the_timer(make, later) -> None:
    alice = make("alice@x.org")
    forever = alice.send("nobody@x.org", APP, EP, b"", math.inf)
    alice.send("nobody@x.org", APP, EP, b"", 1e12)
    soon = alice.send("nobody@x.org", APP, EP, b"", later(0.1))
    assert alice.wait_ready([soon], timeout=5) == {soon}
    assert alice.poll(forever) is None
    with pytest.raises(ValueError, match="NaN"):
        alice.send("nobody@x.org", APP, EP, b"", math.nan)


def test_poll_expires_lazily(make) -> None:
    alice = make("alice@x.org")
    future_id = alice.send("nobody@x.org", APP, EP, b"", time.time() - 1)
    reply = alice.poll(future_id)
    assert reply is not None and reply.status is ReplyStatus.EXPIRED


def test_expired_request_is_purged_and_never_delivered(
    make, network, serving, wait_reply, later
) -> None:
    alice, bob = make("alice@x.org"), make("bob@x.org")
    seen: list[bytes] = []
    bob.serve(APP, EP, lambda request: seen.append(request.body) or b"ok")
    stale = alice.send("bob@x.org", APP, EP, b"stale", later(0.1))
    assert wait_reply(alice, stale).status is ReplyStatus.EXPIRED
    assert network.inbox_size("bob@x.org") == 0
    with serving(bob):
        fresh = alice.send("bob@x.org", APP, EP, b"fresh", later())
        assert wait_reply(alice, fresh).status is ReplyStatus.OK
    assert seen == [b"fresh"]


def test_request_waits_until_the_datasite_serves(make, network, serving, wait_reply, later) -> None:
    alice = make("alice@x.org")
    future_id = alice.send("bob@x.org", APP, EP, b"early", later())
    assert network.inbox_size("bob@x.org") == 1
    assert alice.poll(future_id) is None
    bob = make("bob@x.org")
    bob.serve(APP, EP, echo)
    with serving(bob):
        assert wait_reply(alice, future_id).body == b"early"


def test_request_for_an_unserved_app_waits_until_served_while_running(
    make, serving, wait_reply, later
) -> None:
    alice, bob = make("alice@x.org"), make("bob@x.org")
    bob.serve("other", EP, echo)
    with serving(bob):
        waiting = alice.send("bob@x.org", APP, EP, b"later", later())
        served = alice.send("bob@x.org", "other", EP, b"now", later())
        assert wait_reply(alice, served).body == b"now"
        assert alice.poll(waiting) is None
        bob.serve(APP, EP, echo)
        assert wait_reply(alice, waiting).body == b"later"


def test_unknown_endpoint_of_a_served_app_is_rejected(make, serving, wait_reply, later) -> None:
    alice, bob = make("alice@x.org"), make("bob@x.org")
    bob.serve(APP, EP, echo)
    with serving(bob):
        reply = wait_reply(alice, alice.send("bob@x.org", APP, "nope", b"", later()))
    assert reply.status is ReplyStatus.REJECTED
    assert "unknown endpoint 'nope'" in reply.detail


def test_handler_raising_rejects_and_logs(make, serving, wait_reply, later, caplog) -> None:
    alice, bob = make("alice@x.org"), make("bob@x.org")

    def broken(request: Request) -> bytes:
        raise RuntimeError("model exploded")

    bob.serve(APP, EP, broken)
    with caplog.at_level(logging.ERROR, logger="syft_flwr_memory"), serving(bob):
        reply = wait_reply(alice, alice.send("bob@x.org", APP, EP, b"", later()))
    assert reply.status is ReplyStatus.REJECTED
    assert "RuntimeError: model exploded" in reply.detail
    assert any(record.exc_info for record in caplog.records)


def test_handler_returning_non_bytes_is_rejected(make, serving, wait_reply, later) -> None:
    alice, bob = make("alice@x.org"), make("bob@x.org")
    bob.serve(APP, EP, lambda request: "text")
    with serving(bob):
        reply = wait_reply(alice, alice.send("bob@x.org", APP, EP, b"", later()))
    assert reply.status is ReplyStatus.REJECTED
    assert "str" in reply.detail


def test_requests_are_handled_one_at_a_time_in_arrival_order(
    make, serving, wait_all, later
) -> None:
    alice, bob = make("alice@x.org"), make("bob@x.org")
    order: list[bytes] = []
    busy = threading.Lock()

    def handler(request: Request) -> bytes:
        assert busy.acquire(blocking=False), "two handler calls overlapped"
        order.append(request.body)
        busy.release()
        return b""

    bob.serve(APP, EP, handler)
    bob.serve("flwr/other", EP, handler)
    apps = [APP, "flwr/other"]
    bodies = [str(n).encode() for n in range(100)]
    futures = [alice.send("bob@x.org", apps[n % 2], EP, b, later()) for n, b in enumerate(bodies)]
    with serving(bob):
        wait_all(alice, futures)
    assert order == bodies


def test_stop_and_run_again_keeps_the_inbox(make, serving, wait_reply, later) -> None:
    alice, bob = make("alice@x.org"), make("bob@x.org")
    bob.serve(APP, EP, echo)
    with serving(bob):
        assert wait_reply(alice, alice.send("bob@x.org", APP, EP, b"1", later())).body == b"1"
    future_id = alice.send("bob@x.org", APP, EP, b"2", later())
    assert alice.poll(future_id) is None
    with serving(bob):
        assert wait_reply(alice, future_id).body == b"2"


def test_new_recipient_instance_finds_the_inbox(make, serving, wait_reply, later) -> None:
    alice, bob = make("alice@x.org"), make("bob@x.org")
    bob.close()
    future_id = alice.send("bob@x.org", APP, EP, b"mail", later())
    bob_again = make("bob@x.org")
    bob_again.serve(APP, EP, echo)
    with serving(bob_again):
        assert wait_reply(alice, future_id).body == b"mail"


def test_new_sender_instance_sees_old_futures(make, serving, wait_reply, later) -> None:
    alice, bob = make("alice@x.org"), make("bob@x.org")
    bob.serve(APP, EP, echo)
    with serving(bob):
        answered = alice.send("bob@x.org", APP, EP, b"a", later())
        wait_reply(alice, answered)
    open_future = alice.send("bob@x.org", APP, EP, b"b", later())
    alice.close()
    alice_again = make("alice@x.org")
    assert alice_again.poll(answered) == Reply(answered, ReplyStatus.OK, body=b"a")
    assert alice_again.wait_ready([answered], timeout=0) == {answered}
    with serving(bob):
        assert wait_reply(alice_again, open_future).body == b"b"


def test_stop_before_run_makes_run_return(make) -> None:
    bob = make("bob@x.org")
    bob.stop()
    bob.stop()
    thread = threading.Thread(target=bob.run)
    thread.start()
    thread.join(5)
    assert not thread.is_alive()


def test_run_twice_at_once_is_an_error(make, serving, wait_reply, later) -> None:
    alice, bob = make("alice@x.org"), make("bob@x.org")
    entered, release = threading.Event(), threading.Event()

    def slow(request: Request) -> bytes:
        entered.set()
        release.wait(5)
        return b"done"

    bob.serve(APP, EP, slow)
    with serving(bob):
        future_id = alice.send("bob@x.org", APP, EP, b"", later())
        assert entered.wait(5)
        with pytest.raises(TransportError, match="already running"):
            bob.run()
        release.set()
        assert wait_reply(alice, future_id).body == b"done"


def test_close_stops_run_and_refuses_further_use(make, network, later) -> None:
    bob = make("bob@x.org")
    thread = threading.Thread(target=bob.run)
    thread.start()
    bob.close()
    bob.close()
    thread.join(5)
    assert not thread.is_alive()
    bob.run()  # returns at once on a closed transport
    with pytest.raises(TransportError, match="closed"):
        bob.send("alice@x.org", APP, EP, b"", later())
    with pytest.raises(TransportError, match="closed"):
        bob.serve(APP, EP, echo)


def test_closing_the_network_closes_its_transports(make, network, later) -> None:
    bob = make("bob@x.org")
    network.close()
    with pytest.raises(TransportError, match="closed"):
        bob.send("alice@x.org", APP, EP, b"", later())
    with pytest.raises(TransportError, match="network 'test' is closed"):
        make("carol@x.org")
