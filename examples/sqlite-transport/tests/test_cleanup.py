"""Old rows are deleted, by the sending and the serving side, at most every interval."""

from __future__ import annotations

import time

from syft_flwr.transport import ReplyStatus

APP, ENDPOINT = "flwr/test", "messages"


def test_rows_expired_longer_than_the_retention_are_deleted(make, query, later) -> None:
    sender = make("server@x.org", retention=5.0, cleanup_interval=3600.0)
    sender.send("client@x.org", APP, ENDPOINT, b"", later())  # its one clean-up for now
    old = sender.send("client@x.org", APP, ENDPOINT, b"old", later(-10))
    recent = sender.send("client@x.org", APP, ENDPOINT, b"recent", later(-1))
    live = sender.send("client@x.org", APP, ENDPOINT, b"live", later())
    assert sender.poll(old).status is ReplyStatus.EXPIRED  # settled: a reply row exists
    cleaner = make("other@x.org", retention=5.0, cleanup_interval=0.0)
    cleaner.send("client@x.org", APP, ENDPOINT, b"", later())  # sending cleans up
    remaining = {future for (future,) in query("SELECT id FROM requests")}
    assert old not in remaining and {recent, live} <= remaining
    assert query("SELECT count(*) FROM replies WHERE future_id = ?", old) == [(0,)]
    assert sender.poll(old) is None
    assert sender.poll(recent).status is ReplyStatus.EXPIRED  # kept for late pollers


def test_forgotten_requests_go_as_soon_as_they_expired(make, query, later) -> None:
    sender = make("server@x.org", cleanup_interval=0.0)
    forgotten = sender.send("client@x.org", APP, ENDPOINT, b"", later(60))
    sender.forget(forgotten)  # still queued: kept so it can be delivered
    assert query("SELECT forgotten FROM requests WHERE id = ?", forgotten) == [(1,)]
    expired = sender.send("client@x.org", APP, ENDPOINT, b"", later(-1))
    sender.forget(expired)  # expired: deleted at once
    assert query("SELECT count(*) FROM requests WHERE id = ?", expired) == [(0,)]


def test_the_serving_loop_cleans_up_too(make, serving, query, later, eventually) -> None:
    make("server@x.org", cleanup_interval=3600.0).send(
        "client@x.org", APP, ENDPOINT, b"", later(-10)
    )
    client = make("client@x.org", retention=1.0, cleanup_interval=0.0)
    with serving(client):
        eventually(lambda: query("SELECT count(*) FROM requests") == [(0,)], "the clean-up")


def test_clean_up_runs_at_most_once_per_interval(make, query, later) -> None:
    sender = make("server@x.org", retention=0.0, cleanup_interval=3600.0)
    sender.send("client@x.org", APP, ENDPOINT, b"", later())  # the first send cleans up
    stale = sender.send("client@x.org", APP, ENDPOINT, b"", time.time() - 1)
    sender.send("client@x.org", APP, ENDPOINT, b"", later())  # within the interval: no clean-up
    assert query("SELECT count(*) FROM requests WHERE id = ?", stale) == [(1,)]
