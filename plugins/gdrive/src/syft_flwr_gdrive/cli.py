"""``syft-flwr-gdrive`` (and ``syft-flwr gdrive``): sign in to Google Drive once, from a terminal.

``login`` runs Google's OAuth installed-app flow (a browser page, answered on a local port) with
the OAuth client the user created in the Google Cloud console ("Desktop app"), and saves the
resulting token where the transport finds it by default. The core's ``syft-flwr`` command can
offer the same sub-commands by passing its remaining arguments to :func:`main`.

This is an application entry point: unlike the library, it prints.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence
from pathlib import Path

from syft_flwr.errors import SyftFlwrError
from syft_flwr_gdrive.auth import DRIVE_SCOPES
from syft_flwr_gdrive.errors import CredentialsError
from syft_flwr_gdrive.options import default_token_file

__all__ = ["ENV_CLIENT_SECRETS", "login", "main"]

ENV_CLIENT_SECRETS = "SYFT_FLWR_GDRIVE_CLIENT_SECRETS"


def login(
    client_secrets: Path,
    token_file: Path,
    *,
    email: str | None = None,
    open_browser: bool = True,
    port: int = 0,
) -> Path:
    """Sign in through the browser and save the OAuth token (owner-only permissions).

    :param client_secrets: the OAuth client JSON ("Desktop app") from the Google Cloud console.
    :param token_file: where to save the token (the transport's ``token_file``).
    :param email: the account to suggest on the sign-in page.
    :param open_browser: open the sign-in page; otherwise its URL is printed to copy.
    :param port: local port for Google's redirect (0: any free port).
    :return: ``token_file``.
    :raises CredentialsError: the client secrets file is missing or invalid.
    """
    from google_auth_oauthlib.flow import InstalledAppFlow  # type: ignore[import-untyped]

    try:
        flow = InstalledAppFlow.from_client_secrets_file(os.fspath(client_secrets), DRIVE_SCOPES)
    except FileNotFoundError:
        raise CredentialsError(f"OAuth client file {client_secrets} does not exist") from None
    except ValueError as exc:
        raise CredentialsError(
            f"{client_secrets} is not an OAuth client file of type 'Desktop app': {exc}"
        ) from exc
    extra = {"login_hint": email} if email else {}
    credentials = flow.run_local_server(
        host="localhost", port=port, open_browser=open_browser, **extra
    )
    token_file.parent.mkdir(parents=True, exist_ok=True)
    descriptor = os.open(token_file, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(descriptor, "w", encoding="utf-8") as handle:
        handle.write(credentials.to_json())
    return token_file


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="syft-flwr-gdrive", description="Google Drive set-up for the syft-flwr transport"
    )
    commands = parser.add_subparsers(required=True, metavar="COMMAND")
    sign_in = commands.add_parser("login", help="sign in and save an OAuth token file")
    sign_in.add_argument(
        "--client-secrets",
        type=Path,
        default=os.environ.get(ENV_CLIENT_SECRETS),
        help=f"OAuth client JSON of type 'Desktop app' (default: ${ENV_CLIENT_SECRETS})",
    )
    sign_in.add_argument(
        "--token-file",
        type=Path,
        default=default_token_file(),
        help="where to save the token (default: %(default)s, where the transport looks)",
    )
    sign_in.add_argument("--email", help="the Google account to sign in as")
    sign_in.add_argument(
        "--no-browser", action="store_true", help="print the sign-in URL instead of opening it"
    )
    sign_in.add_argument("--port", type=int, default=0, help="local port for the redirect")
    sign_in.set_defaults(handler=_cmd_login)
    return parser


def _cmd_login(args: argparse.Namespace) -> int:
    if args.client_secrets is None:
        raise CredentialsError(
            "login needs an OAuth client: in the Google Cloud console create an OAuth client ID "
            "of type 'Desktop app' (with the Drive API enabled), download its JSON and pass it "
            f"with --client-secrets or ${ENV_CLIENT_SECRETS}"
        )
    saved = login(
        args.client_secrets,
        args.token_file,
        email=args.email,
        open_browser=not args.no_browser,
        port=args.port,
    )
    print(f"Signed in; token saved to {saved}")
    if saved != default_token_file():
        print(f'Use it with token_file = "{saved}" in [tool.syft_flwr.gdrive]')
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    """Run a ``syft-flwr-gdrive`` command line (``argv`` without the program name)."""
    args = _parser().parse_args(argv)
    try:
        return int(args.handler(args))
    except SyftFlwrError as exc:
        print(f"syft-flwr-gdrive: error: {exc}", file=sys.stderr)
        return 2
