"""The request gate every served endpoint shares: duplicates, expiry, addressing, sealing."""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest
from flwr.app import ConfigRecord, Message, Metadata, RecordDict

from syft_flwr.crypto.channel import SecureChannel
from syft_flwr.crypto.document import build_document
from syft_flwr.crypto.keys import IdentityKeys
from syft_flwr.crypto.replay import ReplayStore
from syft_flwr.inbound import SEEN_CAPACITY, RequestGate
from syft_flwr.message_factory import message_with_metadata
from syft_flwr.node_ids import node_id_for
from syft_flwr.transport import Request
from syft_flwr.wire import decode_message, encode_message, encode_message_frames

ME = "alice@gate.test"
SERVER = "server@gate.test"


def flower_message(message_id: str = "m1", dst: str = ME, ttl: float = 30.0) -> Message:
    metadata = Metadata(
        run_id=1,
        message_id=message_id,
        src_node_id=1,
        dst_node_id=node_id_for(dst),
        reply_to_message_id="",
        group_id="g",
        created_at=time.time(),
        ttl=ttl,
        message_type="query",
    )
    return message_with_metadata(metadata, content=RecordDict({"c": ConfigRecord({"x": 1})}))


def request(body: bytes, rid: str = "r1", ttl: float = 30.0, endpoint: str = "messages") -> Request:
    now = time.time()
    return Request(rid, SERVER, ME, "flwr/app", endpoint, body, now, now + ttl)


def test_admits_a_request_once_by_request_id_and_by_message_id() -> None:
    gate = RequestGate(ME)
    body = encode_message(flower_message())
    admitted = gate.admit(request(body))
    assert admitted is not None and admitted.message.metadata.message_id == "m1"
    assert admitted.envelope_id == b"" and admitted.still_fresh()
    assert gate.admit(request(body)) is None
    assert gate.admit(request(body, rid="r2", endpoint="aux")) is None  # replayed elsewhere


def test_refuses_expired_garbage_and_misaddressed_requests() -> None:
    gate = RequestGate(ME)
    assert gate.admit(request(encode_message(flower_message()), ttl=-1)) is None
    assert gate.admit(request(b"garbage", rid="r2")) is None
    other = encode_message(flower_message("m3", dst="bob@gate.test"))
    assert gate.admit(request(other, rid="r3")) is None


def test_a_message_past_its_own_ttl_is_not_fresh() -> None:
    gate = RequestGate(ME)
    stale = flower_message()
    stale.metadata.__dict__["_created_at"] = time.time() - 60
    admitted = gate.admit(request(encode_message(stale)))
    assert admitted is not None and not admitted.still_fresh()


def test_plaintext_reply_is_the_encoded_message() -> None:
    gate = RequestGate(ME)
    admitted = gate.admit(request(encode_message(flower_message())))
    assert admitted is not None
    reply = Message(RecordDict(), reply_to=admitted.message)
    body = gate.seal_reply(admitted, reply)
    assert body is not None
    assert decode_message(body).metadata.reply_to_message_id == "m1"


def test_forgets_the_oldest_ids_beyond_its_capacity() -> None:
    gate = RequestGate(ME)
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


def test_sealed_request_opens_and_the_reply_is_sealed_to_its_sender(
    tmp_path: Path, identities: dict[str, IdentityKeys]
) -> None:
    mine, server = channel(ME, identities, tmp_path), channel(SERVER, identities, tmp_path)
    gate = RequestGate(ME, mine)
    sealed, envelope_id = server.seal(
        ME, "flwr/app", "aux", encode_message_frames(flower_message()), time.time() + 30
    )
    admitted = gate.admit(request(sealed, endpoint="aux"))
    assert admitted is not None and admitted.envelope_id == envelope_id
    body = gate.seal_reply(admitted, Message(RecordDict(), reply_to=admitted.message))
    assert body is not None
    opened = server.open(body, sender=ME, app="flwr/app", endpoint="aux", reply_to=envelope_id)
    assert decode_message(opened.body).metadata.reply_to_message_id == "m1"
    # sealed for another endpoint: refused
    other, _ = server.seal(
        ME, "flwr/app", "messages", encode_message_frames(flower_message("m2")), time.time() + 30
    )
    assert gate.admit(request(other, rid="r2", endpoint="aux")) is None
    # plaintext to an encrypting datasite: refused
    assert gate.admit(request(encode_message(flower_message("m3")), rid="r3")) is None
    mine.close()
    server.close()
