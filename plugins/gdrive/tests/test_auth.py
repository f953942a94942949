"""Credentials: service account, token file (with refresh), login, Colab, and what's missing."""

from __future__ import annotations

import json
import sys
import threading
import time
import types
import urllib.request
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from syft_flwr.errors import ConfigError
from syft_flwr.transport import TransportSettings
from syft_flwr_gdrive import CredentialsError, GDriveOptions, GDriveTransport
from syft_flwr_gdrive import auth as auth_module
from syft_flwr_gdrive.auth import load_credentials
from syft_flwr_gdrive.cli import main as cli_main
from syft_flwr_gdrive.testing import DRIVE_SCOPE, FakeDrive

from .conftest import FAST


@pytest.fixture(autouse=True)
def no_ambient_credentials(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """Tests never see the developer's own token file or environment."""
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "config"))
    for name in (
        "SYFT_FLWR_GDRIVE_TOKEN_FILE",
        "GDRIVE_TOKEN_PATH",
        "SYFT_FLWR_GDRIVE_SERVICE_ACCOUNT_FILE",
        "SYFT_FLWR_GDRIVE_API_ROOT",
    ):
        monkeypatch.delenv(name, raising=False)


def options(identity: str = "alice@x.org", **table: Any) -> GDriveOptions:
    return GDriveOptions.from_settings(TransportSettings(identity, table))


def transport(drive: FakeDrive, identity: str, **table: Any) -> GDriveTransport:
    return GDriveTransport(TransportSettings(identity, {"api_root": drive.url, **FAST, **table}))


def service_account_file(path: Path, drive: FakeDrive, email: str) -> Path:
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    pem = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    ).decode()
    info = {
        "type": "service_account",
        "project_id": "proj",
        "private_key_id": "k1",
        "private_key": pem,
        "client_email": email,
        "client_id": "1",
        "token_uri": drive.url + "token",
    }
    path.write_text(json.dumps(info))
    return path


def test_service_account_key_signs_in_through_the_token_endpoint(
    drive: FakeDrive, tmp_path: Path
) -> None:
    robot = "robot@proj.iam.gserviceaccount.com"
    drive.add_account(robot)
    key = service_account_file(tmp_path / "sa.json", drive, robot)
    with transport(drive, robot, service_account_file=str(key)) as sa:
        assert sa.api.account_email() == robot
    assert drive.count(kind="oauth.token") == 1


def test_service_account_with_domain_wide_delegation_acts_as_the_subject(
    drive: FakeDrive, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    drive.add_account("carol@corp.example")
    key = service_account_file(tmp_path / "sa.json", drive, "robot@proj.iam.gserviceaccount.com")
    monkeypatch.setenv("SYFT_FLWR_GDRIVE_SERVICE_ACCOUNT_FILE", str(key))
    with transport(drive, "carol@corp.example", subject="carol@corp.example") as carol:
        assert carol.api.account_email() == "carol@corp.example"


def test_expired_token_file_is_refreshed(drive: FakeDrive, tmp_path: Path) -> None:
    account = drive.add_account("alice@x.org")
    token_file = tmp_path / "token.json"
    token_file.write_text(
        json.dumps(
            {
                "token": "stale",
                "refresh_token": account.refresh_token,
                "token_uri": drive.url + "token",
                "client_id": "cid",
                "client_secret": "secret",
                "scopes": [DRIVE_SCOPE],
                "expiry": "2000-01-01T00:00:00Z",
            }
        )
    )
    refresh_at = drive.url + "token"
    with transport(drive, "alice@x.org", token_file=str(token_file), token_uri=refresh_at) as alice:
        assert alice.api.account_email() == "alice@x.org"
    assert drive.count(kind="oauth.token") == 1


def test_login_saves_a_token_file_the_transport_uses(
    drive: FakeDrive, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: Any
) -> None:
    drive.add_account("alice@x.org")
    monkeypatch.setenv("OAUTHLIB_INSECURE_TRANSPORT", "1")  # the fake's token endpoint is http
    secrets = tmp_path / "client.json"
    secrets.write_text(
        json.dumps(
            {
                "installed": {
                    "client_id": "cid",
                    "client_secret": "secret",
                    "auth_uri": drive.url + "o/oauth2/auth",
                    "token_uri": drive.url + "token",
                    "redirect_uris": ["http://localhost"],
                }
            }
        )
    )
    visited: list[str] = []

    class Browser:
        """Follows the sign-in URL like a user who clicks "Allow" (in a thread: the flow is
        blocked waiting for Google's redirect to its local port)."""

        def open(self, url: str, new: int = 0, autoraise: bool = True) -> bool:
            visited.append(url)
            threading.Thread(target=lambda: urllib.request.urlopen(url, timeout=10).read()).start()
            return True

    monkeypatch.setattr("webbrowser.get", lambda using=None: Browser())
    token_file = tmp_path / "config" / "syft-flwr" / "gdrive-token.json"
    assert cli_main(["login", "--client-secrets", str(secrets), "--email", "alice@x.org"]) == 0
    assert "login_hint=alice%40x.org" in visited[0]
    assert token_file.stat().st_mode & 0o777 == 0o600
    assert "token saved" in capsys.readouterr().out
    # No option names the file: the transport finds it where login put it.
    with transport(drive, "alice@x.org") as alice:
        assert alice.api.account_email() == "alice@x.org"


def test_login_without_client_secrets_explains_how_to_get_them(capsys: Any) -> None:
    assert cli_main(["login"]) == 2
    assert "Desktop app" in capsys.readouterr().err


def test_colab_sign_in_is_imported_lazily(monkeypatch: pytest.MonkeyPatch) -> None:
    assert "google.colab" not in sys.modules
    signed_in: list[bool] = []
    colab = types.ModuleType("google.colab")
    colab_auth = types.ModuleType("google.colab.auth")
    colab_auth.authenticate_user = lambda: signed_in.append(True)  # type: ignore[attr-defined]
    colab.auth = colab_auth  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "google.colab", colab)
    monkeypatch.setitem(sys.modules, "google.colab.auth", colab_auth)
    sentinel = object()
    monkeypatch.setattr("google.auth.default", lambda scopes=None: (sentinel, "proj"))
    monkeypatch.setattr(auth_module, "running_in_colab", lambda: True)
    assert load_credentials(options()) is sentinel
    assert signed_in == [True]


def test_colab_mode_outside_colab_says_so() -> None:
    with pytest.raises(CredentialsError, match="only inside Google Colab"):
        load_credentials(options(auth="colab"))


def test_missing_credentials_list_what_to_provide() -> None:
    with pytest.raises(CredentialsError) as missing:
        load_credentials(options())
    message = str(missing.value)
    for hint in ("syft-flwr gdrive login", "token_file", "service_account_file", "Colab"):
        assert hint in message


def test_broken_credential_files_are_named(tmp_path: Path) -> None:
    with pytest.raises(CredentialsError, match="does not exist"):
        load_credentials(options(token_file=str(tmp_path / "none.json")))
    bad = tmp_path / "bad.json"
    bad.write_text("{}")
    with pytest.raises(CredentialsError, match="not a service-account key"):
        load_credentials(options(service_account_file=str(bad)))
    with pytest.raises(CredentialsError, match="not an OAuth token file"):
        load_credentials(options(token_file=str(bad)))


def test_credentials_of_another_account_are_refused(drive: FakeDrive) -> None:
    bob = drive.add_account("bob@x.org")
    with (
        transport(drive, "alice@x.org", access_token=bob.token) as impostor,
        pytest.raises(CredentialsError, match=r"belong to bob@x\.org"),
    ):
        impostor.send("carol@x.org", "flwr/demo", "messages", b"x", time.time() + 5)


def test_option_validation() -> None:
    with pytest.raises(ConfigError, match="only works with api_root"):
        options(auth="local", api_root="https://www.googleapis.com/")
    with pytest.raises(ConfigError, match="unknown gdrive option"):
        options(pol_interval=1)
    with pytest.raises(ConfigError, match="multiple of 262144"):
        options(chunk_size=1000)
    with pytest.raises(ConfigError, match="must be positive"):
        options(poll_interval=0)
    parsed = options(poll_interval=2, email="alice@x.org", wire="syft-flwr-p2p")
    assert parsed.max_poll_interval == 10.0 and parsed.wire == "syft-flwr-p2p"
