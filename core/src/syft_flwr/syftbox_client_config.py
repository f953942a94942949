"""The SyftBox client's config file: which SyftBox user this machine is, and where its folder is.

``syftbox login`` writes it; syft-core, syft-crypto and syft-flwr 0.5.x read it from
``SYFTBOX_CLIENT_CONFIG_PATH``, else ``~/.syftbox/config.json``. It is the one place that says
who a datasite is, so a process started with no ``SYFTBOX_EMAIL`` still knows its identity
(and never mistakes itself for the aggregator). One reader for every part that needs it: the
identity, the SyftBox transport's data dir, and syft-crypto's key files.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from syft_flwr.errors import ConfigError

__all__ = [
    "CONFIG_PATH_ENV",
    "DEFAULT_CONFIG_PATH",
    "SyftBoxClientConfig",
    "client_config_path",
    "read_client_config",
]

CONFIG_PATH_ENV = "SYFTBOX_CLIENT_CONFIG_PATH"
DEFAULT_CONFIG_PATH = Path("~/.syftbox/config.json")


@dataclass(frozen=True)
class SyftBoxClientConfig:
    """What the file says (a key it lacks or holds malformed is ``None``).

    :param path: the file it was read from.
    :param email: the SyftBox user.
    :param data_dir: the user's SyftBox folder (``data_dir``, older clients ``sync_folder``),
        resolved as syft-core resolves it.
    :param server_url: the SyftBox server the client syncs with.
    """

    path: Path
    email: str | None
    data_dir: Path | None
    server_url: str | None


def client_config_path(environ: Mapping[str, str] | None = None) -> Path:
    """Where the config is: ``SYFTBOX_CLIENT_CONFIG_PATH``, else ``~/.syftbox/config.json``."""
    env = os.environ if environ is None else environ
    return Path(env.get(CONFIG_PATH_ENV, "").strip() or DEFAULT_CONFIG_PATH).expanduser()


def read_client_config(
    environ: Mapping[str, str] | None = None, *, required: bool = False
) -> SyftBoxClientConfig | None:
    """The SyftBox client config, or ``None`` when there is none and it is not ``required``.

    A file that ``SYFTBOX_CLIENT_CONFIG_PATH`` names explicitly is required to exist.

    :raises ConfigError: the file is missing (when required), unreadable, not UTF-8, or not a
        JSON object; the message names the file.
    """
    env = os.environ if environ is None else environ
    path = client_config_path(env)
    explicit = bool(env.get(CONFIG_PATH_ENV, "").strip())
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        if required or explicit:
            named = f"{CONFIG_PATH_ENV}={path}" if explicit else str(path)
            raise ConfigError(
                f"no SyftBox client config: {named} does not exist (log in with the SyftBox "
                "client, or set SYFTBOX_EMAIL)"
            ) from None
        return None
    except UnicodeDecodeError as exc:
        raise ConfigError(f"the SyftBox client config {path} is not UTF-8 text: {exc}") from None
    except OSError as exc:
        raise ConfigError(f"cannot read the SyftBox client config {path}: {exc}") from None
    try:
        document = json.loads(text)
    except ValueError as exc:
        raise ConfigError(f"the SyftBox client config {path} is not JSON: {exc}") from None
    if not isinstance(document, dict):
        raise ConfigError(f"the SyftBox client config {path} is not a JSON object")
    folder = document.get("data_dir") or document.get("sync_folder")
    return SyftBoxClientConfig(
        path=path,
        email=_text(document.get("email")),
        data_dir=Path(str(folder)).expanduser().resolve() if _text(folder) else None,
        server_url=_text(document.get("server_url")),
    )


def _text(value: object) -> str | None:
    return value.strip() if isinstance(value, str) and value.strip() else None
