"""Separate processes sharing one database: what this transport exists for.

The peers are ``tests/peer.py`` in their own interpreters, so nothing is shared with the
test process but the database file.
"""

from __future__ import annotations

from collections import Counter

from syft_flwr.transport import ReplyStatus

APP, ENDPOINT = "flwr/test", "messages"
SERVER, CLIENT = "server@x.org", "client@x.org"


def test_a_client_in_another_process_answers(make, peers, wait_reply, later) -> None:
    client = peers.start("serve", "--identity", CLIENT, "--label", "peer")
    server = make(SERVER)
    future = server.send(CLIENT, APP, ENDPOINT, b"ping", later())
    reply = wait_reply(server, future)
    assert (reply.status, reply.body) == (ReplyStatus.OK, b"peer|ping")
    stop = server.send(CLIENT, APP, ENDPOINT, b"stop", later())
    assert wait_reply(server, stop).body == b"stopped"
    assert peers.finish(client) == [f"handled {future}"]


def test_a_new_process_collects_the_reply_to_a_request_sent_by_one_that_exited(
    make, peers, serving
) -> None:
    (future,) = peers.run("send", "--sender", SERVER, "--to", CLIENT, "--body", "persisted")
    client = make(CLIENT)
    client.serve(APP, ENDPOINT, lambda request: b"re:" + request.body)
    with serving(client):
        (line,) = peers.run("collect", "--sender", SERVER, future)
    assert line == f"{future} ok re:persisted"


def test_a_request_waits_for_a_client_process_that_starts_later(make, peers, wait_reply, later):
    server = make(SERVER)
    future = server.send(CLIENT, APP, ENDPOINT, b"early", later())
    assert server.poll(future) is None
    client = peers.start("serve", "--identity", CLIENT, "--label", "late")
    assert wait_reply(server, future).body == b"late|early"
    server.send(CLIENT, APP, ENDPOINT, b"stop", later())
    assert peers.finish(client) == [f"handled {future}"]


def test_two_processes_serving_one_datasite_handle_each_request_once(
    make, peers, wait_reply, later
) -> None:
    workers = [peers.start("serve", "--identity", CLIENT, "--label", f"p{i}") for i in range(2)]
    server = make(SERVER)
    futures = [server.send(CLIENT, APP, ENDPOINT, str(n).encode(), later()) for n in range(40)]
    replies = {future: wait_reply(server, future) for future in futures}
    # One "stop" per worker: a worker that handled one stops claiming, so the other gets
    # the second, whatever the order.
    stops = [server.send(CLIENT, APP, ENDPOINT, b"stop", later()) for _ in workers]
    assert {wait_reply(server, stop).body for stop in stops} == {b"stopped"}
    handled = Counter(
        line.split()[1] for worker in workers for line in peers.finish(worker) if line
    )
    assert handled == Counter(futures), "every request handled exactly once, by one process"
    for n, future in enumerate(futures):
        label, _, body = replies[future].body.partition(b"|")
        assert label in (b"p0", b"p1") and body == str(n).encode()
