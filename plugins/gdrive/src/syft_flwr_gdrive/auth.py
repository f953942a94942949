"""Google credentials for the Drive transport, from whatever the user has.

In order (``auth = "auto"``, the default): an explicit ``access_token``; a service-account key
(``service_account_file`` or ``SYFT_FLWR_GDRIVE_SERVICE_ACCOUNT_FILE``, optionally impersonating
``subject`` through domain-wide delegation); an OAuth token file (``token_file``,
``SYFT_FLWR_GDRIVE_TOKEN_FILE``, syft-flwr's ``GDRIVE_TOKEN_PATH``, or the file
``syft-flwr gdrive login`` writes; refreshed at ``token_uri`` if set, else at Google's);
Colab's own sign-in when running in Colab. ``google.colab`` is
imported only on that last path, so nothing outside Colab depends on it. ``auth = "local"`` is the
local demo's: the bearer token names the account, and only a fake Drive on 127.0.0.1 accepts it.
"""

from __future__ import annotations

import importlib
import importlib.util
import os
from pathlib import Path
from typing import Any

import google.auth
from google.auth.credentials import Credentials
from google.oauth2 import credentials as oauth2_credentials
from google.oauth2 import service_account

from syft_flwr_gdrive.errors import CredentialsError
from syft_flwr_gdrive.options import (
    ENV_SERVICE_ACCOUNT,
    ENV_TOKEN_FILE,
    GDriveOptions,
    default_token_file,
)

__all__ = ["DRIVE_SCOPES", "load_credentials", "running_in_colab"]

DRIVE_SCOPES = ["https://www.googleapis.com/auth/drive"]
"""Full Drive access: the transport reads folders other accounts shared with it."""


def running_in_colab() -> bool:
    """Whether this is a Colab runtime (checked without importing ``google.colab``)."""
    try:
        return importlib.util.find_spec("google.colab") is not None
    except (ImportError, ValueError):
        return False


def load_credentials(options: GDriveOptions) -> Credentials:
    """Credentials for ``options.identity``, chosen as the module docstring describes.

    :raises CredentialsError: nothing usable is configured, or a configured file is missing or
        malformed; the message lists what can be provided.
    """
    mode = options.auth
    if mode == "local":
        return oauth2_credentials.Credentials(token=f"local:{options.identity}")  # type: ignore[no-untyped-call]
    if mode == "access_token" or (mode == "auto" and options.access_token):
        return oauth2_credentials.Credentials(token=options.access_token)  # type: ignore[no-untyped-call]
    if mode == "service_account" or (mode == "auto" and options.service_account_file):
        return _service_account(options)
    if mode == "colab":
        return _colab()
    token_file = options.token_file or _existing(default_token_file())
    if mode == "token_file" or (mode == "auto" and token_file):
        return _token_file(token_file or default_token_file(), options.token_uri)
    if running_in_colab():
        return _colab()
    raise CredentialsError(
        f"no Google credentials for {options.identity}: run 'syft-flwr gdrive login' (writes "
        f"{default_token_file()}), or set token_file / service_account_file in "
        f"[tool.syft_flwr.gdrive] (or {ENV_TOKEN_FILE} / {ENV_SERVICE_ACCOUNT}), or run in "
        "Google Colab"
    )


def _existing(path: Path) -> Path | None:
    return path if path.is_file() else None


def _service_account(options: GDriveOptions) -> Credentials:
    path = options.service_account_file
    if path is None:
        raise CredentialsError(
            f'auth = "service_account" needs service_account_file (or {ENV_SERVICE_ACCOUNT})'
        )
    try:
        creds: Credentials = service_account.Credentials.from_service_account_file(  # type: ignore[no-untyped-call]
            os.fspath(path), scopes=DRIVE_SCOPES, subject=options.subject
        )
    except FileNotFoundError:
        raise CredentialsError(f"service-account key file {path} does not exist") from None
    except (ValueError, KeyError, OSError) as exc:
        raise CredentialsError(
            f"{path} is not a service-account key (download a JSON key for the service "
            f"account in the Google Cloud console): {exc}"
        ) from exc
    return creds


def _token_file(path: Path, token_uri: str | None) -> Credentials:
    try:
        creds: Any = oauth2_credentials.Credentials.from_authorized_user_file(  # type: ignore[no-untyped-call]
            os.fspath(path), DRIVE_SCOPES
        )
    except FileNotFoundError:
        raise CredentialsError(
            f"OAuth token file {path} does not exist: create it with 'syft-flwr gdrive login'"
        ) from None
    except (ValueError, KeyError, OSError) as exc:
        raise CredentialsError(
            f"{path} is not an OAuth token file ({exc}); create a new one with "
            "'syft-flwr gdrive login'"
        ) from exc
    if token_uri is not None:  # google-auth always puts Google's endpoint in
        creds = creds.with_token_uri(token_uri)
    result: Credentials = creds
    return result


def _colab() -> Credentials:
    """Colab's sign-in; ``google.colab`` exists only there, so it is imported here."""
    try:
        colab_auth: Any = importlib.import_module("google.colab.auth")
    except ImportError as exc:
        raise CredentialsError(
            'auth = "colab" works only inside Google Colab; elsewhere use a token file '
            "('syft-flwr gdrive login') or a service account"
        ) from exc
    colab_auth.authenticate_user()
    found: Any = google.auth.default(scopes=DRIVE_SCOPES)
    creds: Credentials = found[0]
    return creds
