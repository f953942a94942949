"""Hostile rows: whatever anyone who can write the database file puts there.

Each case shows the handler never sees the hostile request, a genuine one is still served
afterwards, and (where a refusal is due) the sender learns why. Bodies of refused requests are
never loaded: :meth:`Store.take_body` is the only place a body is read, and it is watched.
"""

from __future__ import annotations

import logging
import sqlite3
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import closing
from pathlib import Path
from typing import Any

import pytest
from syft_flwr.errors import RequestRefusedError
from syft_flwr.transport import ReplyStatus, Request, RequestHead

from syft_flwr_sqlite.store import Store

APP, ENDPOINT = "flwr/test", "messages"

Insert = Callable[..., str]


@pytest.fixture
def bodies_read(monkeypatch: pytest.MonkeyPatch) -> list[object]:
    """The ids of the requests whose body was loaded, in order."""
    read: list[object] = []
    original = Store.take_body

    def watched(self: Store, *args: Any, **kwargs: Any) -> bytes | None:
        body = original(self, *args, **kwargs)
        read.append(args[0].id)
        return body

    monkeypatch.setattr(Store, "take_body", watched)
    return read


@pytest.fixture
def sqlite_logs(caplog: pytest.LogCaptureFixture) -> Iterator[pytest.LogCaptureFixture]:
    caplog.set_level(logging.INFO, logger="syft_flwr_sqlite")
    yield caplog


@pytest.fixture
def insert(database: Path, make) -> Insert:
    """``insert(**columns)``: a request row written straight into the file, as anyone can."""
    make("schema@x.org")  # creates the file and its schema

    def write(**columns: Any) -> str:
        row = {
            "id": uuid.uuid4().hex,
            "sender": "carol@x.org",
            "recipient": "client@x.org",
            "app": APP,
            "endpoint": ENDPOINT,
            "body": b"hostile",
            "created_at": time.time(),
            "expires_at": time.time() + 60,
            **columns,
        }
        with closing(sqlite3.connect(database)) as connection, connection:
            connection.execute(
                f"INSERT INTO requests ({', '.join(row)}) VALUES ({', '.join('?' for _ in row)})",
                list(row.values()),
            )
        return str(row["id"])

    return write


def recording(seen: list[Request], answer: bytes = b"ok") -> Callable[[Request], bytes]:
    def handler(request: Request) -> bytes:
        seen.append(request)
        return answer

    return handler


def test_a_refusal_is_answered_with_its_reason_and_logged_without_a_traceback(
    make, serving, wait_reply, later, sqlite_logs
) -> None:
    client, sender = make("client@x.org"), make("server@x.org")

    def refuse(request: Request) -> bytes:
        if request.body == b"no":
            raise RequestRefusedError(f"{request.sender} may not ask this")
        return b"yes"

    client.serve(APP, ENDPOINT, refuse)
    with serving(client):
        refused = sender.send("client@x.org", APP, ENDPOINT, b"no", later())
        reply = wait_reply(sender, refused)
        assert wait_reply(sender, sender.send("client@x.org", APP, ENDPOINT, b"", later())).body
    assert (reply.status, reply.detail) == (ReplyStatus.REJECTED, "server@x.org may not ask this")
    records = [r for r in sqlite_logs.records if refused in r.getMessage()]
    assert records and all(r.levelno == logging.INFO and r.exc_info is None for r in records)
    assert not [r for r in sqlite_logs.records if r.levelno >= logging.ERROR]


def test_a_screened_sender_is_refused_before_its_body_is_loaded(
    make, serving, wait_reply, later, query, bodies_read
) -> None:
    client = make("client@x.org")
    assert client.capabilities.screens_requests
    stranger, trusted = make("mallory@x.org"), make("carol@x.org")
    heads: list[RequestHead] = []

    def screen(head: RequestHead) -> str | None:
        heads.append(head)
        return None if head.sender == "carol@x.org" else f"{head.sender} is a stranger"

    seen: list[Request] = []
    client.set_request_screen(screen)
    client.serve(APP, ENDPOINT, recording(seen))
    with serving(client):
        refused = stranger.send("client@x.org", APP, ENDPOINT, b"x" * 1000, later())
        reply = wait_reply(stranger, refused)
        served = trusted.send("client@x.org", APP, ENDPOINT, b"hi", later())
        assert wait_reply(trusted, served).body == b"ok"
    assert (reply.status, reply.detail) == (ReplyStatus.REJECTED, "mallory@x.org is a stranger")
    assert bodies_read == [served], "the refused body was loaded"
    assert [r.body for r in seen] == [b"hi"]
    (head,) = [h for h in heads if h.id == refused]
    assert (head.sender, head.recipient, head.app, head.endpoint, head.size) == (
        "mallory@x.org",
        "client@x.org",
        APP,
        ENDPOINT,
        1000,
    )
    assert query("SELECT body FROM requests WHERE id = ?", refused) == [(None,)]


def test_an_oversized_row_is_refused_before_its_body_is_loaded(
    make, insert, serving, wait_reply, later, bodies_read
) -> None:
    client = make("client@x.org", max_body_size=10)
    sender = make("server@x.org")  # a bigger limit than the client's, as another project might
    seen: list[Request] = []
    client.serve(APP, ENDPOINT, recording(seen))
    with serving(client):
        big = sender.send("client@x.org", APP, ENDPOINT, b"x" * 11, later())
        reply = wait_reply(sender, big)
        fits = sender.send("client@x.org", APP, ENDPOINT, b"x" * 10, later())
        assert wait_reply(sender, fits).status is ReplyStatus.OK
    assert reply.status is ReplyStatus.REJECTED
    assert "11 bytes" in reply.detail and "max_body_size of 10 bytes" in reply.detail
    assert bodies_read == [fits] and [r.body for r in seen] == [b"x" * 10]


@pytest.mark.parametrize(
    "columns",
    [
        {"sender": "mallory@x.org\n"},
        {"sender": "../alice@x.org"},
        {"sender": "not-an-email"},
        {"sender": 42},
        {"sender": b"carol@x.org"},
        {"id": "../../etc"},
        {"id": None},
        {"id": 7},
        {"body": "text, not bytes"},
        {"body": None},
        {"created_at": "yesterday"},
        {"expires_at": "never"},  # text sorts after every number: it would never expire
        {"expires_at": b"\x00"},
    ],
    ids=lambda columns: ",".join(f"{k}={v!r}" for k, v in columns.items()),
)
def test_a_malformed_row_never_reaches_a_handler(
    make, insert, serving, wait_reply, later, query, bodies_read, sqlite_logs, columns
) -> None:
    insert(**columns)
    client, sender = make("client@x.org"), make("carol@x.org")
    seen: list[Request] = []
    client.serve(APP, ENDPOINT, recording(seen))
    with serving(client):
        genuine = sender.send("client@x.org", APP, ENDPOINT, b"genuine", later())
        assert wait_reply(sender, genuine).status is ReplyStatus.OK
    assert [r.body for r in seen] == [b"genuine"]
    assert bodies_read == [genuine]
    warnings = [r for r in sqlite_logs.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1 and "malformed" in warnings[0].getMessage()
    assert query("SELECT count(*) FROM requests WHERE claimed_by IS NULL") == [(0,)], (
        "a malformed row left unclaimed would be looked at again on every poll"
    )


def test_names_read_back_are_the_ones_delivered(make, insert, serving, wait_reply, later) -> None:
    """The sender a handler sees is the row's sender column, checked; never the body's claim."""
    request_id = insert(sender="Carol@X.org", body=b'{"sender": "alice@x.org"}')
    client = make("client@x.org")
    seen: list[Request] = []
    client.serve(APP, ENDPOINT, recording(seen))
    carol = make("carol@x.org")
    with serving(client):
        probe = carol.send("client@x.org", APP, ENDPOINT, b"probe", later())
        assert wait_reply(carol, probe).status is ReplyStatus.OK
    (forged, _) = seen
    assert (forged.id, forged.sender, forged.recipient, forged.app, forged.endpoint) == (
        request_id,
        "Carol@X.org",
        "client@x.org",
        APP,
        ENDPOINT,
    )


@pytest.mark.parametrize(
    ("rewrite", "owner"),
    [
        ("UPDATE requests SET sender = 'alice@x.org' WHERE id = ?", "alice@x.org"),
        ("UPDATE requests SET body = zeroblob(100000) WHERE id = ?", "mallory@x.org"),
    ],
    ids=["sender", "body"],
)
def test_a_row_rewritten_after_it_was_screened_is_not_delivered(
    make, database, serving, wait_reply, later, rewrite, owner
) -> None:
    """Between the screen and the body a writer changes the row: what was screened (sender and
    size) is what gets delivered, or nothing is."""
    client, mallory = make("client@x.org", max_body_size=1000), make("mallory@x.org")

    def screen(head: RequestHead) -> str | None:
        if head.sender == "mallory@x.org":
            with closing(sqlite3.connect(database)) as connection, connection:
                connection.execute(rewrite, (head.id,))
        return None

    seen: list[Request] = []
    client.set_request_screen(screen)
    client.serve(APP, ENDPOINT, recording(seen))
    with serving(client):
        swapped = mallory.send("client@x.org", APP, ENDPOINT, b"small", later())
        reply = wait_reply(make(owner), swapped)  # the row's sender owns the future now
        carol = make("carol@x.org")
        genuine = carol.send("client@x.org", APP, ENDPOINT, b"genuine", later())
        assert wait_reply(carol, genuine).status is ReplyStatus.OK
    assert [r.body for r in seen] == [b"genuine"]
    assert reply.status is ReplyStatus.REJECTED and "changed" in reply.detail
