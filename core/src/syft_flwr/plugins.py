"""Loading plugins: the one piece of global state syft-flwr keeps.

Load order follows tox: names blocked by ``SYFT_FLWR_DISABLED_PLUGINS`` are skipped, then
the entry points of the ``syft_flwr`` group are loaded (only those named in
``SYFT_FLWR_PLUGINS`` when that variable is set), then the core's built-in plugin, then
``check_pending()`` so that a misspelt hook implementation fails at once.

The manager warns once per plugin that implements a deprecated hook
(:data:`~syft_flwr.hookspecs.DEPRECATED_HOOKS`), when the plugin is registered, and
:func:`fire_event` is the one event dispatcher.
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
from syft_flwr.deprecation import DeprecationLog
from syft_flwr.errors import PluginError
from syft_flwr.events import Event, LifecycleEvent
from syft_flwr.hookspecs import DEPRECATED_HOOKS, DERIVED_HOOKS
from syft_flwr.registry import ENTRY_POINT_GROUP, TransportRegistry

__all__ = [
    "ALLOW_ENV",
    "BLOCK_ENV",
    "ENTRY_POINT_GROUP",
    "PluginManager",
    "create_plugin_manager",
    "deprecations_of",
    "fire_event",
    "get_plugin_manager",
    "get_transport_registry",
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


class PluginManager(pluggy.PluginManager):
    """syft-flwr's plugin manager: pluggy's, plus a log that warns once per deprecated use."""

    def __init__(self) -> None:
        super().__init__(hookspecs.PROJECT_NAME)
        self.deprecations = DeprecationLog()
        self.add_hookspecs(hookspecs)

    def register(self, plugin: object, name: str | None = None) -> str | None:
        """Register ``plugin``; warn once for each deprecated hook it implements."""
        registered = super().register(plugin, name)
        for caller in self.get_hookcallers(plugin) or ():
            replacement = DEPRECATED_HOOKS.get(caller.name)
            if replacement is not None:
                who = _describe(plugin, registered)
                impls = [impl for impl in caller.get_hookimpls() if impl.plugin is plugin]
                self.deprecations.warn(
                    (who, caller.name),
                    f"plugin {who!r} implements the hook {caller.name}; {replacement}",
                    origin=impls[0].function if impls else None,
                )
        return registered


def _describe(plugin: object, name: str | None) -> str:
    """A plugin's name for a message: its module, or its class for an instance."""
    module = getattr(plugin, "__name__", None)
    if isinstance(module, str):
        return module
    kind = type(plugin)
    return f"{kind.__module__}.{kind.__qualname__}" if name is None or name.isdigit() else name


def deprecations_of(manager: pluggy.PluginManager) -> DeprecationLog | None:
    """The manager's warn-once log (``None`` for a plain pluggy manager)."""
    return manager.deprecations if isinstance(manager, PluginManager) else None


def create_plugin_manager(
    *, load_entry_points: bool = True, extra_plugins: Iterable[object] = ()
) -> pluggy.PluginManager:
    """Build a fresh plugin manager.

    :param load_entry_points: load installed plugins from the ``syft_flwr`` entry-point group.
    :param extra_plugins: plugin objects (modules or instances) to register after the entry
        points, for tests and embedding applications.
    :raises PluginError: a plugin fails to import or implements an undeclared hook.
    """
    manager = PluginManager()
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
    manager = manager or get_plugin_manager()
    registry = TransportRegistry(deprecations_of(manager))
    manager.hook.syft_flwr_register_transports(registry=registry)
    return registry


def fire_event(event: Event, manager: pluggy.PluginManager | None = None) -> None:
    """Deliver ``event`` to every ``syft_flwr_event`` implementation, then to the lifecycle
    hook derived from it (:data:`~syft_flwr.hookspecs.DERIVED_HOOKS`), with its fields.

    Each implementation is called on its own, in pluggy's order: one that raises is logged
    and skipped, so a faulty observer neither breaks the run nor hides the event from the
    others (a plain pluggy call would stop at the first exception).
    """
    manager = manager or get_plugin_manager()
    _call_each(manager, "syft_flwr_event", {"event": event}, event.name)
    if isinstance(event, LifecycleEvent) and type(event) in DERIVED_HOOKS:
        _call_each(manager, DERIVED_HOOKS[type(event)], event.fields(), event.name)


def _call_each(
    manager: pluggy.PluginManager, hook_name: str, kwargs: dict[str, Any], event_name: str
) -> None:
    for impl in reversed(getattr(manager.hook, hook_name).get_hookimpls()):
        if impl.hookwrapper or impl.wrapper:
            logger.warning(
                "plugin %s wraps the event hook %s, which observers cannot do; skipping it",
                impl.plugin_name,
                hook_name,
            )
            continue
        try:
            impl.function(**{arg: kwargs[arg] for arg in impl.argnames})
        except Exception:
            logger.exception(
                "plugin %s raised on event %s (in %s); ignoring it",
                impl.plugin_name,
                event_name,
                hook_name,
            )
