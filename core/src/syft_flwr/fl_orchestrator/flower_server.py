"""``syftbox_flwr_server``: run a Flower ``ServerApp`` over a syft-flwr transport."""

from __future__ import annotations

import logging
import secrets
import time
import traceback
from collections.abc import Callable
from pathlib import Path
from typing import Any, cast

import pluggy
from flwr.app import Context
from flwr.server import ServerApp, ServerAppComponents
from flwr.server.run_serverapp import run as run_server
from flwr.supercore.task_identity import TaskIdentity

from syft_flwr.config import RuntimeSettings, load_project_config
from syft_flwr.crypto.errors import MissingKeyError
from syft_flwr.crypto.policy import open_channel
from syft_flwr.fl_orchestrator.syft_grid import SERVER_NODE_ID, SyftGrid
from syft_flwr.fl_orchestrator.transport_setup import create_transport, resolve_identity
from syft_flwr.plugins import notify
from syft_flwr.stop_signal import STOP_GROUP_ID
from syft_flwr.transport import Transport

__all__ = ["new_run_id", "syftbox_flwr_server"]

logger = logging.getLogger(__name__)

APP_PREFIX = "flwr/"
KEY_WAIT = 30.0
"""Longest wait, in seconds, for datasites' key documents before a run is refused."""
KEY_POLL_INTERVAL = 0.25


def new_run_id() -> int:
    """A random 63-bit run id (never 0), unique for all practical purposes."""
    return secrets.randbits(63) or 1


def syftbox_flwr_server(
    server_app: ServerApp,
    context: Context,
    datasites: list[str],
    app_name: str,
    project_dir: Path | None = None,
    *,
    transport: Transport | None = None,
    plugin_manager: pluggy.PluginManager | None = None,
) -> Context:
    """Run ``server_app`` as the aggregator of ``datasites``.

    Builds a :class:`SyftGrid` on the transport configured in ``project_dir``'s
    ``pyproject.toml`` (or uses ``transport``), assigns a random run id, runs the
    ``ServerApp``, and always sends the stop signal to every datasite afterwards, on
    success and on failure. When encryption is on (``SYFT_FLWR_ENCRYPTION_ENABLED``, else the
    transport's default), every datasite's key document is checked before the run starts.

    :raises MissingKeyError: encryption is on and some datasites have no usable keys (all of
        them are listed); raised before anything is sent.

    :return: the updated context; on an error the traceback is logged and the original
        context is returned, as the reference API specifies.
    """
    runtime = RuntimeSettings.from_env()
    owns_transport = transport is None
    if transport is None:
        config = load_project_config(project_dir)
        identity = resolve_identity(config, runtime, None, server=True)
        transport = create_transport(config, runtime, identity, project_dir, plugin_manager)
    try:
        channel = open_channel(transport, runtime, plugin_manager)
        grid = SyftGrid(
            app_name=APP_PREFIX + app_name,
            datasites=datasites,
            client=transport,
            msg_timeout=runtime.msg_timeout,
            plugin_manager=plugin_manager,
            channel=channel,
        )
        _require_keys(grid, wait=min(runtime.msg_timeout, KEY_WAIT))
    except BaseException:
        if owns_transport:
            transport.close()
        raise
    run_id = new_run_id()
    grid.set_run(run_id)
    _set_task_identity(run_id)
    context.run_id = run_id
    _adapt_tuple_server_fn(server_app)
    notify(
        "syft_flwr_server_started",
        plugin_manager,
        run_id=run_id,
        app_name=app_name,
        datasites=list(datasites),
    )
    error: BaseException | None = None
    try:
        updated_context = run_server(
            grid, context=context, loaded_server_app=server_app, server_app_dir=""
        )
        logger.info("Server completed with context: %s", updated_context)
    except Exception as exc:
        error = exc
        logger.error("Server encountered an error: %s", exc)
        logger.error("Traceback: %s", traceback.format_exc())
        updated_context = context
    finally:
        notify("syft_flwr_server_finished", plugin_manager, run_id=run_id, error=error)
        logger.info("Sending stop signals to the clients")
        grid.send_stop_signal(group_id=STOP_GROUP_ID, reason=_stop_reason(error))
        if channel is not None:
            channel.close()
        if owns_transport:
            transport.close()
    return updated_context


def _require_keys(grid: SyftGrid, wait: float) -> None:
    """Refuse to start a run in which some datasites cannot be reached securely.

    Datasites starting at the same moment as the server publish their keys a little later, so
    the check is repeated for up to ``wait`` seconds before the run is refused, listing who
    lacks keys. Nothing is sent before every datasite is reachable.
    """
    deadline = time.monotonic() + wait
    unreachable = grid.unreachable_datasites()
    if unreachable:
        logger.info("waiting up to %.0f s for the keys of %s", wait, ", ".join(unreachable))
    while unreachable and time.monotonic() < deadline:
        time.sleep(KEY_POLL_INTERVAL)
        unreachable = grid.unreachable_datasites()
    if unreachable:
        if grid.channel is not None:
            grid.channel.close()
        lines = "\n".join(f"  {email}: {reason}" for email, reason in unreachable.items())
        raise MissingKeyError(
            f"{len(unreachable)} datasite(s) cannot be reached securely; they must run "
            f"`syft-flwr keys init` (or start their client once) before the run:\n{lines}"
        )


def _stop_reason(error: BaseException | None) -> str:
    return "Server stopped" if error is None else f"Server stopped after an error: {error}"


def _set_task_identity(run_id: int) -> None:
    """Flower's ``Message(...)`` reads run and node ids from this process-global identity."""
    TaskIdentity.run_id = run_id
    TaskIdentity.node_id = SERVER_NODE_ID
    TaskIdentity.task_id = 1


class _TupleTolerantServerFn:
    """Wraps a ``server_fn`` so it may return ``(strategy, config)`` as well as components."""

    def __init__(self, server_fn: Callable[[Context], Any]) -> None:
        self.server_fn = server_fn

    def __call__(self, context: Context) -> ServerAppComponents:
        components = self.server_fn(context)
        if isinstance(components, tuple) and len(components) == 2:
            strategy, config = components
            return ServerAppComponents(strategy=strategy, config=config)
        return cast(ServerAppComponents, components)


def _adapt_tuple_server_fn(server_app: ServerApp) -> None:
    """Accept ``server_fn`` returning ``(strategy, config)``, as the reference examples do.

    Flower expects a ``ServerAppComponents``; the syft-flwr examples return a tuple.
    """
    server_fn = getattr(server_app, "_server_fn", None)
    if server_fn is None or isinstance(server_fn, _TupleTolerantServerFn):
        return
    server_app._server_fn = _TupleTolerantServerFn(server_fn)
