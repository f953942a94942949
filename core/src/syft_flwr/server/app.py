"""``syftbox_flwr_server``: run a Flower ``ServerApp`` over a syft-flwr transport."""

from __future__ import annotations

import logging
import time
import traceback
from pathlib import Path

import pluggy
from flwr.app import Context
from flwr.server import ServerApp
from flwr.server.run_serverapp import run as run_server

from syft_flwr.crypto.errors import MissingKeyError
from syft_flwr.errors import (
    JobStartError,
    MediumError,
    RunInterruptedError,
    SilentDatasitesError,
    WorkspaceIOError,
)
from syft_flwr.events import ServerFinished, ServerStarted
from syft_flwr.grid.syft_grid import APP_PREFIX, SyftGrid, claim_task_identity
from syft_flwr.kill_points import kill_point
from syft_flwr.plugins import fire_event
from syft_flwr.server.engine import ServerEngine, new_run_id
from syft_flwr.server.resume import engine_server_fn, resumable_strategy_start
from syft_flwr.transport import Transport

__all__ = ["APP_PREFIX", "new_run_id", "syftbox_flwr_server"]

logger = logging.getLogger(__name__)

KEY_WAIT = 30.0
"""Longest wait, in seconds, for datasites' key documents before a run is refused (ten
deliveries when the transport's sync is slower)."""
KEY_POLL_INTERVAL = 0.25


def syftbox_flwr_server(
    server_app: ServerApp,
    context: Context,
    datasites: list[str],
    app_name: str,
    project_dir: Path | None = None,
    *,
    transport: Transport | None = None,
    plugin_manager: pluggy.PluginManager | None = None,
    engine: ServerEngine | None = None,
    fresh: bool = False,
) -> Context:
    """Run ``server_app`` as the aggregator of ``datasites``.

    A :class:`~syft_flwr.server.engine.ServerEngine` is built on the transport
    configured in ``project_dir``'s ``pyproject.toml`` (or on ``transport``, or ``engine`` is
    used as given). When encryption is on (``SYFT_FLWR_ENCRYPTION_ENABLED``, else the
    transport's default), every datasite's key document is checked before anything is sent.
    If the project configures a job (``[tool.syft_flwr.job]``), datasites are asked for
    resources and told to start, also when a run is resumed; those that do not start are
    dropped from the run, and a run whose job does not start fails (stop signals are sent).

    The run's rounds are persisted in the project's workspace. The app's last run decides
    what this call does: an interrupted one is resumed from its last committed round (unless
    ``fresh``), one that was sending its stop signals sends the missing ones and returns
    without running the app again, and otherwise a new run starts. The stop signal is sent to
    every datasite after the run, on success and on failure, but not when the process is
    interrupted (Ctrl-C) or the medium fails: the run then stays resumable and its clients keep
    waiting.

    :raises MissingKeyError: encryption is on and some datasites have no usable keys (all of
        them are listed); raised before anything is sent.
    :raises WorkspaceError: an interrupted run cannot be resumed as configured.
    :raises JobStartError: too few datasites started the job (the run is marked failed).
    :raises RunInterruptedError: the medium or the workspace failed; the run is
        ``interrupted`` (or still ``finishing``) and the same call resumes it.

    :return: the updated context; on an error of the app the traceback is logged and the
        original context is returned, as the reference API specifies.
    """
    owns_engine = engine is None
    if engine is None:
        engine = ServerEngine.from_project(
            datasites, app_name, project_dir, transport=transport, plugin_manager=plugin_manager
        )
    try:
        latency = engine.transport.capabilities.delivery_latency
        wait = min(engine.grid.msg_timeout, max(KEY_WAIT, 10 * latency))
        _require_keys(engine.grid, wait=wait)
        if engine.run_id is None:
            engine.open_run(fresh=fresh)
        if engine.finishing:
            engine.complete_finishing()
            return context
        if owns_engine:
            _start_job(engine)
        return _serve(server_app, context, app_name, engine, plugin_manager)
    finally:
        if owns_engine:
            engine.close()


def _start_job(engine: ServerEngine) -> None:
    """The project's job, started for new and resumed runs; a run whose job does not start
    is failed (its datasites are told to stop) and never resumed as if it had started."""
    try:
        engine.start_configured_job()
    except JobStartError as exc:
        logger.error("the run's job did not start: %s", exc)
        engine.finish_run(exc)
        raise
    kill_point("job.started")


def _serve(
    server_app: ServerApp,
    context: Context,
    app_name: str,
    engine: ServerEngine,
    plugin_manager: pluggy.PluginManager | None,
) -> Context:
    run_id = engine.grid.run.run_id
    claim_task_identity(run_id, force=True)
    context.run_id = run_id
    fire_event(
        ServerStarted(run_id=run_id, app_name=app_name, datasites=list(engine.grid.datasites)),
        plugin_manager,
    )
    error: BaseException | None = None
    fault: BaseException | None = None
    try:  # a KeyboardInterrupt goes through: the run stays resumable, no stop signal is sent
        with resumable_strategy_start(), engine_server_fn(server_app, engine.round_keeper):
            updated_context = run_server(
                engine.grid, context=context, loaded_server_app=server_app, server_app_dir=""
            )
        logger.info("Server completed with context: %s", updated_context)
    except (MediumError, WorkspaceIOError, RunInterruptedError) as exc:
        fault = exc
        updated_context = context
    except Exception as exc:
        error = exc
        logger.error("Server encountered an error: %s", exc)
        logger.error("Traceback: %s", traceback.format_exc())
        updated_context = context
    finally:
        fire_event(ServerFinished(run_id=run_id, error=error or fault), plugin_manager)
    if fault is not None:
        engine.interrupt(fault)
        raise RunInterruptedError(
            f"run {run_id} is interrupted: {fault}; fix the cause and start it again to resume"
        ) from fault
    if error is None:
        error = _silence(engine)
    logger.info("Sending stop signals to the clients")
    engine.finish_run(error)
    return updated_context


def _silence(engine: ServerEngine) -> SilentDatasitesError | None:
    """The error of a run in which some datasite never answered, unless dropouts are fine."""
    silent = engine.silent_datasites()
    if not silent or engine.config.tolerate_dropouts:
        return None
    lines = "; ".join(f"{datasite}: {why}" for datasite, why in silent.items())
    error = SilentDatasitesError(
        f"{len(silent)} of {len(engine.grid.datasites)} datasite(s) never answered: {lines} "
        "(set tolerate_dropouts = true in [tool.syft_flwr] if the run may go on without them)"
    )
    logger.error("%s", error)
    return error


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
        lines = "\n".join(f"  {email}: {reason}" for email, reason in unreachable.items())
        raise MissingKeyError(
            f"{len(unreachable)} datasite(s) cannot be reached securely; they must run "
            f"`syft-flwr keys init` (or start their client once) before the run:\n{lines}"
        )
