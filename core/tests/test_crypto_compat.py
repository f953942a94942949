"""The syft-crypto ``X3DH-SyftBox`` compatibility scheme against the real ``syft-crypto``."""

from __future__ import annotations

import base64
import json
from pathlib import Path

import pytest

from syft_flwr.crypto import (
    DecryptionError,
    IdentityKeys,
    MalformedEnvelopeError,
    SenderMismatchError,
    WrongRecipientError,
    build_document,
    parse_document,
)
from syft_flwr.crypto.compat import open_x3dh, seal_x3dh

syft_core = pytest.importorskip("syft_core")
syft_crypto = pytest.importorskip("syft_crypto")

OURS = "ours@example.org"
THEIRS = "theirs@example.org"


@pytest.fixture
def peers(tmp_path: Path):
    """A syft-crypto user bootstrapped by the real package, and our identity, in one folder."""
    data_dir = tmp_path / "SyftBox"
    (data_dir / "datasites").mkdir(parents=True)
    config = syft_core.SyftClientConfig(
        data_dir=data_dir,
        email=THEIRS,
        server_url="https://syftbox.net",
        path=tmp_path / "config.json",
    )
    client = syft_core.Client(config)
    syft_crypto.bootstrap_user(client)
    ours = IdentityKeys.generate(OURS)
    did = data_dir / "datasites" / OURS / "public" / "did.json"
    did.parent.mkdir(parents=True)
    did.write_text(json.dumps(build_document(ours)))
    theirs_doc = (data_dir / "datasites" / THEIRS / "public" / "did.json").read_bytes()
    return client, ours, parse_document(theirs_doc, THEIRS)


def test_we_read_a_syft_crypto_key_document(peers) -> None:
    _, _, theirs = peers
    assert len(theirs.prekey) == 32 and theirs.keys == ()


def test_syft_crypto_opens_what_we_seal(peers) -> None:
    client, ours, theirs = peers
    # syft-flwr 0.5.x encrypts the base64 of the Flower protobuf bytes, as text.
    plaintext = base64.b64encode(b"\x0a\x03pb\x00" * 50)
    sealed = seal_x3dh(plaintext, ours, theirs)
    payload = syft_crypto.EncryptedPayload.model_validate_json(sealed)
    assert syft_crypto.decrypt_message(payload, client) == plaintext.decode()


@pytest.mark.parametrize("form", [bytes, memoryview], ids=["bytes", "memoryview"])
def test_we_open_what_syft_crypto_seals(peers, form) -> None:
    """In either form a transport hands a body over (a large one may be a buffer's view)."""
    client, ours, theirs = peers
    payload = syft_crypto.encrypt_message("aGVsbG8=", OURS, client)
    opened = open_x3dh(form(payload.model_dump_json().encode()), ours, theirs)
    assert opened.body == b"aGVsbG8=" and opened.sender == THEIRS


def test_compat_payload_attacks(peers) -> None:
    client, ours, theirs = peers
    data = json.loads(syft_crypto.encrypt_message("secret", OURS, client).model_dump_json())
    tampered = dict(data, ciphertext=base64.b64encode(b"X" * 6).decode())
    with pytest.raises(DecryptionError):
        open_x3dh(json.dumps(tampered).encode(), ours, theirs)
    with pytest.raises(SenderMismatchError):
        open_x3dh(json.dumps(dict(data, sender="eve@example.org")).encode(), ours, theirs)
    with pytest.raises(WrongRecipientError):
        open_x3dh(json.dumps(dict(data, receiver="eve@example.org")).encode(), ours, theirs)
    with pytest.raises(MalformedEnvelopeError):
        open_x3dh(b'{"ek": 1}', ours, theirs)


def test_channel_refuses_downgrade_and_compat_replays(peers) -> None:
    import time

    from flwr.app import ConfigRecord, Metadata, RecordDict

    from syft_flwr.crypto import ReplayError, ReplayStore, SecureChannel
    from syft_flwr.crypto.errors import DowngradeError
    from syft_flwr.message_factory import message_with_metadata
    from syft_flwr.wire import decode_message, encode_message

    client, ours, _ = peers
    native_peer = IdentityKeys.generate("native@example.org")
    documents = {
        THEIRS: (client.datasites / THEIRS / "public" / "did.json").read_bytes(),
        "native@example.org": json.dumps(build_document(native_peer)).encode(),
    }
    channel = SecureChannel(ours, ReplayStore(":memory:"), documents.get)
    assert not channel.speaks_native(THEIRS) and channel.speaks_native("native@example.org")
    metadata = Metadata(
        run_id=1,
        message_id="m1",
        src_node_id=1,
        dst_node_id=5,
        reply_to_message_id="",
        group_id="g",
        created_at=time.time(),
        ttl=60.0,
        message_type="train",
    )
    content = RecordDict({"c": ConfigRecord({"x": 1})})
    envelope = encode_message(message_with_metadata(metadata, content=content))
    with pytest.raises(DowngradeError):
        channel.seal_compat("native@example.org", envelope)
    sealed = channel.seal_compat(THEIRS, envelope)
    payload = syft_crypto.EncryptedPayload.model_validate_json(sealed)
    text = syft_crypto.decrypt_message(payload, client)
    answer = syft_crypto.encrypt_message(text, OURS, client).model_dump_json().encode()
    expires = time.time() + 60
    opened = channel.open_compat(answer, sender=THEIRS, expires_at=expires)
    assert decode_message(opened).content["c"]["x"] == 1
    with pytest.raises(ReplayError):
        channel.open_compat(answer, sender=THEIRS, expires_at=expires)
    with pytest.raises(DowngradeError):
        channel.open_compat(answer, sender="native@example.org", expires_at=expires)
