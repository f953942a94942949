"""Turning project configuration into a live transport."""

from __future__ import annotations

from pathlib import Path

import pluggy

from syft_flwr.addresses import check_datasite
from syft_flwr.config import ProjectConfig, RuntimeSettings, load_project_config
from syft_flwr.errors import ConfigError, InvalidAddressError
from syft_flwr.node_ids import normalise_email
from syft_flwr.plugins import get_transport_registry
from syft_flwr.syftbox_client_config import client_config_path, read_client_config
from syft_flwr.transport import Transport, TransportSettings


def resolve_identity(
    config: ProjectConfig, runtime: RuntimeSettings, explicit: str | None, *, server: bool
) -> str:
    """Who this process is: explicit argument, transport option ``email``, ``SYFTBOX_EMAIL``,
    the SyftBox client config's user (:mod:`syft_flwr.syftbox_client_config`, as syft-flwr
    0.5.x reads it), and for the server finally ``[tool.syft_flwr] aggregator``.

    :raises ConfigError: none of them is set, the one that is is no safe email,
        ``SYFTBOX_EMAIL`` and the transport option name different datasites, or the SyftBox
        client config is unreadable.
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
    if not any(value for _, value in candidates):
        client_config = read_client_config()
        if client_config is not None:
            candidates.append((f"email in {client_config.path}", client_config.email))
    if server:
        candidates.append(("[tool.syft_flwr] aggregator", config.aggregator))
    for name, candidate in candidates:
        if candidate and candidate.strip():
            try:
                return check_datasite(candidate.strip())
            except InvalidAddressError as exc:
                raise ConfigError(f"{name}: {exc}") from None
    also = " or [tool.syft_flwr] aggregator" if server else ""
    raise ConfigError(
        f"no identity for this process: set SYFTBOX_EMAIL, {where}{also}, or log in with the "
        f"SyftBox client ({client_config_path()})"
    )


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


def create_client(
    project_dir: Path | str | None = None,
    *,
    email: str | None = None,
    plugin_manager: pluggy.PluginManager | None = None,
) -> Transport:
    """The transport the reference API calls ``client``: ``SyftGrid(..., client=...)``.

    Built exactly as :func:`~syft_flwr.fl_orchestrator.syftbox_flwr_server` builds its own:
    the transport ``[tool.syft_flwr] transport`` of ``project_dir`` names (``syftbox`` by
    default) with its options table, for the identity ``email`` resolves to (else the
    transport option ``email``, ``SYFTBOX_EMAIL``, the SyftBox client config, and finally
    ``[tool.syft_flwr] aggregator``). The caller owns it: ``close()`` it when done.

    :raises ConfigError: the project or the environment is misconfigured, or no identity.
    :raises UnknownTransportError: no installed plugin provides the transport.
    """
    config = load_project_config(project_dir)
    runtime = RuntimeSettings.from_env()
    identity = resolve_identity(config, runtime, email, server=True)
    folder = Path(project_dir) if project_dir is not None else None
    return create_transport(config, runtime, identity, folder, plugin_manager)
