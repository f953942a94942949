"""Engine events: what a run did, for plugins (the ``syft_flwr_event`` hook) and the workspace.

Every event has a name, the run it belongs to, when it happened and a small JSON-friendly
``data`` mapping. The names below are the ones the engine fires itself; applications may fire
their own names through :meth:`~syft_flwr.engine.server_engine.ServerEngine.fire_event`.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import pluggy

from syft_flwr.errors import EngineError
from syft_flwr.plugins import get_plugin_manager

__all__ = [
    "CLIENT_JOINED",
    "CLIENT_LOST",
    "ENGINE_EVENTS",
    "MESSAGE_FAILED",
    "MESSAGE_RECEIVED",
    "MESSAGE_SENT",
    "ROUND_FINISHED",
    "ROUND_STARTED",
    "RUN_FINISHED",
    "RUN_INTERRUPTED",
    "RUN_RESUMED",
    "RUN_STARTED",
    "STOP_SIGNAL_SENT",
    "EngineEvent",
    "EventBus",
]

logger = logging.getLogger(__name__)

RUN_STARTED = "run_started"
RUN_RESUMED = "run_resumed"
RUN_FINISHED = "run_finished"
RUN_INTERRUPTED = "run_interrupted"
ROUND_STARTED = "round_started"
ROUND_FINISHED = "round_finished"
MESSAGE_SENT = "message_sent"
MESSAGE_RECEIVED = "message_received"
MESSAGE_FAILED = "message_failed"
CLIENT_JOINED = "client_joined"
CLIENT_LOST = "client_lost"
STOP_SIGNAL_SENT = "stop_signal_sent"

ENGINE_EVENTS = frozenset(
    {
        RUN_STARTED,
        RUN_RESUMED,
        RUN_FINISHED,
        RUN_INTERRUPTED,
        ROUND_STARTED,
        ROUND_FINISHED,
        MESSAGE_SENT,
        MESSAGE_RECEIVED,
        MESSAGE_FAILED,
        CLIENT_JOINED,
        CLIENT_LOST,
        STOP_SIGNAL_SENT,
    }
)
"""The names the engine fires itself."""

_RESERVED = frozenset({"name", "run_id", "time"})


@dataclass(frozen=True)
class EngineEvent:
    """One thing that happened in a run.

    :param name: what happened, e.g. ``"round_finished"``.
    :param run_id: the run it happened in.
    :param time: when, as a Unix timestamp.
    :param data: details, JSON-friendly (names, numbers, strings).
    """

    name: str
    run_id: int
    time: float
    data: Mapping[str, Any] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        """The event as one line of the workspace's ``events.jsonl``."""
        return {"name": self.name, "run_id": self.run_id, "time": self.time, **self.data}


class EventBus:
    """Delivers events to the ``syft_flwr_event`` hook and to local listeners.

    A raising hook implementation or listener is logged and skipped: observers never break a
    run. The engine adds the workspace as a listener, so every event is also on disk.
    """

    def __init__(self, plugin_manager: pluggy.PluginManager | None = None) -> None:
        self._plugins = plugin_manager
        self._listeners: list[Callable[[EngineEvent], None]] = []

    def subscribe(self, listener: Callable[[EngineEvent], None]) -> None:
        """Call ``listener`` with every later event."""
        self._listeners.append(listener)

    def fire(self, name: str, run_id: int, /, **data: Any) -> EngineEvent:
        """Deliver an event named ``name`` and return it.

        :raises EngineError: ``name`` is not a non-empty string.
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
        # each implementation on its own: one raising observer must not hide the event from
        # the others (a plain hook call stops at the first exception)
        manager = self._plugins or get_plugin_manager()
        for impl in manager.hook.syft_flwr_event.get_hookimpls():
            try:
                impl.function(event=event)
            except Exception:
                logger.exception(
                    "plugin %s raised on event %s; ignoring it", impl.plugin_name, name
                )
        return event
