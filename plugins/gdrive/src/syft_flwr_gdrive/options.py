"""The ``[tool.syft_flwr.gdrive]`` table and its environment variables, validated once.

Every option is checked when the transport is built, so a typo or a wrong type fails at start-up
with the key's name instead of deep inside a training round. Options override environment
variables; ``poll_interval`` falls back to ``SYFT_FLWR_POLL_INTERVAL`` (the core passes it in
:class:`~syft_flwr.transport.TransportSettings`).
"""

from __future__ import annotations

import math
import os
import urllib.parse
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final

from syft_flwr.errors import ConfigError
from syft_flwr.transport import TransportSettings

__all__ = [
    "AUTH_MODES",
    "ENV_API_ROOT",
    "ENV_SERVICE_ACCOUNT",
    "ENV_TOKEN_FILE",
    "LEGACY_ENV_TOKEN_FILE",
    "WIRE_NATIVE",
    "WIRE_SYFT_FLWR_P2P",
    "GDriveOptions",
    "default_token_file",
]

WIRE_NATIVE: Final = "native"
"""Bodies are the core's wire envelope (the default)."""
WIRE_SYFT_FLWR_P2P: Final = "syft-flwr-p2p"
"""Bodies are raw Flower protobuf bytes, as syft-flwr 0.5.x's Drive mode writes them."""

AUTH_MODES: Final = ("auto", "token_file", "service_account", "colab", "access_token", "local")

ENV_TOKEN_FILE: Final = "SYFT_FLWR_GDRIVE_TOKEN_FILE"
LEGACY_ENV_TOKEN_FILE: Final = "GDRIVE_TOKEN_PATH"
"""The variable syft-flwr 0.5.x reads; honoured so existing setups keep working."""
ENV_SERVICE_ACCOUNT: Final = "SYFT_FLWR_GDRIVE_SERVICE_ACCOUNT_FILE"
ENV_API_ROOT: Final = "SYFT_FLWR_GDRIVE_API_ROOT"

_MIB = 1024 * 1024
_CHUNK_GRANULARITY = 256 * 1024
_LOOPBACK = {"127.0.0.1", "localhost", "::1"}


def default_token_file(environ: Mapping[str, str] | None = None) -> Path:
    """Where ``syft-flwr gdrive login`` saves the OAuth token and the transport looks for it."""
    env = os.environ if environ is None else environ
    base = env.get("XDG_CONFIG_HOME") or str(Path.home() / ".config")
    return Path(base) / "syft-flwr" / "gdrive-token.json"


@dataclass(frozen=True)
class GDriveOptions:
    """Validated transport options (see the README for each one's meaning)."""

    identity: str
    auth: str = "auto"
    token_file: Path | None = None
    service_account_file: Path | None = None
    subject: str | None = None
    access_token: str | None = None
    api_root: str | None = None
    token_uri: str | None = None
    root_folder_name: str = "SyftBox"
    root_folder_id: str | None = None
    wire: str = WIRE_NATIVE
    share_role: str = "reader"
    poll_interval: float = 1.0
    max_poll_interval: float = 10.0
    discovery_interval: float = 30.0
    resumable_threshold: int = 5 * _MIB
    chunk_size: int = 8 * _MIB
    download_chunk_size: int = 8 * _MIB
    max_body_size: int | None = None
    retry_attempts: int = 8
    retry_base_delay: float = 0.5
    retry_max_delay: float = 32.0
    http_timeout: float = 60.0
    key_dir: Path | None = None
    """Where the core keeps this identity's keys (read by the core as ``key_dir``)."""

    @classmethod
    def from_settings(
        cls, settings: TransportSettings, environ: Mapping[str, str] | None = None
    ) -> GDriveOptions:
        """Validate ``settings.options`` (plus environment variables) for ``settings.identity``.

        :raises ConfigError: an unknown key, a value of the wrong type or range, or an
            inconsistent combination (e.g. ``auth = "local"`` against a non-local server).
        """
        env = os.environ if environ is None else environ
        table = _Table(settings.options)
        poll = table.seconds("poll_interval", settings.poll_interval)
        options = cls(
            identity=settings.identity,
            auth=table.choice("auth", AUTH_MODES, "auto"),
            token_file=table.path("token_file")
            or _env_path(env, ENV_TOKEN_FILE)
            or _env_path(env, LEGACY_ENV_TOKEN_FILE),
            service_account_file=table.path("service_account_file")
            or _env_path(env, ENV_SERVICE_ACCOUNT),
            subject=table.text("subject"),
            access_token=table.text("access_token"),
            api_root=_api_root(table.text("api_root") or env.get(ENV_API_ROOT) or None),
            token_uri=table.text("token_uri"),
            root_folder_name=table.text("root_folder_name") or "SyftBox",
            root_folder_id=table.text("root_folder_id"),
            wire=table.choice("wire", (WIRE_NATIVE, WIRE_SYFT_FLWR_P2P), WIRE_NATIVE),
            share_role=table.choice("share_role", ("reader", "writer"), "reader"),
            poll_interval=poll,
            max_poll_interval=max(poll, table.seconds("max_poll_interval", max(poll, 10.0))),
            discovery_interval=max(poll, table.seconds("discovery_interval", 30.0)),
            resumable_threshold=table.size("resumable_threshold", 5 * _MIB),
            chunk_size=table.size("chunk_size", 8 * _MIB),
            download_chunk_size=table.size("download_chunk_size", 8 * _MIB),
            max_body_size=table.optional_size("max_body_size"),
            retry_attempts=int(table.size("retry_attempts", 8)),
            retry_base_delay=table.seconds("retry_base_delay", 0.5),
            retry_max_delay=table.seconds("retry_max_delay", 32.0),
            http_timeout=table.seconds("http_timeout", 60.0),
            key_dir=table.path("key_dir"),
        )
        table.reject_unknown()
        options._check()
        return options

    def _check(self) -> None:
        if self.chunk_size % _CHUNK_GRANULARITY:
            raise ConfigError(
                f"gdrive option chunk_size={self.chunk_size} must be a multiple of 262144 "
                "(256 KiB), as Drive's resumable upload protocol requires"
            )
        if self.auth == "local" and not self.is_local_server:
            raise ConfigError(
                'gdrive option auth = "local" only works with api_root pointing at a fake Drive '
                "on this machine (127.0.0.1); for Google Drive use a token file, a service "
                "account or Colab"
            )
        if self.auth == "access_token" and not self.access_token:
            raise ConfigError('gdrive option auth = "access_token" needs access_token = "..."')

    @property
    def is_local_server(self) -> bool:
        """Whether ``api_root`` points at this machine."""
        if self.api_root is None:
            return False
        return urllib.parse.urlsplit(self.api_root).hostname in _LOOPBACK


class _Table:
    """Typed reads from the options table that remember which keys were used."""

    def __init__(self, options: Mapping[str, Any]) -> None:
        self.options = options
        self.used = {"email"}  # the core's identity key, read by the core itself

    def _get(self, key: str) -> Any:
        self.used.add(key)
        return self.options.get(key)

    def text(self, key: str) -> str | None:
        value = self._get(key)
        if value is None:
            return None
        if not isinstance(value, str) or not value.strip():
            raise ConfigError(f"gdrive option {key}={value!r} must be a non-empty string")
        return value.strip()

    def path(self, key: str) -> Path | None:
        value = self.text(key)
        return Path(value).expanduser() if value else None

    def choice(self, key: str, allowed: tuple[str, ...], default: str) -> str:
        value = self.text(key) or default
        if value not in allowed:
            raise ConfigError(f"gdrive option {key}={value!r} must be one of {', '.join(allowed)}")
        return value

    def seconds(self, key: str, default: float) -> float:
        value = self._get(key)
        if value is None:
            return default
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise ConfigError(f"gdrive option {key}={value!r} must be a number of seconds")
        if not math.isfinite(value) or value <= 0:
            raise ConfigError(f"gdrive option {key}={value!r} must be positive")
        return float(value)

    def optional_size(self, key: str) -> int | None:
        value = self._get(key)
        if value is None:
            return None
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise ConfigError(f"gdrive option {key}={value!r} must be a positive integer")
        return value

    def size(self, key: str, default: int) -> int:
        value = self.optional_size(key)
        return default if value is None else value

    def reject_unknown(self) -> None:
        unknown = sorted(set(self.options) - self.used)
        if unknown:
            raise ConfigError(
                f"unknown gdrive option(s) {', '.join(unknown)}; known options: "
                f"{', '.join(sorted(self.used - {'email'}))}"
            )


def _env_path(env: Mapping[str, str], name: str) -> Path | None:
    value = (env.get(name) or "").strip()
    return Path(value).expanduser() if value else None


def _api_root(value: str | None) -> str | None:
    if value is None:
        return None
    parts = urllib.parse.urlsplit(value)
    if parts.scheme not in {"http", "https"} or not parts.hostname:
        raise ConfigError(f"gdrive option api_root={value!r} must be an http(s) URL")
    return value if value.endswith("/") else value + "/"
