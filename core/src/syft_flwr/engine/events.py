"""Deprecated path of :mod:`syft_flwr.events` (removed in syft-flwr 0.2.0)."""

from __future__ import annotations

from syft_flwr.engine import warn_moved
from syft_flwr.events import *  # noqa: F403 - the whole public surface, as it was
from syft_flwr.events import __all__ as _events_all
from syft_flwr.server.event_bus import EventBus

__all__ = [*_events_all, "EventBus"]

warn_moved(__name__, "syft_flwr.events (EventBus: syft_flwr.server.event_bus)")
