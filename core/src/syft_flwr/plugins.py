"""Loading plugins: the one piece of global state syft-flwr keeps.

Load order follows tox: names blocked by ``SYFT_FLWR_DISABLED_PLUGINS`` are skipped, then
the entry points of the ``syft_flwr`` group are loaded (only those named in
``SYFT_FLWR_PLUGINS`` when that variable is set), then the core's built-in plugin, then
``check_pending()`` so that a misspelt hook implementation fails at once.
"""

from __future__ import annotations

import importlib.metadata
import logging
import os
import threading
from collections.abc import Iterable
from typing import Any

import pluggy

from syft_flwr import hookspecs
from syft_flwr.errors import PluginError
from syft_flwr.hookspecs import ENTRY_POINT_GROUP
from syft_flwr.registry import TransportRegistry

__all__ = [
    "ALLOW_ENV",
    "BLOCK_ENV",
    "ENTRY_POINT_GROUP",
    "create_plugin_manager",
    "get_plugin_manager",
    "get_transport_registry",
    "notify",
    "reset_plugin_manager",
]

logger = logging.getLogger(__name__)

ALLOW_ENV = "SYFT_FLWR_PLUGINS"
BLOCK_ENV = "SYFT_FLWR_DISABLED_PLUGINS"

_lock = threading.Lock()
_manager: pluggy.PluginManager | None = None


def _names_from_env(var: str) -> set[str] | None:
    raw = os.environ.get(var)
    if raw is None:
        return None
    return {part.strip() for part in raw.split(",") if part.strip()}


def create_plugin_manager(
    *, load_entry_points: bool = True, extra_plugins: Iterable[object] = ()
) -> pluggy.PluginManager:
    """Build a fresh plugin manager.

    :param load_entry_points: load installed plugins from the ``syft_flwr`` entry-point group.
    :param extra_plugins: plugin objects (modules or instances) to register after the entry
        points, for tests and embedding applications.
    :raises PluginError: a plugin fails to import or implements an undeclared hook.
    """
    manager = pluggy.PluginManager(hookspecs.PROJECT_NAME)
    manager.add_hookspecs(hookspecs)
    blocked = _names_from_env(BLOCK_ENV) or set()
    if load_entry_points:
        _load_entry_points(manager, allowed=_names_from_env(ALLOW_ENV), blocked=blocked)
    for plugin in extra_plugins:
        manager.register(plugin)
    from syft_flwr import builtin_plugin

    manager.register(builtin_plugin, name="syft_flwr.builtin")
    try:
        manager.check_pending()
    except pluggy.PluginValidationError as exc:
        raise PluginError(f"a plugin implements an unknown hook: {exc}") from exc
    return manager


def _load_entry_points(
    manager: pluggy.PluginManager, *, allowed: set[str] | None, blocked: set[str]
) -> None:
    for entry_point in importlib.metadata.entry_points(group=ENTRY_POINT_GROUP):
        name = entry_point.name
        if name in blocked or (allowed is not None and name not in allowed):
            logger.debug("plugin %s skipped by %s/%s", name, ALLOW_ENV, BLOCK_ENV)
            continue
        if manager.get_plugin(name) is not None:
            continue
        try:
            plugin = entry_point.load()
        except Exception as exc:
            dist = entry_point.dist.name if entry_point.dist else "?"
            raise PluginError(
                f"plugin {name!r} from distribution {dist!r} failed to load: {exc}. "
                f"Reinstall it, or skip it with {BLOCK_ENV}={name}"
            ) from exc
        manager.register(plugin, name=name)
        logger.debug("loaded plugin %s from %s", name, entry_point.value)


def get_plugin_manager() -> pluggy.PluginManager:
    """The process-wide plugin manager, created on first use (never at import)."""
    global _manager
    with _lock:
        if _manager is None:
            _manager = create_plugin_manager()
        return _manager


def reset_plugin_manager(manager: pluggy.PluginManager | None = None) -> None:
    """Replace (or drop, with ``None``) the process-wide manager; for tests and embedders."""
    global _manager
    with _lock:
        _manager = manager


def get_transport_registry(manager: pluggy.PluginManager | None = None) -> TransportRegistry:
    """Collect every plugin's transports into a new registry."""
    registry = TransportRegistry()
    (manager or get_plugin_manager()).hook.syft_flwr_register_transports(registry=registry)
    return registry


def notify(hook_name: str, manager: pluggy.PluginManager | None = None, **kwargs: Any) -> None:
    """Call an event hook; an exception in an observer is logged, never propagated."""
    hook = getattr((manager or get_plugin_manager()).hook, hook_name)
    try:
        hook(**kwargs)
    except Exception:
        logger.exception("a %s hook implementation raised; ignoring it", hook_name)
