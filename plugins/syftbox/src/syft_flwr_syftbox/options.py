"""The ``[tool.syft_flwr.syftbox]`` options, and where the SyftBox folder comes from.

The data dir (the folder holding ``datasites/``) is found in this order, as the issue and
the SyftBox tools do:

1. the option ``data_dir`` (relative paths are relative to the Flower project);
2. ``SYFTBOX_FOLDER``, or ``SYFTBOX_DATA_DIR`` (the name syft-core and SyftBox apps use);
3. the SyftBox client's own config file (``SYFTBOX_CLIENT_CONFIG_PATH``, by default
   ``~/.syftbox/config.json``; keys ``data_dir``/``sync_folder`` and ``email``).

The identity is the core's (``TransportSettings.identity``). Settings that contradict each
other are errors rather than guesses: an ``email`` option that is not the identity, the two
environment variables naming different folders, or a SyftBox config file that belongs to
another user than the one this process acts as. Every error says what to set.
"""

from __future__ import annotations

import math
import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from syft_flwr.errors import ConfigError
from syft_flwr.node_ids import normalise_email
from syft_flwr.syftbox_client_config import (
    CONFIG_PATH_ENV,
    DEFAULT_CONFIG_PATH,
    read_client_config,
)
from syft_flwr.transport import TransportSettings
from syft_flwr_syftbox.native_file import MAX_PARTS
from syft_flwr_syftbox.rpcfile import WireFormat

__all__ = [
    "CONFIG_PATH_ENV",
    "DEFAULT_CONFIG_PATH",
    "DEFAULT_MAX_BODY_SIZE",
    "DEFAULT_PART_SIZE",
    "DEFAULT_SYNC_INTERVAL",
    "FOLDER_ENVS",
    "STATE_DIR",
    "SyftBoxOptions",
]

FOLDER_ENVS = ("SYFTBOX_FOLDER", "SYFTBOX_DATA_DIR")
DEFAULT_MAX_BODY_SIZE = 2**30
"""1 GiB: room for large models, while a hostile file cannot make a reader allocate more."""
DEFAULT_PART_SIZE = 4 * 2**20
"""4 MiB: the Go SyftBox fast-tracks RPC files up to about 4 MB, SyftBox 0.4.0 refuses 10 MB."""
DEFAULT_SYNC_INTERVAL = 1.0
"""Seconds between two sync cycles of the SyftBox 0.4.x client."""
STATE_DIR = ".syft-flwr"
"""Hidden folder in the data dir (beside, not inside, ``datasites/``: never synced)."""

_TABLE = "[tool.syft_flwr.syftbox]"
# key_dir belongs to the core's encryption layer (syft_flwr.crypto.policy), not to this transport.
_KNOWN = {
    "data_dir",
    "email",
    "wire",
    "max_body_size",
    "part_size",
    "sync_interval",
    "fsync",
    "cleanup_interval",
    "stale_after",
    "key_dir",
}


@dataclass(frozen=True)
class SyftBoxOptions:
    """Validated options of one syftbox transport.

    :param data_dir: the SyftBox folder (holds ``datasites/``).
    :param wire: the format of the requests this transport writes; replies always use the
        format of the request they answer.
    :param max_body_size: largest request or reply body, in bytes, sent or accepted.
    :param part_size: largest file, in bytes, a body is written in. A native body larger than
        this travels as parts of at most ``part_size`` bytes plus a small manifest written last
        (:mod:`~syft_flwr_syftbox.parts`), because sync clients refuse or delay large files;
        a ``syft-rpc`` body is always one file (syft-flwr 0.5.x reads nothing else). A body is
        at most :data:`~syft_flwr_syftbox.native_file.MAX_PARTS` (16384) parts, so
        ``part_size`` must be at least ``max_body_size / 16384``.
    :param sync_interval: seconds between two cycles of the sync client that carries this
        folder to the other parties (SyftBox 0.4.x syncs every second; ``0`` for a folder
        that every party shares, with nothing in between). A file takes up to about two
        cycles per hop (one to upload, one to download), so this sets the transport's
        :attr:`~syft_flwr.transport.TransportCapabilities.delivery_latency` (twice it), which
        the core's waits for key documents grow with, and the wait before a request the
        sync refused is offered again (:mod:`~syft_flwr_syftbox.rejections`).
    :param fsync: flush each file to disk before publishing it. Off by default: every file
        declares its own length, so one torn by a crash is recognised as incomplete and the
        message ends in a TTL error, the same outcome as a name lost in a crash (directories
        are not fsynced either); turn it on to trade about 0.3 s per 100 MiB for fewer such
        losses after power failures.
    :param cleanup_interval: seconds between removals of stale files and futures.
    :param stale_after: seconds after its expiry that a request, its reply and its future
        are kept (so a restarted server can still collect them), before being removed.
    """

    data_dir: Path
    wire: WireFormat = WireFormat.NATIVE
    max_body_size: int = DEFAULT_MAX_BODY_SIZE
    part_size: int = DEFAULT_PART_SIZE
    sync_interval: float = DEFAULT_SYNC_INTERVAL
    fsync: bool = False
    cleanup_interval: float = 60.0
    stale_after: float = 3600.0

    @property
    def datasites(self) -> Path:
        """The synced ``datasites`` folder."""
        return self.data_dir / "datasites"

    def state_dir(self, identity: str) -> Path:
        """Where this identity's durable futures live (never synced)."""
        return self.data_dir / STATE_DIR / normalise_email(identity)

    @classmethod
    def resolve(
        cls, settings: TransportSettings, environ: Mapping[str, str] | None = None
    ) -> SyftBoxOptions:
        """Build the options from the settings' table, the environment and SyftBox's config.

        :raises ConfigError: an unknown key, a malformed value, contradictory settings, or no
            data dir anywhere.
        """
        env = os.environ if environ is None else environ
        table = settings.options
        unknown = set(table) - _KNOWN
        if unknown:
            raise ConfigError(
                f"unknown key(s) {', '.join(sorted(unknown))} in {_TABLE}; "
                f"known keys: {', '.join(sorted(_KNOWN))}"
            )
        email = table.get("email")
        if email is not None and (
            not isinstance(email, str)
            or normalise_email(email) != normalise_email(settings.identity)
        ):
            raise ConfigError(
                f"{_TABLE} email = {email!r} but this process acts as {settings.identity!r}; "
                "remove the email option or make it match SYFTBOX_EMAIL / --email"
            )
        data_dir = _data_dir(table, settings, env)
        if not data_dir.is_dir():
            raise ConfigError(
                f"SyftBox data dir {data_dir} does not exist; start the SyftBox client or set "
                f"{_TABLE} data_dir / SYFTBOX_FOLDER to an existing folder"
            )
        max_body_size = _int(table, "max_body_size", DEFAULT_MAX_BODY_SIZE)
        return cls(
            data_dir=data_dir,
            wire=_wire(table.get("wire", WireFormat.NATIVE.value)),
            max_body_size=max_body_size,
            part_size=_part_size(table, max_body_size),
            sync_interval=_seconds(table, "sync_interval", DEFAULT_SYNC_INTERVAL, zero=True),
            fsync=_bool(table, "fsync", False),
            cleanup_interval=_seconds(table, "cleanup_interval", 60.0),
            stale_after=_seconds(table, "stale_after", 3600.0),
        )


def _data_dir(
    table: Mapping[str, Any], settings: TransportSettings, env: Mapping[str, str]
) -> Path:
    option = table.get("data_dir")
    if option is not None:
        if not isinstance(option, str | os.PathLike) or not str(option).strip():
            raise ConfigError(f"{_TABLE} data_dir must be a path, got {option!r}")
        path = Path(option).expanduser()
        if not path.is_absolute() and settings.project_dir is not None:
            path = settings.project_dir / path
        return path.resolve()
    from_env = {name: env[name].strip() for name in FOLDER_ENVS if env.get(name, "").strip()}
    folders = {Path(value).expanduser().resolve() for value in from_env.values()}
    if len(folders) > 1:
        raise ConfigError(
            f"SYFTBOX_FOLDER={from_env['SYFTBOX_FOLDER']!r} and "
            f"SYFTBOX_DATA_DIR={from_env['SYFTBOX_DATA_DIR']!r} name different folders; "
            "unset one of them"
        )
    if folders:
        return folders.pop()
    return _from_client_config(settings.identity, env)


def _from_client_config(identity: str, env: Mapping[str, str]) -> Path:
    hint = f"set {_TABLE} data_dir or SYFTBOX_FOLDER, or log in with the SyftBox client"
    try:
        config = read_client_config(env, required=True)
    except ConfigError as exc:
        raise ConfigError(f"no SyftBox data dir: {exc}; {hint}") from None
    assert config is not None
    if config.data_dir is None:
        raise ConfigError(f"the SyftBox config {config.path} has no data_dir; {hint}")
    if config.email is not None and normalise_email(config.email) != normalise_email(identity):
        raise ConfigError(
            f"the SyftBox config {config.path} belongs to {config.email!r}, but this process "
            f"acts as {identity!r}; set SYFTBOX_EMAIL={config.email} to act as that user, or "
            f"point {_TABLE} data_dir / SYFTBOX_FOLDER at {identity}'s SyftBox folder"
        )
    return config.data_dir


def _wire(value: object) -> WireFormat:
    try:
        return WireFormat(value)
    except ValueError:
        choices = ", ".join(repr(w.value) for w in WireFormat)
        raise ConfigError(f"{_TABLE} wire = {value!r}; choose one of {choices}") from None


def _int(table: Mapping[str, Any], key: str, default: int) -> int:
    value = table.get(key, default)
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ConfigError(f"{_TABLE} {key} = {value!r} must be a positive number of bytes")
    return value


def _part_size(table: Mapping[str, Any], max_body_size: int) -> int:
    """``part_size``, large enough that a body of ``max_body_size`` needs at most
    :data:`~syft_flwr_syftbox.native_file.MAX_PARTS` parts (a manifest's header is bounded)."""
    value = _int(table, "part_size", DEFAULT_PART_SIZE)
    smallest = -(-max_body_size // MAX_PARTS)
    if value < smallest:
        raise ConfigError(
            f"{_TABLE} part_size = {value} is too small for max_body_size = {max_body_size}: a "
            f"body is at most {MAX_PARTS} parts, so part_size must be at least {smallest} bytes"
        )
    return value


def _bool(table: Mapping[str, Any], key: str, default: bool) -> bool:
    value = table.get(key, default)
    if not isinstance(value, bool):
        raise ConfigError(f"{_TABLE} {key} = {value!r} must be true or false")
    return value


def _seconds(table: Mapping[str, Any], key: str, default: float, *, zero: bool = False) -> float:
    value = table.get(key, default)
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise ConfigError(f"{_TABLE} {key} = {value!r} must be a number of seconds")
    if value < 0 or (value == 0 and not zero):
        raise ConfigError(
            f"{_TABLE} {key} = {value!r} must be {'zero or more' if zero else 'positive'}"
        )
    return float(value)
