"""Hostile objects on Drive: every listed byte is someone else's, so each is checked first.

Each case puts something hostile where the transport looks (a request it must refuse, an object
at a reply's name it must not take for the reply, a name it must not route), then shows that
the handler never saw it, that the genuine message is still delivered or collected, and that
serving goes on. Warnings are counted per file: one each, however many polls see the file.
"""

from __future__ import annotations

import logging
import math
import uuid
from collections.abc import Callable, Iterator
from typing import Any

import httplib2
import pytest

from syft_flwr.errors import RequestRefusedError
from syft_flwr.testing.helpers import Serving, WaitReply, eventually, later
from syft_flwr.transport import ReplyStatus, Request, RequestHead
from syft_flwr.wire import encode_message
from syft_flwr_gdrive import DriveContentError, GDriveTransport
from syft_flwr_gdrive.bodies import defect
from syft_flwr_gdrive.folders import Endpoint, FolderTree
from syft_flwr_gdrive.layout import (
    FOLDER_MIME,
    MARKER,
    PROP_EXPIRES,
    PROP_STATUS,
    peer_of_inbox,
)
from syft_flwr_gdrive.listing import Foreign, MessageFile, classify
from syft_flwr_gdrive.retry import Retrier, RetryPolicy
from syft_flwr_gdrive.testing import FakeDrive
from syft_flwr_gdrive.testing.store import StoredFile
from syft_flwr_gdrive.transfers import download

from .conftest import APP, EP, MakeTransport
from .test_transport import flower_message

pytestmark = pytest.mark.filterwarnings("error::pytest.PytestUnhandledThreadExceptionWarning")

GDOC_MIME = "application/vnd.google-apps.document"


@pytest.fixture(autouse=True)
def gdrive_logs(caplog: pytest.LogCaptureFixture) -> Iterator[pytest.LogCaptureFixture]:
    """The plugin's log records from INFO up (from every thread)."""
    caplog.set_level(logging.INFO, logger="syft_flwr_gdrive")
    yield caplog


def warnings_about(caplog: pytest.LogCaptureFixture, file_id: str) -> int:
    return sum(
        1
        for record in list(caplog.records)
        if record.levelno == logging.WARNING and file_id in record.getMessage()
    )


def more_polls(transport: GDriveTransport, count: int = 3) -> None:
    """Wait (bounded) until ``transport`` has polled ``count`` more times."""
    target = transport.stats.polls + count
    eventually(lambda: transport.stats.polls >= target, f"{count} more polls")


def warned_once(caplog: pytest.LogCaptureFixture, transport: GDriveTransport, *ids: str) -> None:
    """Every file in ``ids`` was warned about, and only once even after more polls."""
    eventually(lambda: all(warnings_about(caplog, i) for i in ids), "a warning about each file")
    more_polls(transport)
    assert [warnings_about(caplog, i) for i in ids] == [1] * len(ids)


def request_file(drive: FakeDrive, sender: str, future_id: str) -> StoredFile:
    (found,) = drive.store.list(sender, f"name = '{future_id}.request'")
    return found


def recording(seen: list[Request], answer: bytes = b"ok") -> Callable[[Request], bytes]:
    def handler(request: Request) -> bytes:
        seen.append(request)
        return answer

    return handler


def served_bodies(seen: list[Request]) -> list[bytes]:
    return [request.body for request in seen]


# -- refusals -----------------------------------------------------------------------------------


def test_a_refusal_is_answered_with_its_whole_reason_and_logged_without_a_traceback(
    make: MakeTransport,
    serving: Serving,
    wait_reply: WaitReply,
    gdrive_logs: pytest.LogCaptureFixture,
) -> None:
    alice, bob = make("alice@x.org"), make("bob@x.org")
    reason = "alice@x.org may not ask this: " + "é" * 150  # 300+ bytes, over appProperties' 124

    def refuse(request: Request) -> bytes:
        if request.body == b"no":
            raise RequestRefusedError(reason)
        return b"yes"

    bob.serve(APP, EP, refuse)
    with serving(bob):
        refused = alice.send("bob@x.org", APP, EP, b"no", later())
        reply = wait_reply(alice, refused)
        served = alice.send("bob@x.org", APP, EP, b"ok", later())
        assert wait_reply(alice, served).body == b"yes"
    assert (reply.status, reply.detail) == (ReplyStatus.REJECTED, reason)
    records = [r for r in gdrive_logs.records if refused in r.getMessage()]
    assert records and all(r.levelno == logging.INFO and r.exc_info is None for r in records)
    assert not [r for r in gdrive_logs.records if r.levelno >= logging.ERROR]


def test_a_screened_sender_is_refused_without_downloading_its_request(
    make: MakeTransport, drive: FakeDrive, serving: Serving, wait_reply: WaitReply
) -> None:
    bob, mallory, carol = make("bob@x.org"), make("mallory@x.org"), make("carol@x.org")
    assert bob.capabilities.screens_requests
    heads: list[RequestHead] = []

    def screen(head: RequestHead) -> str | None:
        heads.append(head)
        return None if head.sender == "carol@x.org" else f"{head.sender} is a stranger"

    seen: list[Request] = []
    bob.set_request_screen(screen)
    bob.serve(APP, EP, recording(seen))
    with serving(bob):
        refused = mallory.send("bob@x.org", APP, EP, b"x" * 1000, later())
        reply = wait_reply(mallory, refused)
        assert drive.count("bob@x.org", "files.get_media") == 0, "the body was downloaded"
        served = carol.send("bob@x.org", APP, EP, b"hi", later())
        assert wait_reply(carol, served).body == b"ok"
    assert (reply.status, reply.detail) == (ReplyStatus.REJECTED, "mallory@x.org is a stranger")
    assert served_bodies(seen) == [b"hi"]
    (head,) = [h for h in heads if h.id == refused]
    assert (head.sender, head.recipient, head.app, head.endpoint, head.size) == (
        "mallory@x.org",
        "bob@x.org",
        APP,
        EP,
        1000,
    )


def test_an_oversized_request_is_refused_before_it_is_downloaded(
    make: MakeTransport, drive: FakeDrive, serving: Serving, wait_reply: WaitReply
) -> None:
    bob, carol = make("bob@x.org", max_body_size=10), make("carol@x.org")
    seen: list[Request] = []
    bob.serve(APP, EP, recording(seen))
    with serving(bob):
        big = carol.send("bob@x.org", APP, EP, b"x" * 11, later())
        reply = wait_reply(carol, big)
        assert drive.count("bob@x.org", "files.get_media") == 0, "the body was downloaded"
        fits = carol.send("bob@x.org", APP, EP, b"x" * 10, later())
        assert wait_reply(carol, fits).status is ReplyStatus.OK
    assert reply.status is ReplyStatus.REJECTED
    assert "11 bytes" in reply.detail and "max_body_size of 10" in reply.detail
    assert served_bodies(seen) == [b"x" * 10]


# -- requests the transport cannot attribute or trust ---------------------------------------------


def test_a_request_without_an_owner_is_ignored_once(
    make: MakeTransport,
    drive: FakeDrive,
    serving: Serving,
    wait_reply: WaitReply,
    gdrive_logs: pytest.LogCaptureFixture,
) -> None:
    """Drive lists shared-drive items without ``owners``: nothing says who wrote them."""
    bob, carol = make("bob@x.org"), make("carol@x.org")
    ownerless = carol.send("bob@x.org", APP, EP, b"whose?", later())
    hidden = request_file(drive, "carol@x.org", ownerless)
    with drive.store.locked():
        hidden.owner_listed = False
    seen: list[Request] = []
    bob.serve(APP, EP, recording(seen))
    with serving(bob):
        warned_once(gdrive_logs, bob, hidden.id)
        genuine = carol.send("bob@x.org", APP, EP, b"mine", later())
        assert wait_reply(carol, genuine).status is ReplyStatus.OK
    assert served_bodies(seen) == [b"mine"]
    assert carol.poll(ownerless) is None, "an unattributable request is not answered"


@pytest.mark.parametrize("lie", [-4, +4], ids=["listed-smaller", "listed-larger"])
def test_a_request_whose_content_disagrees_with_its_listed_size_is_not_delivered(
    make: MakeTransport,
    drive: FakeDrive,
    serving: Serving,
    wait_reply: WaitReply,
    gdrive_logs: pytest.LogCaptureFixture,
    monkeypatch: pytest.MonkeyPatch,
    lie: int,
) -> None:
    bob, carol = make("bob@x.org"), make("carol@x.org")
    liar = request_file(
        drive, "carol@x.org", carol.send("bob@x.org", APP, EP, b"12345678", later())
    )
    lie_about_size(drive, monkeypatch, liar.id, lie)
    seen: list[Request] = []
    bob.serve(APP, EP, recording(seen))
    with serving(bob):
        warned_once(gdrive_logs, bob, liar.id)
        genuine = carol.send("bob@x.org", APP, EP, b"honest", later())
        assert wait_reply(carol, genuine).status is ReplyStatus.OK
    assert served_bodies(seen) == [b"honest"]


def lie_about_size(
    drive: FakeDrive, monkeypatch: pytest.MonkeyPatch, file_id: str, lie: int
) -> None:
    """Make the fake list ``file_id`` with ``lie`` bytes more than it serves."""
    original = drive.store.resource

    def lying(stored: StoredFile, viewer: str) -> dict[str, Any]:
        resource = original(stored, viewer)
        if stored.id == file_id:
            resource["size"] = str(len(stored.content) + lie)
        return resource

    monkeypatch.setattr(drive.store, "resource", lying)


@pytest.mark.parametrize("expiry", ["nan", "soon", ""])
def test_a_request_with_a_malformed_expiry_is_ignored_once(
    make: MakeTransport,
    serving: Serving,
    wait_reply: WaitReply,
    gdrive_logs: pytest.LogCaptureFixture,
    expiry: str,
) -> None:
    """A request that could never expire (NaN compares false to every time) is not taken."""
    bob, carol = make("bob@x.org"), make("carol@x.org")
    outbox = carol.folders.outbox("bob@x.org", APP, EP)
    properties = {MARKER[0]: MARKER[1], PROP_EXPIRES: expiry}
    odd = carol.api.upload(f"{uuid.uuid4()}.request", outbox, b"forever", properties, "test")
    seen: list[Request] = []
    bob.serve(APP, EP, recording(seen))
    with serving(bob):
        warned_once(gdrive_logs, bob, odd)
        genuine = carol.send("bob@x.org", APP, EP, b"dated", later())
        assert wait_reply(carol, genuine).status is ReplyStatus.OK
    assert served_bodies(seen) == [b"dated"]


# -- objects at a reply's name --------------------------------------------------------------------


def test_foreign_objects_at_a_reply_name_are_ignored_and_the_real_reply_collected(
    make: MakeTransport,
    drive: FakeDrive,
    serving: Serving,
    wait_reply: WaitReply,
    gdrive_logs: pytest.LogCaptureFixture,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    alice = make("alice@x.org", max_body_size=64)
    bob, mallory = make("bob@x.org"), make("mallory@x.org")
    future = alice.send("bob@x.org", APP, EP, b"question", later())
    name = f"{future}.response"
    outbox = bob.folders.outbox("alice@x.org", APP, EP)  # where bob's answer will appear
    bob.api.share(bob.folders.pair("alice@x.org"), "mallory@x.org", "writer", "test")
    properties = {MARKER[0]: MARKER[1], PROP_EXPIRES: repr(later())}
    hostile = {
        "folder": bob.api.create_folder(name, outbox, "test"),
        "google doc": drive.store.create(
            "bob@x.org", {"name": name, "parents": [outbox], "mimeType": GDOC_MIME}
        ).id,
        "not bob's": mallory.api.upload(name, outbox, b"forged answer", properties, "test"),
        "broken envelope": bob.api.upload(name, outbox, b"SFWM\x01garbage", properties, "test"),
        "broken seal": bob.api.upload(name, outbox, b"SFWE\x01\x00\x05junk!", properties, "test"),
        "oversized": bob.api.upload(name, outbox, b"x" * 65, properties, "test"),
    }
    # Alice is already polling: an object altered after its upload could be listed before the
    # change (then a plausible plaintext reply from bob, rightly taken), so these two are made
    # in their final state under the store's lock, which every listing takes.
    metadata = {"name": name, "parents": [outbox], "appProperties": properties}
    with drive.store.locked():
        ownerless = drive.store.create("bob@x.org", dict(metadata), b"whose answer?")
        ownerless.owner_listed = False
        liar = drive.store.create("bob@x.org", dict(metadata), b"short")
        lie_about_size(drive, monkeypatch, liar.id, +10)
    hostile |= {"ownerless": ownerless.id, "lying size": liar.id}
    warned_once(gdrive_logs, alice, *hostile.values())
    assert alice.poll(future) is None, "a foreign object settled the future"
    assert drive.count("alice@x.org", "files.get_media") <= 3, "downloaded what it need not"
    bob.serve(APP, EP, lambda request: b"the answer")
    with serving(bob):
        reply = wait_reply(alice, future)
    assert (reply.status, reply.body) == (ReplyStatus.OK, b"the answer")


# -- names --------------------------------------------------------------------------------------


def test_folders_someone_else_made_in_a_pair_folder_are_never_routed(
    make: MakeTransport, drive: FakeDrive, serving: Serving, wait_reply: WaitReply
) -> None:
    """A writer squatting the app folder in carol's pair folder owns neither carol's path to
    bob nor bob's view of it."""
    bob, carol, mallory = make("bob@x.org"), make("carol@x.org"), make("mallory@x.org")
    pair = carol.folders.pair("bob@x.org")
    carol.api.share(pair, "mallory@x.org", "writer", "test")
    squat = pair
    for folder_name in (APP, "rpc", EP):
        squat = mallory.api.create_folder(folder_name, squat, "test")
    mallory.api.upload(f"{uuid.uuid4()}.request", squat, b"evil", {}, "test")
    seen: list[Request] = []
    bob.serve(APP, EP, recording(seen))
    with serving(bob):
        genuine = carol.send("bob@x.org", APP, EP, b"hi", later())
        assert wait_reply(carol, genuine).status is ReplyStatus.OK
    assert served_bodies(seen) == [b"hi"]
    path = drive.store.get("carol@x.org", request_file(drive, "carol@x.org", genuine).parents[0])
    owners = []
    while path.id != pair:
        owners.append(path.owner)
        path = drive.store.get("carol@x.org", path.parents[0])
    assert owners == ["carol@x.org"] * 3, "carol wrote into folders mallory owns"


# -- the pieces, one hostile field at a time ----------------------------------------------------

LEAF = "leaf-folder"
CAROL = Endpoint("carol@x.org", APP, EP)
LISTED: dict[str, Any] = {
    "id": "file-1",
    "name": "f1.request",
    "mimeType": "application/octet-stream",
    "parents": [LEAF],
    "owners": [{"emailAddress": "Carol@x.org"}],
    "size": "5",
    "createdTime": "2025-01-01T00:00:00.000Z",
    "appProperties": {MARKER[0]: MARKER[1], PROP_EXPIRES: "1e12"},
}


def test_a_listed_message_file_is_read_field_by_field() -> None:
    message = classify(LISTED, {LEAF: CAROL})
    assert isinstance(message, MessageFile)
    assert (message.file_id, message.message_id, message.kind, message.size) == (
        "file-1",
        "f1",
        "request",
        5,
    )
    assert (message.endpoint, message.expires_at, message.rejected) == (CAROL, 1e12, False)
    without_properties = classify({**LISTED, "appProperties": None}, {LEAF: CAROL})
    assert isinstance(without_properties, MessageFile)
    assert without_properties.expires_at == math.inf, "syft-flwr 0.5 writes no expiry"


@pytest.mark.parametrize(
    ("change", "reason"),
    [
        ({"mimeType": FOLDER_MIME}, "folder"),
        ({"mimeType": "application/vnd.google-apps.shortcut"}, "not a file with content"),
        ({"mimeType": None}, "not a file with content"),
        ({"owners": None}, "no owner"),
        ({"owners": []}, "no owner"),
        ({"owners": "carol@x.org"}, "no owner"),
        ({"owners": [{"emailAddress": 7}]}, "no owner"),
        ({"owners": [{}]}, "no owner"),
        ({"owners": [{"emailAddress": "mallory@x.org"}]}, "written by mallory@x.org"),
        ({"size": None}, "size"),
        ({"size": "-1"}, "size"),
        ({"size": "1e3"}, "size"),
        ({"size": "\u0663"}, "size"),  # a digit to str.isdigit(), not a number of bytes
        ({"size": 5}, "size"),
        ({"appProperties": "x"}, "not a map"),
        ({"appProperties": {PROP_EXPIRES: 5}}, "not a map"),
        ({"appProperties": {PROP_EXPIRES: "nan"}}, "not a time"),
        ({"appProperties": {PROP_EXPIRES: "tomorrow"}}, "not a time"),
        ({"appProperties": {PROP_STATUS: "ok"}}, "status"),
    ],
)
def test_a_message_named_object_that_does_not_check_out_is_foreign(
    change: dict[str, Any], reason: str
) -> None:
    foreign = classify({**LISTED, **change}, {LEAF: CAROL})
    assert isinstance(foreign, Foreign), foreign
    assert reason in foreign.reason and foreign.file_id == "file-1"


@pytest.mark.parametrize(
    "change",
    [
        {"id": None},
        {"id": "../../etc"},
        {"name": 5},
        {"name": "f1.request.exe"},
        {"name": "../f1.request"},
        {"name": "did.json"},
        {"parents": None},
        {"parents": "leaf-folder"},
        {"parents": [["leaf-folder"]]},
        {"parents": ["another-folder"]},
    ],
)
def test_objects_outside_the_message_path_are_not_looked_at(change: dict[str, Any]) -> None:
    assert classify({**LISTED, **change}, {LEAF: CAROL}) is None


@pytest.mark.parametrize(
    "listed",
    [
        {"id": "f", "mimeType": FOLDER_MIME, "name": None, "parents": ["p"]},
        {"mimeType": FOLDER_MIME, "name": "x", "parents": ["p"]},
        {"id": "f", "mimeType": FOLDER_MIME, "name": "x", "parents": [7]},
        {"id": "f", "mimeType": FOLDER_MIME, "name": "x", "owners": "nobody"},
    ],
)
def test_malformed_folder_entries_do_not_stop_a_poll(listed: dict[str, Any]) -> None:
    tree = FolderTree(
        None,  # type: ignore[arg-type]  # learning makes no API call
        "bob@x.org",
        root_name="SyftBox",
        root_id=None,
        share_role="reader",
        discovery_interval=1.0,
    )
    tree.learn([listed])


def test_a_pair_folder_with_a_hostile_email_is_never_an_inbox() -> None:
    for name in (
        "syft_outbox_inbox_../evil@x.org_to_bob@x.org",
        "syft_outbox_inbox_o'brien@x.org_to_bob@x.org",
        "syft_outbox_inbox_eve@x.org\n_to_bob@x.org",
        "syft_outbox_inbox_nobody_to_bob@x.org",
    ):
        assert peer_of_inbox(name, "bob@x.org") is None, name
    assert peer_of_inbox("syft_outbox_inbox_a_to_b@x.org_to_bob@x.org", "bob@x.org") == (
        "a_to_b@x.org"
    )


@pytest.mark.parametrize(
    ("body", "problem"),
    [
        (b"SFWM\x01garbage", "header length"),
        (b"SFWM", "shorter"),
        (b"SFWE\x01\x00\x05junk!", "truncated"),
        (b"SFWE", "truncated"),
    ],
)
def test_a_body_that_claims_a_syft_flwr_framing_must_have_it(body: bytes, problem: str) -> None:
    assert problem in (defect(body) or "")


def test_opaque_and_well_formed_bodies_have_no_defect() -> None:
    envelope = encode_message(flower_message(dst_node_id=1))
    for body in (b"", b"opaque bytes", b'{"error": "boom"}', envelope):
        assert defect(body) is None


class ScriptedHttp:
    """Answers ranged GETs from a script, recording the ranges asked for."""

    def __init__(self, *answers: tuple[int, dict[str, str], bytes]) -> None:
        self.answers = list(answers)
        self.ranges: list[str] = []

    def request(self, uri: str, method: str = "GET", **kwargs: Any) -> tuple[Any, bytes]:
        self.ranges.append(kwargs["headers"]["Range"])
        status, headers, content = self.answers.pop(0)
        return httplib2.Response({"status": status, **headers}), content


class ScriptedService:
    def __init__(self, http: ScriptedHttp) -> None:
        self._http = http

    def http(self) -> ScriptedHttp:
        return self._http


def fetch(size: int, chunk: int, *answers: tuple[int, dict[str, str], bytes]) -> list[str]:
    """Run a download of ``size`` bytes against scripted answers; return the ranges asked."""
    http = ScriptedHttp(*answers)
    retrier = Retrier(RetryPolicy(attempts=2, base_delay=0.001, max_delay=0.001), "t")
    data = download(ScriptedService(http), "uri", size, chunk, retrier, "test")  # type: ignore[arg-type]
    assert len(data) == size
    return http.ranges


def test_a_download_asks_only_for_the_listed_bytes() -> None:
    ranges = fetch(
        7,
        3,
        (206, {"content-range": "bytes 0-2/7"}, b"abc"),
        (206, {"content-range": "bytes 3-5/7"}, b"def"),
        (206, {"content-range": "bytes 6-6/7"}, b"g"),
    )
    assert ranges == ["bytes=0-2", "bytes=3-5", "bytes=6-6"]
    assert fetch(4, 100, (206, {"content-range": "bytes 0-3/4"}, b"abcd")) == ["bytes=0-3"]
    assert fetch(0, 100) == [], "an empty file needs no request"


@pytest.mark.parametrize(
    "answer",
    [
        (200, {}, b"abcdefgh"),  # Range ignored, more than listed
        (200, {}, b"abc"),  # Range ignored, less than listed
        (206, {"content-range": "bytes 0-3/9"}, b"abcd"),  # the file is larger than listed
        (206, {"content-range": "bytes 0-3/4"}, b"abcdefgh"),  # more bytes than the range
        (206, {"content-range": "bytes 0-5/4"}, b"abcdef"),  # a range past what was asked
        (206, {"content-range": "bytes 0-3/4"}, b""),  # an end before the listed size
    ],
)
def test_a_download_refuses_content_that_disagrees_with_the_listing(
    answer: tuple[int, dict[str, str], bytes],
) -> None:
    with pytest.raises(DriveContentError):
        fetch(4, 100, answer)


def test_a_reply_candidate_that_fails_unexpectedly_does_not_hold_its_future(
    make: MakeTransport,
    serving: Serving,
    wait_reply: WaitReply,
    gdrive_logs: pytest.LogCaptureFixture,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # Seen once with the machine loaded: a candidate whose fetch raised left the future marked
    # as fetching, so no later candidate, the real reply included, was ever looked at.
    alice, bob = make("alice@x.org"), make("bob@x.org")
    future = alice.send("bob@x.org", APP, EP, b"question", later())
    outbox = bob.folders.outbox("alice@x.org", APP, EP)
    properties = {MARKER[0]: MARKER[1], PROP_EXPIRES: repr(later())}
    bogus = bob.api.upload(f"{future}.response", outbox, b"SFWM\x01odd", properties, "test")
    download = alice.api.download

    def defective(file_id: str, size: int, what: str) -> bytes | None:
        if file_id == bogus:
            raise RuntimeError("a defect while reading this body")
        return download(file_id, size, what)

    monkeypatch.setattr(alice.api, "download", defective)
    eventually(lambda: warnings_about(gdrive_logs, bogus), "the defect to be logged")
    bob.serve(APP, EP, lambda request: b"the answer")
    with serving(bob):
        reply = wait_reply(alice, future)
    assert (reply.status, reply.body) == (ReplyStatus.OK, b"the answer")
