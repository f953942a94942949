"""Turning project configuration into a live transport."""

from __future__ import annotations

from pathlib import Path

import pluggy

from syft_flwr.config import ProjectConfig, RuntimeSettings
from syft_flwr.errors import ConfigError
from syft_flwr.plugins import get_transport_registry
from syft_flwr.transport import Transport, TransportSettings


def resolve_identity(
    config: ProjectConfig, runtime: RuntimeSettings, explicit: str | None, *, server: bool
) -> str:
    """Who this process is: explicit argument, transport option ``email``, ``SYFTBOX_EMAIL``,
    and for the server finally ``[tool.syft_flwr] aggregator``.

    :raises ConfigError: none of them is set.
    """
    option = config.transport_options.get("email")
    if option is not None and not isinstance(option, str):
        raise ConfigError(f"[tool.syft_flwr.{config.transport}] email must be a string")
    candidates = [explicit, option, runtime.email]
    if server:
        candidates.append(config.aggregator)
    for candidate in candidates:
        if candidate and candidate.strip():
            return candidate.strip()
    where = f"[tool.syft_flwr.{config.transport}] email"
    also = " or [tool.syft_flwr] aggregator" if server else ""
    raise ConfigError(f"no identity for this process: set SYFTBOX_EMAIL, {where}{also}")


def create_transport(
    config: ProjectConfig,
    runtime: RuntimeSettings,
    identity: str,
    project_dir: Path | None,
    plugin_manager: pluggy.PluginManager | None = None,
) -> Transport:
    """Build the configured transport through the plugin registry."""
    registry = get_transport_registry(plugin_manager)
    settings = TransportSettings(
        identity=identity,
        options=dict(config.transport_options),
        project_dir=project_dir,
        poll_interval=runtime.poll_interval,
    )
    return registry.create(config.transport, settings)
