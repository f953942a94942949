"""Seal/open round trips and every attack the encryption layer must refuse, each by its error."""

from __future__ import annotations

import json
import os
import stat
import time
from pathlib import Path

import msgpack
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from syft_flwr.crypto import (
    BadSignatureError,
    CryptoError,
    DecryptionError,
    ExpiredError,
    IdentityKeys,
    KeyStore,
    KeyStoreError,
    MalformedEnvelopeError,
    MissingKeyError,
    ReplayError,
    ReplayStore,
    SecureChannel,
    SenderMismatchError,
    UnknownKeyError,
    WrongRecipientError,
    build_document,
    default_key_root,
    parse_document,
)
from syft_flwr.crypto import channel as channel_module
from syft_flwr.crypto.envelope import TAG_SIZE, parse_envelope
from syft_flwr.errors import SyftFlwrError

ALICE = "alice@example.org"
BOB = "bob@example.org"
EVE = "eve@example.org"
APP = "flwr/test"
EP = "messages"


class Directory:
    """Published key documents, as a transport would hold them."""

    def __init__(self) -> None:
        self.documents: dict[str, bytes] = {}

    def publish(self, keys: IdentityKeys) -> None:
        self.documents[keys.email] = json.dumps(build_document(keys)).encode()

    def fetch(self, email: str) -> bytes | None:
        return self.documents.get(email)


class Party:
    def __init__(self, email: str, directory: Directory, db: Path | str = ":memory:") -> None:
        self.keys = IdentityKeys.generate(email)
        directory.publish(self.keys)
        self.directory = directory
        self.channel = SecureChannel(self.keys, ReplayStore(db), directory.fetch)

    def restart(self, db: Path) -> SecureChannel:
        self.channel.close()
        self.channel = SecureChannel(self.keys, ReplayStore(db), self.directory.fetch)
        return self.channel


@pytest.fixture
def directory() -> Directory:
    return Directory()


@pytest.fixture
def alice(directory: Directory) -> Party:
    return Party(ALICE, directory)


@pytest.fixture
def bob(directory: Directory, tmp_path: Path) -> Party:
    return Party(BOB, directory, tmp_path / "bob.sqlite3")


def seal(sender: Party, body: bytes = b"model bytes", ttl: float = 60.0, **kw) -> bytes:
    envelope, _ = sender.channel.seal(BOB, APP, EP, body, time.time() + ttl, **kw)
    return envelope


def open_at_bob(bob: Party, data: bytes, sender: str = ALICE, **kw):
    return bob.channel.open(data, sender=sender, app=APP, endpoint=EP, **kw)


# -- round trips ----------------------------------------------------------------------------


@settings(max_examples=40, deadline=None)
@given(body=st.binary(max_size=4096))
def test_seal_open_round_trip(body: bytes) -> None:
    directory = Directory()
    alice, bob = Party(ALICE, directory), Party(BOB, directory)
    opened = open_at_bob(bob, seal(alice, body))
    assert opened.body == body
    assert opened.header.sender == ALICE and opened.header.recipient == BOB


@settings(max_examples=25, deadline=None)
@given(body=st.binary(max_size=512), cut=st.integers(min_value=1, max_value=10_000))
def test_any_truncation_is_refused(body: bytes, cut: int) -> None:
    directory = Directory()
    alice, bob = Party(ALICE, directory), Party(BOB, directory)
    sealed = seal(alice, body)
    truncated = sealed[: max(0, len(sealed) - cut)]
    with pytest.raises((MalformedEnvelopeError, DecryptionError)):
        open_at_bob(bob, truncated)


@settings(max_examples=40, deadline=None)
@given(data=st.data())
def test_any_single_bit_flip_is_refused(data: st.DataObject) -> None:
    directory = Directory()
    alice, bob = Party(ALICE, directory), Party(BOB, directory)
    sealed = bytearray(seal(alice, b"x" * 64))
    index = data.draw(st.integers(min_value=0, max_value=len(sealed) - 1))
    sealed[index] ^= 1 << data.draw(st.integers(min_value=0, max_value=7))
    with pytest.raises(SyftFlwrError):
        open_at_bob(bob, bytes(sealed))


def test_overhead_is_small_and_body_is_not_base64(alice: Party, bob: Party) -> None:
    body = os.urandom(1 << 16)
    sealed = seal(alice, body)
    assert len(sealed) - len(body) < 300
    assert parse_envelope(sealed).ciphertext.nbytes == len(body) + TAG_SIZE


def test_reply_binds_to_its_request(alice: Party, bob: Party) -> None:
    request = seal(alice)
    request_id = open_at_bob(bob, request).header.message_id
    reply, _ = bob.channel.seal(ALICE, APP, EP, b"answer", time.time() + 60, reply_to=request_id)
    assert alice.channel.open(reply, sender=BOB, app=APP, endpoint=EP, reply_to=request_id).body
    other, _ = bob.channel.seal(ALICE, APP, EP, b"old", time.time() + 60, reply_to=os.urandom(16))
    with pytest.raises(WrongRecipientError):
        alice.channel.open(other, sender=BOB, app=APP, endpoint=EP, reply_to=request_id)


# -- attacks --------------------------------------------------------------------------------


def rewrite_header(sealed: bytes, index: int, value: object) -> bytes:
    envelope = parse_envelope(sealed)
    fields = envelope.header.pack()
    fields[index] = value
    packed = msgpack.packb(fields, use_bin_type=True)
    prefix = bytes(envelope.aad[:5]) + len(packed).to_bytes(2, "big")
    return prefix + packed + bytes(envelope.ciphertext)


def test_tampered_ciphertext(alice: Party, bob: Party) -> None:
    sealed = bytearray(seal(alice))
    sealed[-TAG_SIZE - 1] ^= 0x01
    with pytest.raises(DecryptionError):
        open_at_bob(bob, bytes(sealed))


@pytest.mark.parametrize(
    ("index", "value"),
    [
        (4, os.urandom(16)),  # message id
        (6, time.time() - 1.0),  # created
        (7, time.time() + 3600.0),  # expires, extended
        (10, os.urandom(32)),  # ephemeral key
    ],
    ids=["message-id", "created", "expires", "ephemeral-key"],  # the same in every worker
)
def test_tampered_header_fields(alice: Party, bob: Party, index: int, value: object) -> None:
    with pytest.raises(DecryptionError):
        open_at_bob(bob, rewrite_header(seal(alice), index, value))


def test_tampered_version(alice: Party, bob: Party) -> None:
    sealed = bytearray(seal(alice))
    sealed[4] = 2
    with pytest.raises(MalformedEnvelopeError):
        open_at_bob(bob, bytes(sealed))


def test_swapped_recipient(directory: Directory, alice: Party, bob: Party) -> None:
    eve = Party(EVE, directory)
    to_eve, _ = alice.channel.seal(EVE, APP, EP, b"for eve", time.time() + 60)
    with pytest.raises(WrongRecipientError):
        open_at_bob(bob, to_eve)
    relabelled = rewrite_header(to_eve, 1, BOB)
    with pytest.raises(UnknownKeyError):  # sealed to Eve's key, which Bob does not hold
        open_at_bob(bob, relabelled)
    assert eve.channel.open(to_eve, sender=ALICE, app=APP, endpoint=EP).body == b"for eve"


def test_wrong_app_or_endpoint(alice: Party, bob: Party) -> None:
    with pytest.raises(WrongRecipientError):
        bob.channel.open(seal(alice), sender=ALICE, app="flwr/other", endpoint=EP)
    with pytest.raises(WrongRecipientError):
        bob.channel.open(seal(alice), sender=ALICE, app=APP, endpoint="other")


def test_spoofed_sender(directory: Directory, alice: Party, bob: Party) -> None:
    eve = Party(EVE, directory)
    from_eve, _ = eve.channel.seal(BOB, APP, EP, b"evil", time.time() + 60)
    # Eve writes where Alice's messages arrive: the transport says Alice, the header says Eve.
    with pytest.raises(SenderMismatchError):
        open_at_bob(bob, from_eve, sender=ALICE)
    # Eve also rewrites the header to name Alice (with Alice's key id): the tag fails.
    forged = rewrite_header(rewrite_header(from_eve, 0, ALICE), 8, alice.keys.current.kid)
    with pytest.raises(DecryptionError):
        open_at_bob(bob, forged, sender=ALICE)


def test_replay_is_refused(alice: Party, bob: Party) -> None:
    sealed = seal(alice)
    assert open_at_bob(bob, sealed).body == b"model bytes"
    with pytest.raises(ReplayError):
        open_at_bob(bob, sealed)


def test_replay_is_refused_after_a_restart(alice: Party, bob: Party, tmp_path: Path) -> None:
    sealed = seal(alice)
    open_at_bob(bob, sealed)
    bob.restart(tmp_path / "bob.sqlite3")
    with pytest.raises(ReplayError):
        open_at_bob(bob, sealed)


def test_replay_store_prunes_expired_entries(tmp_path: Path) -> None:
    store = ReplayStore(tmp_path / "r.sqlite3")
    store.check_and_record(ALICE, b"1" * 16, expires=100.0, now=50.0)
    store.check_and_record(ALICE, b"2" * 16, expires=300.0, now=200.0)
    assert len(store) == 1


def test_expired_message(alice: Party, bob: Party) -> None:
    sealed = seal(alice, ttl=5.0)
    with pytest.raises(ExpiredError):
        open_at_bob(bob, sealed, now=time.time() + 10.0)


def test_message_from_the_future(alice: Party, bob: Party) -> None:
    sealed = seal(alice, ttl=10_000.0)
    with pytest.raises(ExpiredError):
        open_at_bob(bob, sealed, now=time.time() - 3600.0)


def test_a_channel_agrees_the_static_keys_once_per_pair(
    directory: Directory, alice: Party, bob: Party, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Every message between two parties shares the static half of its key agreement: each
    channel computes it once per pair of keys, and anew for a rotated key."""
    agreed: list[str] = []
    agreement = channel_module.static_agreement

    def counting(own_key: object, peer_public: bytes) -> object:
        agreed.append(peer_public.hex())
        return agreement(own_key, peer_public)  # type: ignore[arg-type]

    monkeypatch.setattr(channel_module, "static_agreement", counting)
    for body in (b"one", b"two", b"three"):
        assert open_at_bob(bob, seal(alice, body)).body == body
    assert len(agreed) == 2  # alice sealing to bob, bob opening from alice
    alice.keys = alice.channel.keys = alice.keys.rotated(grace=60.0)
    directory.publish(alice.keys)
    assert open_at_bob(bob, seal(alice, b"four")).body == b"four"
    assert len(agreed) == 4


def test_rotated_recipient_key_is_accepted_during_grace_then_refused(
    directory: Directory, alice: Party, bob: Party
) -> None:
    old = seal(alice)
    bob.keys = bob.channel.keys = bob.keys.rotated(grace=60.0)
    directory.publish(bob.keys)
    assert open_at_bob(bob, old).body == b"model bytes"
    later = seal(alice, ttl=3600.0)  # Alice still has the old document cached
    with pytest.raises(UnknownKeyError):
        open_at_bob(bob, later, now=time.time() + 120.0)


def test_rotated_sender_key_is_found_by_refetching(directory: Directory, bob: Party) -> None:
    alice = Party(ALICE, directory)
    open_at_bob(bob, seal(alice))  # Bob caches Alice's document
    alice.keys = alice.channel.keys = alice.keys.rotated(grace=60.0)
    directory.publish(alice.keys)
    assert open_at_bob(bob, seal(alice)).body == b"model bytes"


def test_rotated_out_sender_key_is_refused(directory: Directory, alice: Party, bob: Party) -> None:
    sealed = seal(alice, ttl=3600.0)
    alice.keys = alice.keys.rotated(grace=0.0).pruned()
    directory.publish(alice.keys)
    bob.channel.peer(ALICE, refresh=True)
    with pytest.raises(UnknownKeyError):
        open_at_bob(bob, sealed)


def test_unknown_recipient_key(alice: Party, bob: Party) -> None:
    with pytest.raises(UnknownKeyError):
        open_at_bob(bob, rewrite_header(seal(alice), 9, b"\0" * 8))


def test_missing_key_document(alice: Party) -> None:
    with pytest.raises(MissingKeyError):
        alice.channel.seal("nobody@example.org", APP, EP, b"x", time.time() + 60)
    assert set(alice.channel.missing_keys([BOB, "nobody@example.org"])) >= {"nobody@example.org"}


def test_key_document_signed_by_someone_else(directory: Directory, bob: Party) -> None:
    alice = Party(ALICE, directory)
    document = json.loads(directory.documents[ALICE])
    intruder = IdentityKeys.generate(ALICE)
    document["syftFlwr"] = build_document(intruder)["syftFlwr"]
    with pytest.raises(BadSignatureError):
        parse_document(json.dumps(document), ALICE)
    document = json.loads(directory.documents[ALICE])
    with pytest.raises(MissingKeyError):  # Alice's document placed under Bob's name
        parse_document(json.dumps(document), BOB)
    assert alice.keys.current.kid == parse_document(directory.documents[ALICE], ALICE).keys[0].kid


def test_document_matches_syft_crypto_shape(alice: Party) -> None:
    document = build_document(alice.keys)
    assert document["id"] == "did:web:syftbox.net:alice%40example.org"
    identity = document["verificationMethod"][0]
    assert identity["id"].endswith("#identity-key")
    assert identity["publicKeyJwk"]["crv"] == "Ed25519"
    prekey = document["keyAgreement"][0]
    assert prekey["id"].endswith("#signed-prekey")
    assert {"kty", "crv", "x", "kid", "use", "signature"} <= set(prekey["publicKeyJwk"])
    syft_crypto_only = {k: v for k, v in document.items() if k != "syftFlwr"}
    peer = parse_document(json.dumps(syft_crypto_only), ALICE)
    with pytest.raises(MissingKeyError):
        peer.current()


# -- key store ------------------------------------------------------------------------------


def test_key_store_writes_0600_and_round_trips(tmp_path: Path) -> None:
    store = KeyStore(tmp_path / "keys")
    keys = store.init(ALICE)
    path = store.path(ALICE)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert stat.S_IMODE(path.parent.stat().st_mode) == 0o700
    loaded = store.load(ALICE)
    assert loaded.current.kid == keys.current.kid
    with pytest.raises(KeyStoreError):
        store.init(ALICE)


def test_key_store_refuses_readable_keys(tmp_path: Path) -> None:
    store = KeyStore(tmp_path)
    store.init(ALICE)
    store.path(ALICE).chmod(0o644)
    with pytest.raises(KeyStoreError, match="chmod 600"):
        store.load(ALICE)


def test_key_store_rotation_keeps_the_old_key(tmp_path: Path) -> None:
    store = KeyStore(tmp_path)
    first = store.init(ALICE)
    rotated = store.rotate(ALICE, grace=3600.0)
    assert rotated.current.kid != first.current.kid
    assert [k.kid for k in store.load(ALICE).agreement] == [
        rotated.current.kid,
        first.current.kid,
    ]


def test_missing_keys_say_how_to_create_them(tmp_path: Path) -> None:
    with pytest.raises(KeyStoreError, match="keys init"):
        KeyStore(tmp_path).load(ALICE)


def test_default_key_root() -> None:
    assert default_key_root({"SYFT_FLWR_KEY_DIR": "/k"}) == Path("/k")
    assert default_key_root({"XDG_CONFIG_HOME": "/c"}) == Path("/c/syft-flwr/keys")


def test_oversized_body_is_a_specific_error(
    alice: Party, bob: Party, monkeypatch: pytest.MonkeyPatch
) -> None:
    from syft_flwr.crypto import envelope
    from syft_flwr.crypto.errors import PlaintextTooLargeError

    monkeypatch.setattr(envelope, "MAX_PLAINTEXT", 10)
    with pytest.raises(PlaintextTooLargeError):
        alice.channel.seal(BOB, APP, EP, [b"x" * 6, b"y" * 5], time.time() + 60)


@settings(max_examples=20, deadline=None)
@given(frames=st.lists(st.binary(max_size=300), max_size=5), flip=st.booleans())
def test_frames_and_streamed_opening(frames: list[bytes], flip: bool) -> None:
    """Frames seal like their concatenation; bodies open in chunks of any size."""
    from syft_flwr.crypto import envelope

    directory = Directory()
    alice, bob = Party(ALICE, directory), Party(BOB, directory)
    sealed = bytearray(seal(alice, frames))  # type: ignore[arg-type]
    if flip and len(sealed) > 200:
        sealed[-1] ^= 1
    original = envelope._CHUNK
    envelope._CHUNK = 7
    try:
        if flip and len(sealed) > 200:
            with pytest.raises(DecryptionError):
                open_at_bob(bob, bytes(sealed))
        else:
            assert open_at_bob(bob, bytes(sealed)).body == b"".join(frames)
    finally:
        envelope._CHUNK = original


def test_peer_identity_is_pinned_on_the_first_successful_exchange(
    directory: Directory, tmp_path: Path
) -> None:
    from syft_flwr.crypto import IdentityChangedError
    from syft_flwr.crypto.pins import PinStore

    alice = Party(ALICE, directory)
    pins = tmp_path / "peers.json"
    bob = SecureChannel(
        IdentityKeys.generate(BOB), ReplayStore(":memory:"), directory.fetch, pins=PinStore(pins)
    )
    directory.publish(bob.keys)
    bob.peer(ALICE)
    assert not pins.exists(), "a document seen is no exchange: nothing is pinned yet"
    sealed, _ = alice.channel.seal(BOB, "app", "ep", b"hello", time.time() + 60)
    bob.open(sealed, sender=ALICE, app="app", endpoint="ep")
    assert stat.S_IMODE(pins.stat().st_mode) == 0o600
    directory.publish(IdentityKeys.generate(ALICE))  # a substituted did.json, validly signed
    restarted = SecureChannel(
        bob.keys, ReplayStore(":memory:"), directory.fetch, pins=PinStore(pins)
    )
    with pytest.raises(IdentityChangedError, match="remove its entry"):
        restarted.peer(ALICE)
    assert ALICE in restarted.missing_keys([ALICE])


def test_a_stale_document_seen_first_does_not_lock_out_the_current_one(
    directory: Directory, tmp_path: Path
) -> None:
    """Over a sync a peer's previous did.json can be read before its current one."""
    from syft_flwr.crypto.pins import PinStore

    Party(ALICE, directory)  # the identity ALICE had before (its did.json still synced)
    bob = SecureChannel(
        IdentityKeys.generate(BOB),
        ReplayStore(":memory:"),
        directory.fetch,
        pins=PinStore(tmp_path / "peers.json"),
    )
    directory.publish(bob.keys)
    stale = bob.peer(ALICE)
    current = IdentityKeys.generate(ALICE)  # its current identity, not synced to bob yet
    alice = SecureChannel(current, ReplayStore(":memory:"), directory.fetch)
    sealed, _ = alice.seal(BOB, "app", "ep", b"hello", time.time() + 60)
    with pytest.raises(CryptoError):  # sealed by a key bob's copy does not have yet
        bob.open(sealed, sender=ALICE, app="app", endpoint="ep")
    directory.publish(current)  # the next sync cycle brings the current did.json
    assert bob.open(sealed, sender=ALICE, app="app", endpoint="ep").body == b"hello"
    assert bob.peer(ALICE).identity != stale.identity
