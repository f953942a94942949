"""Run a Flower project's server or client side from its directory, as syft-flwr 0.5.x does.

``syftbox_run_flwr_server(project_dir)`` and ``syftbox_run_flwr_client(project_dir)`` are the
calls syft-flwr 0.5.x users make (``from syft_flwr.run import ...``), and ``syft-flwr run`` is
built on them. Each reads the project's ``pyproject.toml``: the Flower components
(``[tool.flwr.app.components]``), the run config (``[tool.flwr.app.config]``, see
:mod:`syft_flwr.flower_config`) and ``[tool.syft_flwr]``; the client side also fills the Flower
node config of its datasite. Unlike 0.5.x, where a node config was the run config again, an
app reading ``context.node_config["partition-id"]`` gets its datasite's partition.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pluggy
from flwr.app import Context, RecordDict
from flwr.clientapp import ClientApp
from flwr.server import ServerApp
from flwr.supercore.object_ref import load_app

from syft_flwr.config import ProjectConfig, RuntimeSettings, load_project_config
from syft_flwr.errors import ConfigError
from syft_flwr.fl_orchestrator import syftbox_flwr_client, syftbox_flwr_server
from syft_flwr.flower_config import node_config, run_config
from syft_flwr.node_ids import node_id_for
from syft_flwr.transport_setup import resolve_identity

__all__ = ["load_component", "syftbox_run_flwr_client", "syftbox_run_flwr_server"]


def syftbox_run_flwr_server(
    flower_project_dir: Path | str,
    *,
    run_config_overrides: Sequence[str] = (),
    fresh: bool = False,
    plugin_manager: pluggy.PluginManager | None = None,
) -> Context:
    """Run the project's ``ServerApp`` as the aggregator of ``[tool.syft_flwr] datasites``.

    :param run_config_overrides: ``k=v ...`` strings, as ``flwr run --run-config`` takes them.
    :param fresh: start a new run instead of resuming an interrupted one.
    :raises ConfigError: the project lacks ``datasites``, ``app_name`` or the server app.
    :return: the context after the run (see :func:`syftbox_flwr_server`).
    """
    project_dir = Path(flower_project_dir).resolve()
    config = load_project_config(project_dir)
    app_name = config.require_app_name()
    if not config.datasites:
        raise ConfigError(f"set datasites in [tool.syft_flwr] of {config.source}")
    server_app = load_component(config, "serverapp", ServerApp, project_dir)
    context = _context(run_config(config, run_config_overrides), {}, node_id=0)
    return syftbox_flwr_server(
        server_app,
        context,
        list(config.datasites),
        app_name,
        project_dir,
        plugin_manager=plugin_manager,
        fresh=fresh,
    )


def syftbox_run_flwr_client(
    flower_project_dir: Path | str,
    *,
    email: str | None = None,
    run_config_overrides: Sequence[str] = (),
    node_config_overrides: Sequence[str] = (),
    plugin_manager: pluggy.PluginManager | None = None,
) -> str | None:
    """Serve the project's ``ClientApp`` for this datasite until the stop signal.

    :param email: this datasite (default: as :func:`syftbox_flwr_client` resolves it).
    :param node_config_overrides: ``k=v ...`` strings, as ``flower-supernode --node-config``.
    :return: the stop signal's reason, or ``None`` if serving ended otherwise.
    """
    project_dir = Path(flower_project_dir).resolve()
    config = load_project_config(project_dir)
    app_name = config.require_app_name()
    identity = resolve_identity(config, RuntimeSettings.from_env(), email, server=False)
    client_app = load_component(config, "clientapp", ClientApp, project_dir)
    context = _context(
        run_config(config, run_config_overrides),
        node_config(config, identity, node_config_overrides),
        node_id=node_id_for(identity),
    )
    return syftbox_flwr_client(
        client_app, context, app_name, project_dir, email=identity, plugin_manager=plugin_manager
    )


def load_component(config: ProjectConfig, key: str, kind: type, project_dir: Path) -> Any:
    """The app ``[tool.flwr.app.components] key`` names, loaded from ``project_dir``.

    :raises ConfigError: it is not set, cannot be imported, or is no ``kind``.
    """
    reference = config.flower_components.get(key)
    if not reference:
        raise ConfigError(
            f'set {key} = "<module>:<attribute>" in [tool.flwr.app.components] of '
            f"{project_dir / 'pyproject.toml'}"
        )
    try:
        app = load_app(reference, ValueError, project_dir)
    except Exception as exc:  # user code: any import error is a configuration problem here
        raise ConfigError(f"cannot load {key} {reference!r}: {exc}") from exc
    if not isinstance(app, kind):
        raise ConfigError(f"{key} {reference!r} is a {type(app).__name__}, not a {kind.__name__}")
    return app


def _context(run: dict[str, Any], node: dict[str, Any], *, node_id: int) -> Context:
    return Context(run_id=0, node_id=node_id, node_config=node, state=RecordDict(), run_config=run)
