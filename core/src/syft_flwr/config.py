"""Project configuration: ``[tool.syft_flwr]`` in the Flower project's ``pyproject.toml``.

Keys: ``app_name``, ``datasites``, ``aggregator``, ``transport``, ``workspace``,
``lost_after``, a per-transport options table ``[tool.syft_flwr.<transport>]``, what a
datasite offers to jobs (``[tool.syft_flwr.resources]``) and what the server's run asks of
them (``[tool.syft_flwr.job]``); on a datasite's side, whom it serves
(``trusted_aggregators``, default ``[aggregator]``) and whether new runs wait for its owner
(``approve = "auto" | "manual"``), and the Flower node config of each datasite
(``[tool.syft_flwr.node_config."<email>"]``, see :mod:`syft_flwr.flower_config`). Flower's
``[tool.flwr.app.components]`` and ``[tool.flwr.app.config]`` are read too. Emails are checked
with :mod:`syft_flwr.addresses`.
Environment variables from the syft-flwr API reference override or complete it at run time
(see :class:`RuntimeSettings`). Every validation error names the key and the file, so the
user knows what to fix.
"""

from __future__ import annotations

import math
import os
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from syft_flwr.addresses import check_app, check_datasite
from syft_flwr.errors import ConfigError, InvalidAddressError
from syft_flwr.node_ids import normalise_email

__all__ = [
    "DEFAULT_MSG_TIMEOUT",
    "DEFAULT_POLL_INTERVAL",
    "DEFAULT_TRANSPORT",
    "ProjectConfig",
    "RuntimeSettings",
    "load_project_config",
]

DEFAULT_TRANSPORT = "syftbox"
DEFAULT_MSG_TIMEOUT = 120.0
DEFAULT_POLL_INTERVAL = 1.0

_KNOWN_KEYS = {
    "app_name",
    "datasites",
    "aggregator",
    "transport",
    "workspace",
    "lost_after",
    "trusted_aggregators",
    "approve",
    "tolerate_dropouts",
}
_RESERVED_TABLES = {"resources", "job", "node_config"}


@dataclass(frozen=True)
class ProjectConfig:
    """The validated ``[tool.syft_flwr]`` table."""

    app_name: str | None = None
    datasites: tuple[str, ...] = ()
    aggregator: str | None = None
    transport: str = DEFAULT_TRANSPORT
    transport_options: Mapping[str, Any] = field(default_factory=dict)
    source: Path | None = None
    flower_components: Mapping[str, str] = field(default_factory=dict)
    workspace: str | None = None
    lost_after: float | None = None
    resources: Mapping[str, Any] = field(default_factory=dict)
    job: Mapping[str, Any] = field(default_factory=dict)
    trusted_aggregators: tuple[str, ...] | None = None
    """The datasite owner's own list of servers it answers; ``None``: just ``aggregator``."""
    approve: str = "auto"
    """``"manual"``: hold each new run until the owner approves it (:mod:`syft_flwr.approvals`)."""
    tolerate_dropouts: bool = False
    """A run in which some datasite never answered still counts as finished (else failed)."""
    flower_config: Mapping[str, Any] = field(default_factory=dict)
    """``[tool.flwr.app.config]``, flattened as Flower flattens it (the run config's defaults)."""
    node_configs: Mapping[str, Mapping[str, Any]] = field(default_factory=dict)
    """Canonical datasite email -> its ``[tool.syft_flwr.node_config."<email>"]`` table."""

    def require_app_name(self) -> str:
        """The app name, or an error saying where to set it."""
        if not self.app_name:
            raise ConfigError(f"set app_name in [tool.syft_flwr] of {self._where()}")
        return self.app_name

    def _where(self) -> str:
        return str(self.source) if self.source else "the project's pyproject.toml"


def load_project_config(project_dir: Path | str | None) -> ProjectConfig:
    """Read ``[tool.syft_flwr]`` from ``project_dir/pyproject.toml``.

    Without a project dir the defaults apply (transport ``syftbox``), as in the reference API.

    :raises ConfigError: the file is missing or unreadable, or a key has the wrong type.
    """
    if project_dir is None:
        return ProjectConfig()
    path = Path(project_dir) / "pyproject.toml"
    try:
        with path.open("rb") as handle:
            document = tomllib.load(handle)
    except FileNotFoundError:
        raise ConfigError(f"no pyproject.toml in project dir {Path(project_dir)}") from None
    except UnicodeDecodeError as exc:
        raise ConfigError(f"{path} is not UTF-8 text (TOML must be): {exc}") from None
    except (OSError, tomllib.TOMLDecodeError) as exc:
        raise ConfigError(f"cannot read {path}: {exc}") from exc
    tool = document.get("tool", {})
    table = tool.get("syft_flwr", {}) if isinstance(tool, dict) else {}
    if not isinstance(table, dict):
        raise ConfigError(f"[tool.syft_flwr] in {path} must be a table")
    config = _parse_table(table, path, _flower_components(tool, path))
    return replace(config, flower_config=_flower_app_config(tool, path))


def _parse_table(table: dict[str, Any], path: Path, components: dict[str, str]) -> ProjectConfig:
    transport = _optional_str(table, "transport", path) or DEFAULT_TRANSPORT
    if transport in _RESERVED_TABLES:
        raise ConfigError(
            f"transport {transport!r} in [tool.syft_flwr] of {path} clashes with the "
            f"[tool.syft_flwr.{transport}] table; no transport can have that name"
        )
    options = table.get(transport, {})
    if not isinstance(options, dict):
        raise ConfigError(f"[tool.syft_flwr.{transport}] in {path} must be a table")
    unknown = set(table) - _KNOWN_KEYS - {k for k, v in table.items() if isinstance(v, dict)}
    if unknown:
        raise ConfigError(
            f"unknown key(s) {', '.join(sorted(unknown))} in [tool.syft_flwr] of {path}; "
            f"known keys: {', '.join(sorted(_KNOWN_KEYS))}"
        )
    datasites = _email_list(table, "datasites", path) or ()
    aggregator = _optional_str(table, "aggregator", path)
    if aggregator is not None:
        _check_email(aggregator, "aggregator", path)
    if aggregator is not None and normalise_email(aggregator) in {
        normalise_email(d) for d in datasites
    }:
        raise ConfigError(
            f"aggregator {aggregator!r} is also listed in datasites in [tool.syft_flwr] of {path}; "
            "the aggregator is no datasite of its own run: remove it from datasites"
        )
    app_name = _optional_str(table, "app_name", path)
    if app_name is not None:
        try:
            check_app(f"flwr/{app_name}")
        except InvalidAddressError as exc:
            raise ConfigError(f"app_name in [tool.syft_flwr] of {path}: {exc}") from None
    approve = table.get("approve", "auto")
    if approve not in ("auto", "manual"):
        raise ConfigError(f'approve in [tool.syft_flwr] of {path} must be "auto" or "manual"')
    lost_after = table.get("lost_after")
    if lost_after is not None and (
        isinstance(lost_after, bool)
        or not isinstance(lost_after, (int, float))
        or not math.isfinite(lost_after)
        or lost_after <= 0
    ):
        raise ConfigError(f"lost_after in [tool.syft_flwr] of {path} must be a positive number")
    return ProjectConfig(
        app_name=app_name,
        datasites=datasites,
        aggregator=aggregator,
        transport=transport,
        transport_options=dict(options),
        source=path,
        flower_components=components,
        workspace=_optional_str(table, "workspace", path),
        lost_after=None if lost_after is None else float(lost_after),
        resources=_optional_table(table, "resources", path),
        job=_optional_table(table, "job", path),
        trusted_aggregators=_email_list(table, "trusted_aggregators", path),
        approve=approve,
        tolerate_dropouts=_table_bool(table, "tolerate_dropouts", path),
        node_configs=_node_configs(table, path),
    )


def _node_configs(table: Mapping[str, Any], path: Path) -> dict[str, dict[str, Any]]:
    """``[tool.syft_flwr.node_config."<email>"]`` tables, keyed by canonical email."""
    raw = _optional_table(table, "node_config", path)
    tables: dict[str, dict[str, Any]] = {}
    for email, values in raw.items():
        where = f'[tool.syft_flwr.node_config."{email}"] in {path}'
        _check_email(email, "node_config", path)
        if not isinstance(values, dict):
            raise ConfigError(f"{where} must be a table of values (partition-id = 0, ...)")
        flat = _flatten(values, where)
        key = normalise_email(email)
        if key in tables:
            raise ConfigError(f"{where}: this datasite has a node_config table already")
        tables[key] = flat
    return tables


def _flower_app_config(tool: Any, path: Path) -> dict[str, Any]:
    try:
        app = tool["flwr"]["app"]
    except (KeyError, TypeError):
        return {}
    values = app.get("config", {}) if isinstance(app, dict) else {}
    if not isinstance(values, dict):
        raise ConfigError(f"[tool.flwr.app.config] in {path} must be a table")
    return _flatten(values, f"[tool.flwr.app.config] in {path}")


def _flatten(values: Mapping[str, Any], where: str, prefix: str = "") -> dict[str, Any]:
    """Nested tables as Flower flattens them (``a.b = 1``), values kept to Flower's types."""
    flat: dict[str, Any] = {}
    for key, value in values.items():
        name = f"{prefix}{key}"
        if isinstance(value, dict):
            flat.update(_flatten(value, where, f"{name}."))
        elif isinstance(value, (bool, int, float, str)):
            flat[name] = value
        else:
            raise ConfigError(
                f"{name} in {where} is a {type(value).__name__}: Flower config values are "
                "booleans, numbers or strings"
            )
    return flat


def _table_bool(table: Mapping[str, Any], key: str, path: Path) -> bool:
    value = table.get(key, False)
    if not isinstance(value, bool):
        raise ConfigError(f"{key} in [tool.syft_flwr] of {path} must be true or false")
    return value


def _email_list(table: Mapping[str, Any], key: str, path: Path) -> tuple[str, ...] | None:
    """The list of emails under ``key`` (``None`` when absent), each a safe email."""
    if key not in table:
        return None
    value = table[key]
    if not isinstance(value, list) or not all(isinstance(item, str) for item in value):
        raise ConfigError(f"{key} in [tool.syft_flwr] of {path} must be a list of emails")
    emails = tuple(item.strip() for item in value)
    for email in emails:
        _check_email(email, key, path)
    return emails


def _check_email(email: str, key: str, path: Path) -> None:
    try:
        check_datasite(email)
    except InvalidAddressError as exc:
        raise ConfigError(f"{key} in [tool.syft_flwr] of {path}: {exc}") from None


def _optional_table(table: Mapping[str, Any], key: str, path: Path) -> dict[str, Any]:
    value = table.get(key, {})
    if not isinstance(value, dict):
        raise ConfigError(f"[tool.syft_flwr.{key}] in {path} must be a table")
    return dict(value)


def _flower_components(tool: Any, path: Path) -> dict[str, str]:
    try:
        components = tool["flwr"]["app"]["components"]
    except (KeyError, TypeError):
        return {}
    if not isinstance(components, dict):
        raise ConfigError(f"[tool.flwr.app.components] in {path} must be a table")
    return {k: v for k, v in components.items() if isinstance(v, str)}


def _optional_str(table: Mapping[str, Any], key: str, path: Path) -> str | None:
    value = table.get(key)
    if value is None:
        return None
    if not isinstance(value, str) or not value.strip():
        raise ConfigError(f"{key} in [tool.syft_flwr] of {path} must be a non-empty string")
    return value.strip()


@dataclass(frozen=True)
class RuntimeSettings:
    """Settings taken from the environment at run time.

    :param msg_timeout: ``SYFT_FLWR_MSG_TIMEOUT``: longest wait for replies when the strategy
        gives no timeout.
    :param poll_interval: ``SYFT_FLWR_POLL_INTERVAL``: seconds between polls for transports
        that cannot notify.
    :param email: ``SYFTBOX_EMAIL``: the identity of this process, if set.
    :param encryption_enabled: ``SYFT_FLWR_ENCRYPTION_ENABLED``, ``None`` when unset (the
        transport's default applies).
    :param lost_after: ``SYFT_FLWR_LOST_AFTER``: seconds a datasite may leave a request
        unanswered before the server counts it as lost; ``None`` when unset.
    :param fsync: ``SYFT_FLWR_FSYNC``: flush the server's run state (journal, snapshots,
        ``run.json``) to disk at every commit point, so a run resumes after a crash of the
        machine too, not only of the process. Off by default: each flush costs milliseconds,
        several per message, more than the rest of a round on a fast transport.
    """

    msg_timeout: float = DEFAULT_MSG_TIMEOUT
    poll_interval: float = DEFAULT_POLL_INTERVAL
    email: str | None = None
    encryption_enabled: bool | None = None
    lost_after: float | None = None
    fsync: bool = False

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> RuntimeSettings:
        """Read and validate the environment variables.

        :raises ConfigError: a variable holds a value of the wrong form.
        """
        env = os.environ if environ is None else environ
        return cls(
            msg_timeout=_positive_float(env, "SYFT_FLWR_MSG_TIMEOUT", DEFAULT_MSG_TIMEOUT),
            poll_interval=_positive_float(env, "SYFT_FLWR_POLL_INTERVAL", DEFAULT_POLL_INTERVAL),
            lost_after=(
                _positive_float(env, "SYFT_FLWR_LOST_AFTER", 1.0)
                if env.get("SYFT_FLWR_LOST_AFTER", "").strip()
                else None
            ),
            email=(env.get("SYFTBOX_EMAIL") or "").strip() or None,
            encryption_enabled=_optional_bool(env, "SYFT_FLWR_ENCRYPTION_ENABLED"),
            fsync=bool(_optional_bool(env, "SYFT_FLWR_FSYNC")),
        )


def _positive_float(env: Mapping[str, str], name: str, default: float) -> float:
    raw = env.get(name)
    if raw is None or not raw.strip():
        return default
    try:
        value = float(raw)
    except ValueError:
        raise ConfigError(f"{name}={raw!r} is not a number of seconds") from None
    if not math.isfinite(value) or value <= 0:
        raise ConfigError(f"{name}={raw!r} must be a positive number of seconds")
    return value


_TRUE = {"1", "true", "yes", "on"}
_FALSE = {"0", "false", "no", "off"}


def _optional_bool(env: Mapping[str, str], name: str) -> bool | None:
    raw = env.get(name)
    if raw is None or not raw.strip():
        return None
    lowered = raw.strip().lower()
    if lowered in _TRUE:
        return True
    if lowered in _FALSE:
        return False
    raise ConfigError(f"{name}={raw!r} must be 'true' or 'false'")
