"""``syft-flwr keys init|show|rotate``, and adopting a syft-crypto identity."""

from __future__ import annotations

import json
import stat
from collections.abc import Callable
from pathlib import Path

import pytest

from syft_flwr.cli import main
from syft_flwr.crypto import KeyStore, parse_document
from syft_flwr.crypto.compat import open_x3dh, seal_x3dh


@pytest.fixture(autouse=True)
def no_syftbox_config(monkeypatch: pytest.MonkeyPatch, tmp_path_factory: pytest.TempPathFactory):
    """Never read the developer's own SyftBox config (``~/.syftbox/config.json``)."""
    monkeypatch.delenv("SYFTBOX_CLIENT_CONFIG_PATH", raising=False)
    monkeypatch.setenv("HOME", str(tmp_path_factory.mktemp("home")))


def test_keys_init_show_rotate(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    base = ["keys"]
    opts = ["--email", "a@x.org", "--key-dir", str(tmp_path)]
    assert main([*base, "init", *opts]) == 0
    init_out = capsys.readouterr().out
    assert "did:web:syftbox.net:a%40x.org" in init_out
    path = KeyStore(tmp_path).path("a@x.org")
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert main([*base, "init", *opts]) == 2  # exists already: rotate instead
    assert "rotate instead" in capsys.readouterr().err
    assert main([*base, "rotate", *opts, "--grace", "60"]) == 0
    rotated = capsys.readouterr().out
    assert rotated.count("agreement:") == 2 and "accepted until" in rotated
    assert main([*base, "show", *opts]) == 0
    assert capsys.readouterr().out == rotated


def test_keys_need_an_identity(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.delenv("SYFTBOX_EMAIL", raising=False)
    assert main(["keys", "show", "--key-dir", str(tmp_path)]) == 2
    assert "SYFTBOX_EMAIL" in capsys.readouterr().err


def test_keys_show_without_keys(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["keys", "show", "--email", "b@x.org", "--key-dir", str(tmp_path)]) == 2
    assert "keys init" in capsys.readouterr().err


def test_keys_init_publishes_through_the_project_transport(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    pytest.importorskip("syft_flwr_memory")
    from syft_flwr_memory import MemoryNetwork

    (tmp_path / "pyproject.toml").write_text(
        '[tool.syft_flwr]\ntransport = "memory"\n[tool.syft_flwr.memory]\nnetwork = "keys-cli"\n'
    )
    args = ["--email", "c@x.org", "--key-dir", str(tmp_path / "k"), "--project-dir", str(tmp_path)]
    try:
        assert main(["keys", "init", *args]) == 0
        assert "published the key document through the memory transport" in capsys.readouterr().out
        assert MemoryNetwork.named("keys-cli").key_document("c@x.org") is not None
    finally:
        MemoryNetwork.reset("keys-cli")


# -- an identity syft-crypto made (syft-flwr 0.5.x) ----------------------------------------


class SyftCryptoDatasite:
    """A datasite bootstrapped by the real syft-crypto, with its SyftBox config in place."""

    def __init__(self, root: Path, email: str, monkeypatch: pytest.MonkeyPatch) -> None:
        self.syft_core = pytest.importorskip("syft_core")
        self.syft_crypto = pytest.importorskip("syft_crypto")
        self.email = email
        self.data_dir = root / "SyftBox"
        (self.data_dir / "datasites").mkdir(parents=True, exist_ok=True)
        config = self.syft_core.SyftClientConfig(
            email=email,
            data_dir=self.data_dir,
            server_url="https://syftbox.net",
            path=root / f"{email}.config.json",
        )
        config.save()
        monkeypatch.setenv("SYFTBOX_CLIENT_CONFIG_PATH", str(config.path))
        # no SyftBox server in tests: syft-crypto then uses the local did.json only
        monkeypatch.setattr(
            self.syft_crypto.x3dh_bootstrap, "_fetch_did_from_server", lambda url, email: None
        )
        self.client = self.syft_core.Client(config)
        self.syft_crypto.bootstrap_user(self.client)

    @property
    def did(self) -> Path:
        return self.data_dir / "datasites" / self.email / "public" / "did.json"

    @property
    def key_file(self) -> Path:
        return Path(self.syft_crypto.private_key_path(self.client))

    def peer(self, email: str):  # type: ignore[no-untyped-def]
        """Another syft-crypto user on the same folder."""
        config = self.syft_core.SyftClientConfig(
            email=email,
            data_dir=self.data_dir,
            server_url="https://syftbox.net",
            path=self.data_dir.parent / f"{email}.json",
        )
        client = self.syft_core.Client(config)
        self.syft_crypto.bootstrap_user(client)
        return client


@pytest.fixture
def syft_crypto_datasite(
    monkeypatch: pytest.MonkeyPatch, quiet_syft_crypto: None
) -> Callable[[Path, str], SyftCryptoDatasite]:
    """``make(root, email)``: a :class:`SyftCryptoDatasite`."""
    return lambda root, email: SyftCryptoDatasite(root, email, monkeypatch)


def project_on(data_dir: Path, root: Path) -> Path:
    pytest.importorskip("syft_flwr_syftbox")
    project = root / "project"
    project.mkdir()
    (project / "pyproject.toml").write_text(
        f'[tool.syft_flwr]\ntransport = "syftbox"\n'
        f"[tool.syft_flwr.syftbox]\ndata_dir = {json.dumps(str(data_dir))}\n"
    )
    return project


def test_keys_init_refuses_to_replace_a_syft_crypto_identity(
    tmp_path: Path, syft_crypto_datasite, capsys: pytest.CaptureFixture[str]
) -> None:
    datasite = syft_crypto_datasite(tmp_path, "dana@example.org")
    published = datasite.did.read_bytes()
    keys = tmp_path / "keys"
    args = ["--email", datasite.email, "--key-dir", str(keys)]
    assert main(["keys", "init", *args]) == 2
    error = capsys.readouterr().err
    assert "syft-flwr keys init --import-syft-crypto" in error and str(datasite.key_file) in error
    # the did.json alone is evidence too (keys kept elsewhere), also through the project
    datasite.key_file.unlink()
    project = project_on(datasite.data_dir, tmp_path)
    assert main(["keys", "init", *args, "--project-dir", str(project)]) == 2
    assert str(datasite.did) in capsys.readouterr().err
    assert not KeyStore(keys).exists(datasite.email)
    assert datasite.did.read_bytes() == published


def test_keys_init_imports_a_syft_crypto_identity(
    tmp_path: Path, syft_crypto_datasite, capsys: pytest.CaptureFixture[str]
) -> None:
    datasite = syft_crypto_datasite(tmp_path, "erin@example.org")
    syft_crypto = datasite.syft_crypto
    project = project_on(datasite.data_dir, tmp_path)
    key_dir = tmp_path / "keys"
    args = ["--email", datasite.email, "--key-dir", str(key_dir), "--project-dir", str(project)]
    assert main(["keys", "init", "--import-syft-crypto", *args]) == 0
    out = capsys.readouterr().out
    assert f"adopted the syft-crypto identity in {datasite.key_file}" in out
    assert "published the key document through the syftbox transport" in out

    # our key store holds syft-crypto's keys, and the published did.json carries both schemes
    adopted = KeyStore(key_dir).load(datasite.email)
    identity, prekey = syft_crypto.load_private_keys(datasite.client)
    assert adopted.identity.private_bytes_raw() == identity.private_bytes_raw()
    assert adopted.current.private.private_bytes_raw() == prekey.private_bytes_raw()
    document = parse_document(datasite.did.read_bytes(), datasite.email)
    assert document.keys and document.keys[0].public == adopted.current.public

    # ... and stays valid for syft-crypto: its own app still starts (keys match did.json), and
    # a syft-crypto peer reaches it through the new did.json, which we and syft-crypto open
    assert syft_crypto.ensure_bootstrap(datasite.client) is datasite.client
    peer = datasite.peer("frank@example.org")
    sent = syft_crypto.encrypt_message("hello", datasite.email, peer)
    assert syft_crypto.decrypt_message(sent, datasite.client) == "hello"
    peer_document = parse_document(
        (datasite.data_dir / "datasites" / peer.email / "public" / "did.json").read_bytes(),
        peer.email,
    )
    assert open_x3dh(sent.model_dump_json().encode(), adopted, peer_document).body == b"hello"
    reply = seal_x3dh(b"hi back", adopted, peer_document)
    payload = syft_crypto.EncryptedPayload.model_validate_json(reply)
    assert syft_crypto.decrypt_message(payload, peer) == "hi back"

    # adopting twice needs --force, like any replacement of existing keys
    assert main(["keys", "init", "--import-syft-crypto", *args]) == 2
    assert "--force" in capsys.readouterr().err
    assert main(["keys", "init", "--import-syft-crypto", "--force", *args]) == 0


def test_keys_init_imports_a_named_key_file_and_checks_it(
    tmp_path: Path,
    syft_crypto_datasite,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    datasite = syft_crypto_datasite(tmp_path, "gina@example.org")
    other = syft_crypto_datasite(tmp_path / "other", "gina@example.org")
    monkeypatch.setenv("SYFTBOX_CLIENT_CONFIG_PATH", str(tmp_path / "gina@example.org.config.json"))
    args = ["--email", datasite.email, "--key-dir", str(tmp_path / "keys")]
    # another key file than the one that made the published did.json is refused
    assert main(["keys", "init", "--import-syft-crypto", str(other.key_file), *args]) == 2
    assert "other keys than" in capsys.readouterr().err
    datasite.key_file.chmod(0o644)
    assert main(["keys", "init", "--import-syft-crypto", *args]) == 2
    assert "chmod 600" in capsys.readouterr().err
    datasite.key_file.chmod(0o600)
    assert main(["keys", "init", "--import-syft-crypto", str(datasite.key_file), *args]) == 0
    # without a SyftBox config the key file must be named
    monkeypatch.delenv("SYFTBOX_CLIENT_CONFIG_PATH")
    args[-1] = str(tmp_path / "keys2")
    assert main(["keys", "init", "--import-syft-crypto", *args]) == 2
    assert "--import-syft-crypto <path>/pvt.jwks.json" in capsys.readouterr().err
