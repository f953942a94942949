"""``syftbox_flwr_client``: serve a Flower ``ClientApp`` for one datasite."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from pathlib import Path

import pluggy
from flwr.app import Context
from flwr.clientapp import ClientApp

from syft_flwr.approvals import ApprovalBook, ApprovalMode
from syft_flwr.audit import AuditTrail
from syft_flwr.authorization import aggregator_policy
from syft_flwr.client.runner import ClientRunner
from syft_flwr.client.workspace import DatasiteWorkspace
from syft_flwr.config import RuntimeSettings, load_project_config
from syft_flwr.crypto.policy import open_channel
from syft_flwr.grid.syft_grid import APP_PREFIX
from syft_flwr.services.resources import ResourceOffer
from syft_flwr.transport import Transport
from syft_flwr.transport_setup import create_transport, resolve_identity

__all__ = ["syftbox_flwr_client"]

logger = logging.getLogger(__name__)


def syftbox_flwr_client(
    client_app: ClientApp,
    context: Context,
    app_name: str,
    project_dir: Path | None = None,
    *,
    email: str | None = None,
    transport: Transport | None = None,
    plugin_manager: pluggy.PluginManager | None = None,
    trusted_aggregators: Sequence[str] | None = None,
    approve: str | None = None,
) -> str | None:
    """Answer the aggregator's messages with ``client_app`` until the stop signal.

    The identity is ``email``, else the transport option ``email``, else ``SYFTBOX_EMAIL``.
    Only the trusted aggregators are served: ``trusted_aggregators``, else
    ``[tool.syft_flwr] trusted_aggregators``, else ``[tool.syft_flwr] aggregator``; anyone else
    is refused, and every decision goes to the datasite's audit trail
    (:class:`~syft_flwr.client.workspace.DatasiteWorkspace`). With ``approve = "manual"``
    (the argument or the config key), each new run waits for the owner's
    ``syft-flwr approve``. When encryption is on, this datasite's key document is published
    before serving. What the datasite offers to jobs comes from ``[tool.syft_flwr.resources]``
    of ``project_dir`` (detected from the machine where it says nothing).

    :raises ConfigError: no aggregator is trusted, or a setting is malformed.
    :raises ResourceError: ``[tool.syft_flwr.resources]`` is malformed.
    :return: the stop signal's reason, or ``None`` if serving ended otherwise.
    """
    owns_transport = transport is None
    runtime = RuntimeSettings.from_env()
    config = load_project_config(project_dir)
    policy = aggregator_policy(config, trusted_aggregators)
    where = f"[tool.syft_flwr] of {config.source or 'the project'}"
    mode = ApprovalMode.parse(config.approve if approve is None else approve, where)
    offer = ResourceOffer.from_table(
        config.resources, source=config.source, folder=Path(project_dir) if project_dir else None
    )
    identity = (
        transport.identity
        if transport is not None
        else resolve_identity(config, runtime, email, server=False)
    )
    workspace = DatasiteWorkspace.locate(
        config, Path(project_dir) if project_dir else None, identity
    )
    if transport is None:
        transport = create_transport(config, runtime, identity, project_dir, plugin_manager)
    try:
        channel = open_channel(transport, runtime, plugin_manager)
    except BaseException:
        if owns_transport:
            transport.close()
        raise
    runner = ClientRunner(
        client_app,
        context,
        transport,
        APP_PREFIX + app_name,
        plugin_manager=plugin_manager,
        channel=channel,
        trusted_aggregators=policy,
        resources=offer,
        aggregator=config.aggregator if policy.allows(config.aggregator or "") else None,
        audit=AuditTrail(workspace.audit_path),
        approvals=ApprovalBook(workspace.approvals_dir) if mode is ApprovalMode.MANUAL else None,
    )
    try:
        reason = runner.run()
    finally:
        if channel is not None:
            channel.close()
        if owns_transport:
            transport.close()
    logger.info("%s stopped after %d messages: %s", transport.identity, runner.handled, reason)
    return reason
