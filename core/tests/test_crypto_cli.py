"""``syft-flwr keys init|show|rotate``."""

from __future__ import annotations

import stat
from pathlib import Path

import pytest

from syft_flwr.cli import main
from syft_flwr.crypto import KeyStore


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
