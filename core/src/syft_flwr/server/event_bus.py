"""The engine's delivery of :class:`~syft_flwr.events.EngineEvent`: to local listeners (the
run's workspace) and, through the one dispatcher, to plugins.

The event classes and names live in the leaf module :mod:`syft_flwr.events`; this is only the
server's side of firing them.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from typing import Any

import pluggy

from syft_flwr.errors import EngineError
from syft_flwr.events import EngineEvent
from syft_flwr.plugins import fire_event

__all__ = ["EventBus"]

logger = logging.getLogger(__name__)

_RESERVED = frozenset({"name", "run_id", "time"})


class EventBus:
    """Delivers engine events to local listeners and, through the one dispatcher
    (:func:`syft_flwr.plugins.fire_event`), to the ``syft_flwr_event`` hook.

    A raising listener or hook implementation is logged and skipped: observers never break a
    run. The engine adds the workspace as a listener, so every event is also on disk.
    """

    def __init__(self, plugin_manager: pluggy.PluginManager | None = None) -> None:
        self._plugins = plugin_manager
        self._listeners: list[Callable[[EngineEvent], None]] = []

    def subscribe(self, listener: Callable[[EngineEvent], None]) -> None:
        """Call ``listener`` with every later event."""
        self._listeners.append(listener)

    def fire(self, name: str, run_id: int, /, **data: Any) -> EngineEvent:
        """Deliver an event named ``name`` to the listeners and the plugins, and return it.

        :raises EngineError: ``name`` is not a non-empty string, or ``data`` uses a reserved key.
        """
        event = self.record(name, run_id, **data)
        fire_event(event, self._plugins)
        return event

    def record(self, name: str, run_id: int, /, **data: Any) -> EngineEvent:
        """Deliver an event to the local listeners only: for a fact plugins already received
        as a lifecycle event (``stop_signal_sent``), so they do not see it twice.

        :raises EngineError: ``name`` is not a non-empty string, or ``data`` uses a reserved key.
        """
        if not isinstance(name, str) or not name.strip():
            raise EngineError(f"an event name must be a non-empty string, got {name!r}")
        clash = sorted(_RESERVED & set(data))
        if clash:
            raise EngineError(f"event data cannot use the reserved key(s) {', '.join(clash)}")
        event = EngineEvent(name, run_id, time.time(), dict(data))
        for listener in list(self._listeners):
            try:
                listener(event)
            except Exception:
                logger.exception("an event listener raised on %s; ignoring it", name)
        return event
