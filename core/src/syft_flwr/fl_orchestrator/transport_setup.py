"""Turning project configuration into a live transport."""

from __future__ import annotations

from pathlib import Path

import pluggy

from syft_flwr.addresses import check_datasite
from syft_flwr.config import ProjectConfig, RuntimeSettings
from syft_flwr.errors import ConfigError, InvalidAddressError
from syft_flwr.node_ids import normalise_email
from syft_flwr.plugins import get_transport_registry
from syft_flwr.transport import Transport, TransportSettings


def resolve_identity(
    config: ProjectConfig, runtime: RuntimeSettings, explicit: str | None, *, server: bool
) -> str:
    """Who this process is: explicit argument, transport option ``email``, ``SYFTBOX_EMAIL``,
    and for the server finally ``[tool.syft_flwr] aggregator``.

    :raises ConfigError: none of them is set, the one that is is no safe email, or
        ``SYFTBOX_EMAIL`` and the transport option name different datasites.
    """
    option = config.transport_options.get("email")
    where = f"[tool.syft_flwr.{config.transport}] email"
    if option is not None and not isinstance(option, str):
        raise ConfigError(f"{where} in {config.source} must be a string")
    if (
        not explicit
        and option
        and runtime.email
        and normalise_email(option) != normalise_email(runtime.email)
    ):
        raise ConfigError(
            f"SYFTBOX_EMAIL={runtime.email} but {where} = {option!r} in {config.source}: which "
            "datasite is this process? Remove one of them (or pass --email)"
        )
    candidates = [("--email", explicit), (where, option), ("SYFTBOX_EMAIL", runtime.email)]
    if server:
        candidates.append(("[tool.syft_flwr] aggregator", config.aggregator))
    for name, candidate in candidates:
        if candidate and candidate.strip():
            try:
                return check_datasite(candidate.strip())
            except InvalidAddressError as exc:
                raise ConfigError(f"{name}: {exc}") from None
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
