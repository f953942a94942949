"""Behaviour the conformance kit leaves to each transport, as this one defines it."""

from __future__ import annotations

import threading
import time
from collections import Counter

import pytest
from syft_flwr.errors import BodyTooLargeError, TransportError
from syft_flwr.transport import Reply, ReplyStatus, Request

from syft_flwr_sqlite.store import Store

APP, ENDPOINT = "flwr/test", "messages"


def test_capabilities(make) -> None:
    capabilities = make("a@x.org").capabilities
    assert (capabilities.notifies, capabilities.persistent, capabilities.encrypted) == (
        False,
        True,
        False,
    )
    assert capabilities.max_body_size == 64 * 1024 * 1024
    assert make("b@x.org", max_body_size=10).capabilities.max_body_size == 10


def test_the_sender_is_the_sending_transport(make, query, later) -> None:
    make("alice@x.org").send("bob@x.org", APP, ENDPOINT, b'{"sender": "mallory@x.org"}', later())
    assert query("SELECT sender FROM requests") == [("alice@x.org",)]


def test_too_large_body_names_size_and_limit(make, later) -> None:
    sender = make("a@x.org", max_body_size=10)
    with pytest.raises(BodyTooLargeError, match=r"11 bytes.*max_body_size of 10 bytes"):
        sender.send("b@x.org", APP, ENDPOINT, b"x" * 11, later())
    sender.send("b@x.org", APP, ENDPOINT, b"x" * 10, later())


def test_nan_expiry_is_refused(make) -> None:
    with pytest.raises(ValueError, match="NaN"):
        make("a@x.org").send("b@x.org", APP, ENDPOINT, b"", float("nan"))


def test_instances_of_one_datasite_never_handle_the_same_request(
    make, serving, wait_reply, later
) -> None:
    handled: Counter[str] = Counter()
    lock = threading.Lock()

    def handler(request: Request) -> bytes:
        with lock:
            handled[request.id] += 1
        return b"done"

    instances = [make("client@x.org") for _ in range(3)]
    for instance in instances:
        instance.serve(APP, ENDPOINT, handler)
    sender = make("server@x.org")
    with serving(instances[0]), serving(instances[1]), serving(instances[2]):
        futures = [sender.send("client@x.org", APP, ENDPOINT, b"", later()) for _ in range(60)]
        for future in futures:
            assert wait_reply(sender, future).body == b"done"
    assert handled == Counter(futures)


def test_concurrent_claims_on_separate_connections_are_exclusive(database, make, later) -> None:
    """The claim itself, raced by eight connections with no serving loop in between."""
    sender = make("server@x.org")
    futures = {sender.send("client@x.org", APP, ENDPOINT, b"", later()) for _ in range(80)}
    stores = [Store(database, busy_timeout=10.0) for _ in range(8)]
    claimed: list[list[str]] = [[] for _ in stores]
    barrier = threading.Barrier(len(stores))

    def drain(index: int) -> None:
        barrier.wait()
        while (
            request := stores[index].claim_next(
                "client@x.org", [(APP, ENDPOINT)], f"store{index}", later(0)
            )
        ) is not None:
            claimed[index].append(request.id)

    threads = [threading.Thread(target=drain, args=(i,)) for i in range(len(stores))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(10.0)
    for db in stores:
        db.close()
    every_claim = [future for ids in claimed for future in ids]
    assert sorted(every_claim) == sorted(futures)


def test_an_endpoint_served_by_another_instance_is_left_to_it(
    make, serving, wait_reply, later
) -> None:
    first, second = make("client@x.org"), make("client@x.org")
    first.serve(APP, "train", lambda request: b"first")
    second.serve(APP, "evaluate", lambda request: b"second")
    sender = make("server@x.org")
    with serving(first), serving(second):
        train = sender.send("client@x.org", APP, "train", b"", later())
        evaluate = sender.send("client@x.org", APP, "evaluate", b"", later())
        assert wait_reply(sender, train).body == b"first"
        assert wait_reply(sender, evaluate).body == b"second"


def test_an_answer_after_the_deadline_is_dropped(make, serving, wait_reply, later) -> None:
    arrived, release = threading.Event(), threading.Event()

    def slow(request: Request) -> bytes:
        arrived.set()
        release.wait(10.0)
        return b"too late"

    client, sender = make("client@x.org"), make("server@x.org")
    client.serve(APP, ENDPOINT, slow)
    with serving(client):
        future = sender.send("client@x.org", APP, ENDPOINT, b"", later(0.5))
        assert arrived.wait(10.0)
        assert wait_reply(sender, future).status is ReplyStatus.EXPIRED
        release.set()
        # One request at a time: once the probe is answered, the late answer was stored
        # or dropped.
        probe = sender.send("client@x.org", APP, ENDPOINT, b"", later())
        assert wait_reply(sender, probe).body == b"too late"
    assert sender.poll(future).status is ReplyStatus.EXPIRED


def test_the_first_settlement_wins(database, make) -> None:
    """An answer whose deadline check passed just before the sender saw the request expire
    must not replace ``EXPIRED`` (driven with explicit clocks, so no timing is involved)."""
    sender = make("server@x.org")
    deadline = time.time() + 3600
    future = sender.send("client@x.org", APP, ENDPOINT, b"", deadline)
    db = Store(database, busy_timeout=1.0)
    try:
        assert db.claim_next("client@x.org", [(APP, ENDPOINT)], "test", deadline - 1) is not None
        assert db.expire(future, "server@x.org", deadline).status is ReplyStatus.EXPIRED
        db.settle(future, Reply(future, ReplyStatus.OK, b"late"), deadline - 0.5)
    finally:
        db.close()
    assert sender.poll(future).status is ReplyStatus.EXPIRED


@pytest.mark.parametrize(
    ("handler", "detail"),
    [
        (lambda request: 1 / 0, "handler raised ZeroDivisionError"),
        (lambda request: "text", "handler returned str, not bytes"),
        (lambda request: b"x" * 11, "reply body of 11 bytes exceeds"),
    ],
)
def test_a_handler_failure_rejects_the_request(
    make, serving, wait_reply, later, handler, detail, caplog
) -> None:
    caplog.set_level("ERROR", logger="syft_flwr_sqlite")
    client, sender = make("client@x.org", max_body_size=10), make("server@x.org")
    client.serve(APP, ENDPOINT, handler)
    with serving(client):
        reply = wait_reply(sender, sender.send("client@x.org", APP, ENDPOINT, b"", later()))
    assert reply.status is ReplyStatus.REJECTED
    assert detail in reply.detail
    assert detail in caplog.text


def test_no_reply_from_the_handler_ends_expired(make, serving, wait_reply, later) -> None:
    client, sender = make("client@x.org"), make("server@x.org")
    client.serve(APP, ENDPOINT, lambda request: None)
    with serving(client):
        future = sender.send("client@x.org", APP, ENDPOINT, b"", later(0.3))
        assert wait_reply(sender, future).status is ReplyStatus.EXPIRED


def test_forget_deletes_the_rows_of_an_answered_future(
    make, serving, wait_reply, query, later
) -> None:
    client, sender = make("client@x.org"), make("server@x.org")
    client.serve(APP, ENDPOINT, lambda request: b"answer")
    with serving(client):
        future = sender.send("client@x.org", APP, ENDPOINT, b"", later())
        wait_reply(sender, future)
    assert query("SELECT count(*) FROM replies") == [(1,)]
    sender.forget(future)
    assert sender.poll(future) is None
    assert query("SELECT count(*) FROM requests") == [(0,)]
    assert query("SELECT count(*) FROM replies") == [(0,)]


def test_a_forgotten_request_is_still_delivered_but_its_reply_not_kept(
    make, serving, query, later, eventually
) -> None:
    """How the stop signal travels: sent, forgotten at once, still delivered."""
    seen: list[bytes] = []
    client, sender = make("client@x.org"), make("server@x.org")
    future = sender.send("client@x.org", APP, ENDPOINT, b"fire and forget", later())
    sender.forget(future)
    assert sender.poll(future) is None

    def handler(request: Request) -> bytes:
        seen.append(request.body)
        return b"unwanted"

    client.serve(APP, ENDPOINT, handler)
    with serving(client):
        eventually(lambda: query("SELECT count(*) FROM requests") == [(0,)], "the row to go")
    assert seen == [b"fire and forget"]
    assert query("SELECT count(*) FROM replies") == [(0,)]


def test_futures_of_one_identity_are_invisible_to_another(make, later) -> None:
    future = make("alice@x.org").send("bob@x.org", APP, ENDPOINT, b"", later(-1))
    mallory = make("mallory@x.org")
    assert mallory.poll(future) is None
    mallory.forget(future)
    assert make("alice@x.org").poll(future).status is ReplyStatus.EXPIRED


def test_run_twice_at_once_is_refused(make, serving, wait_reply, later) -> None:
    client, sender = make("client@x.org"), make("server@x.org")
    client.serve(APP, ENDPOINT, lambda request: b"running")
    with serving(client):
        future = sender.send("client@x.org", APP, ENDPOINT, b"", later())
        assert wait_reply(sender, future).body == b"running"  # so run() has started
        with pytest.raises(TransportError, match="already running"):
            client.run()


def test_a_stop_before_run_makes_the_next_run_return(make) -> None:
    client = make("client@x.org")
    client.stop()
    client.run()  # returns at once: the stop was remembered
    finished = threading.Event()

    def run_then_flag() -> None:
        client.run()
        finished.set()

    thread = threading.Thread(target=run_then_flag, daemon=True)
    thread.start()
    assert not finished.wait(0.1), "the stop must have been used up by the first run()"
    client.stop()
    thread.join(10.0)
    assert finished.is_set()


def test_close_is_idempotent_and_final(make, later) -> None:
    client = make("client@x.org")
    client.close()
    client.close()
    client.run()  # returns at once on a closed transport
    with pytest.raises(TransportError, match="closed"):
        client.send("b@x.org", APP, ENDPOINT, b"", later())
    with pytest.raises(TransportError, match="closed"):
        client.poll("0" * 32)


def test_close_while_serving_ends_run(make) -> None:
    client = make("client@x.org")
    client.serve(APP, ENDPOINT, lambda request: b"")
    thread = threading.Thread(target=client.run, daemon=True)
    thread.start()
    client.close()
    thread.join(10.0)
    assert not thread.is_alive()
