"""Finding, adopting and not replacing a syft-crypto identity, against the real syft-crypto."""

from __future__ import annotations

import json
import re
import tempfile
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from syft_flwr.crypto import IdentityKeys, KeyStoreError, build_document
from syft_flwr.crypto.errors import SyftCryptoIdentityError
from syft_flwr.crypto.syft_crypto_keys import (
    ADOPT_COMMAND,
    adopt,
    check_replaceable,
    key_file_path,
    refuse_existing,
)

syft_core = pytest.importorskip("syft_core")
syft_crypto = pytest.importorskip("syft_crypto")

EMAIL = "hana@example.org"

hosts = st.from_regex(r"[A-Za-z][A-Za-z0-9]{0,10}(\.[A-Za-z]{2,5}){1,2}", fullmatch=True)


@settings(max_examples=40, deadline=None)
@given(
    scheme=st.sampled_from(["http", "https", "HTTPS"]),
    host=hosts,
    port=st.one_of(st.none(), st.sampled_from([80, 443, 8080]), st.integers(1024, 65535)),
    path=st.sampled_from(["", "/", "/api", "/api/"]),
)
def test_key_file_path_is_syft_cryptos(scheme: str, host: str, port: int | None, path: str) -> None:
    url = f"{scheme}://{host}{'' if port is None else f':{port}'}{path}"
    with tempfile.TemporaryDirectory() as root:
        data_dir = Path(root) / "SyftBox"
        config = syft_core.SyftClientConfig(
            email=EMAIL, data_dir=data_dir, server_url=url, path=Path(root) / "c.json"
        )
        expected = syft_crypto.private_key_path(syft_core.Client(config))
        assert key_file_path(data_dir, url, EMAIL) == expected


@pytest.fixture
def bootstrapped(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, quiet_syft_crypto: None):
    """A syft-crypto identity for EMAIL, its SyftBox config named by the environment."""
    data_dir = tmp_path / "SyftBox"
    (data_dir / "datasites").mkdir(parents=True)
    config = syft_core.SyftClientConfig(
        email=EMAIL, data_dir=data_dir, server_url="https://syftbox.net", path=tmp_path / "c.json"
    )
    config.save()
    monkeypatch.setenv("SYFTBOX_CLIENT_CONFIG_PATH", str(config.path))
    client = syft_core.Client(config)
    syft_crypto.bootstrap_user(client)
    return client


def test_refuse_existing_names_the_adopt_command(bootstrapped, tmp_path: Path) -> None:
    with pytest.raises(SyftCryptoIdentityError, match=re.escape(ADOPT_COMMAND)):
        refuse_existing(EMAIL)
    refuse_existing("someone-else@example.org")  # the config is another identity's
    refuse_existing(EMAIL, environ={"SYFTBOX_CLIENT_CONFIG_PATH": str(tmp_path / "none.json")})


def test_our_own_did_json_is_no_syft_crypto_identity(bootstrapped) -> None:
    Path(syft_crypto.private_key_path(bootstrapped)).unlink()
    did = bootstrapped.datasites / EMAIL / "public" / "did.json"
    with pytest.raises(SyftCryptoIdentityError, match=r"did\.json"):
        refuse_existing(EMAIL)
    did.write_text(json.dumps(build_document(IdentityKeys.generate(EMAIL))))
    refuse_existing(EMAIL)


def test_adopt_refuses_a_malformed_key_file(bootstrapped, tmp_path: Path) -> None:
    path = tmp_path / "pvt.jwks.json"
    good = json.loads(Path(syft_crypto.private_key_path(bootstrapped)).read_text())
    for broken in (
        {"identity_key": good["identity_key"]},
        {**good, "signed_prekey": good["identity_key"]},
        {**good, "identity_key": {**good["identity_key"], "x": good["signed_prekey"]["x"]}},
    ):
        path.write_text(json.dumps(broken))
        path.chmod(0o600)
        with pytest.raises(KeyStoreError, match="not a syft-crypto key file") as raised:
            adopt(EMAIL, path, environ={})
        secrets = (good["identity_key"]["d"], good["signed_prekey"]["d"])
        assert not any(secret in str(raised.value) for secret in secrets)


def test_check_replaceable() -> None:
    theirs = IdentityKeys.generate(EMAIL)
    native = json.dumps(build_document(IdentityKeys.generate(EMAIL))).encode()
    earlier_native = json.dumps(build_document(IdentityKeys.generate(EMAIL))).encode()
    syft_crypto_only = {k: v for k, v in build_document(theirs).items() if k != "syftFlwr"}
    with pytest.raises(SyftCryptoIdentityError):
        check_replaceable(json.dumps(syft_crypto_only).encode(), native, EMAIL, "did.json")
    check_replaceable(None, native, EMAIL, "did.json")
    check_replaceable(b"not json", native, EMAIL, "did.json")
    check_replaceable(earlier_native, native, EMAIL, "did.json")  # ours, of another identity
    adopted = json.dumps(build_document(theirs)).encode()
    check_replaceable(json.dumps(syft_crypto_only).encode(), adopted, EMAIL, "did.json")
