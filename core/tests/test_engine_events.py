"""Engine events: delivery to listeners and to the ``syft_flwr_event`` hook, and fault isolation."""

from __future__ import annotations

import json
import logging
import time
from typing import Any

import pytest

from syft_flwr import events as ev
from syft_flwr.errors import EngineError
from syft_flwr.events import ENGINE_EVENTS, EngineEvent
from syft_flwr.hookspecs import hookimpl
from syft_flwr.plugins import create_plugin_manager, reset_plugin_manager
from syft_flwr.server.event_bus import EventBus


class EventPlugin:
    """Records every ``syft_flwr_event`` call."""

    def __init__(self) -> None:
        self.events: list[EngineEvent] = []

    @hookimpl
    def syft_flwr_event(self, event: EngineEvent) -> None:
        self.events.append(event)


class RaisingPlugin:
    @hookimpl
    def syft_flwr_event(self, event: EngineEvent) -> None:
        raise RuntimeError(f"plugin cannot handle {event.name}")


def make_bus(*plugins: object) -> EventBus:
    return EventBus(create_plugin_manager(load_entry_points=False, extra_plugins=plugins))


# --- delivery -------------------------------------------------------------------------------


def test_fire_returns_the_event() -> None:
    bus = make_bus()
    before = time.time()
    event = bus.fire(ev.ROUND_FINISHED, 7, round=2, num_rounds=3)
    assert event.name == "round_finished"
    assert event.run_id == 7
    assert before <= event.time <= time.time()
    assert dict(event.data) == {"round": 2, "num_rounds": 3}


def test_fire_delivers_to_the_hook() -> None:
    plugin = EventPlugin()
    bus = make_bus(plugin)
    event = bus.fire(ev.RUN_STARTED, 1, app_name="demo", datasites=["a@x.org"])
    assert plugin.events == [event]


def test_fire_delivers_to_listeners_in_subscription_order() -> None:
    bus = make_bus()
    received: list[tuple[str, EngineEvent]] = []
    bus.subscribe(lambda e: received.append(("first", e)))
    bus.subscribe(lambda e: received.append(("second", e)))
    one = bus.fire(ev.CLIENT_JOINED, 1, datasite="a@x.org")
    two = bus.fire(ev.CLIENT_LOST, 1, datasite="a@x.org")
    assert received == [("first", one), ("second", one), ("first", two), ("second", two)]


def test_listeners_and_plugins_see_the_same_event_object() -> None:
    plugin = EventPlugin()
    bus = make_bus(plugin)
    heard: list[EngineEvent] = []
    bus.subscribe(heard.append)
    event = bus.fire("custom_app_event", 3, detail="x")
    assert heard[0] is event and plugin.events[0] is event


def test_a_listener_only_hears_later_events() -> None:
    bus = make_bus()
    bus.fire(ev.RUN_STARTED, 1)
    heard: list[EngineEvent] = []
    bus.subscribe(heard.append)
    bus.fire(ev.RUN_FINISHED, 1)
    assert [e.name for e in heard] == ["run_finished"]


def test_a_listener_subscribed_during_delivery_starts_with_the_next_event() -> None:
    bus = make_bus()
    late: list[str] = []

    def subscribe_another(event: EngineEvent) -> None:
        if event.name == "first":
            bus.subscribe(lambda e: late.append(e.name))

    bus.subscribe(subscribe_another)
    bus.fire("first", 1)
    assert late == []
    bus.fire("second", 1)
    assert late == ["second"]


def test_several_plugins_each_receive_the_event() -> None:
    first, second = EventPlugin(), EventPlugin()
    bus = make_bus(first, second)
    event = bus.fire(ev.STOP_SIGNAL_SENT, 2, datasites=2)
    assert first.events == [event] and second.events == [event]


def test_application_event_names_are_allowed() -> None:
    plugin = EventPlugin()
    event = make_bus(plugin).fire("my_app.checkpoint", 5, step=10)
    assert event.name not in ENGINE_EVENTS
    assert plugin.events == [event]


def test_without_a_manager_the_process_wide_one_is_used() -> None:
    plugin = EventPlugin()
    reset_plugin_manager(create_plugin_manager(load_entry_points=False, extra_plugins=[plugin]))
    try:
        event = EventBus().fire(ev.RUN_RESUMED, 4, round=2)
    finally:
        reset_plugin_manager(None)
    assert plugin.events == [event]


def test_engine_event_names() -> None:
    assert {
        "run_started",
        "run_resumed",
        "run_finished",
        "run_interrupted",
        "round_started",
        "round_finished",
        "message_sent",
        "message_received",
        "message_failed",
        "client_joined",
        "client_lost",
        "stop_signal_sent",
    } == ENGINE_EVENTS
    assert set(ev.__all__) >= {"EngineEvent", "ENGINE_EVENTS"}


# --- fault isolation ------------------------------------------------------------------------


def test_a_raising_listener_is_logged_and_skipped(caplog: pytest.LogCaptureFixture) -> None:
    plugin = EventPlugin()
    bus = make_bus(plugin)
    heard: list[str] = []

    def broken(event: EngineEvent) -> None:
        raise ValueError("listener is broken")

    bus.subscribe(broken)
    bus.subscribe(lambda e: heard.append(e.name))
    with caplog.at_level(logging.ERROR, logger="syft_flwr.server.event_bus"):
        event = bus.fire(ev.ROUND_STARTED, 1, round=1)
    assert heard == ["round_started"]  # the next listener still ran
    assert plugin.events == [event]  # and so did the hook
    records = [r for r in caplog.records if r.name == "syft_flwr.server.event_bus"]
    assert len(records) == 1
    assert "an event listener raised on round_started" in records[0].getMessage()
    assert records[0].exc_info is not None
    assert isinstance(records[0].exc_info[1], ValueError)


def test_a_raising_hookimpl_is_logged_and_does_not_propagate(
    caplog: pytest.LogCaptureFixture,
) -> None:
    bus = make_bus(RaisingPlugin())
    heard: list[str] = []
    bus.subscribe(lambda e: heard.append(e.name))
    with caplog.at_level(logging.ERROR):
        event = bus.fire(ev.MESSAGE_FAILED, 1, datasite="a@x.org")
    assert event.name == "message_failed"
    assert heard == ["message_failed"]
    messages = [r.getMessage() for r in caplog.records if r.levelno >= logging.ERROR]
    assert any("raised on event message_failed" in m for m in messages)
    raised = [r.exc_info[1] for r in caplog.records if r.exc_info]
    assert any("plugin cannot handle message_failed" in str(exc) for exc in raised)


def test_the_bus_keeps_working_after_failures(caplog: pytest.LogCaptureFixture) -> None:
    bus = make_bus(RaisingPlugin())

    def broken(event: EngineEvent) -> None:
        raise RuntimeError("again")

    bus.subscribe(broken)
    with caplog.at_level(logging.ERROR):
        names = [bus.fire(f"event_{i}", 1).name for i in range(3)]
    assert names == ["event_0", "event_1", "event_2"]
    assert len([r for r in caplog.records if r.exc_info]) == 6  # 3 listener + 3 hook failures


def test_a_base_exception_in_a_listener_is_not_swallowed() -> None:
    """Only ``Exception`` is isolated: ``KeyboardInterrupt`` still stops the run."""
    bus = make_bus()

    def interrupt(event: EngineEvent) -> None:
        raise KeyboardInterrupt

    bus.subscribe(interrupt)
    with pytest.raises(KeyboardInterrupt):
        bus.fire(ev.RUN_STARTED, 1)


# --- validation -----------------------------------------------------------------------------


@pytest.mark.parametrize("name", ["", "   ", "\t\n", None, 3, b"bytes", ["run_started"]])
def test_a_name_that_is_not_a_non_empty_string_is_an_engine_error(name: Any) -> None:
    plugin = EventPlugin()
    bus = make_bus(plugin)
    heard: list[EngineEvent] = []
    bus.subscribe(heard.append)
    with pytest.raises(EngineError, match="an event name must be a non-empty string"):
        bus.fire(name, 1)
    assert heard == [] and plugin.events == []


# --- EngineEvent ----------------------------------------------------------------------------


def test_to_json_flattens_the_data() -> None:
    event = EngineEvent("round_finished", 9, 1234.5, {"round": 2, "datasites": ["a", "b"]})
    assert event.to_json() == {
        "name": "round_finished",
        "run_id": 9,
        "time": 1234.5,
        "round": 2,
        "datasites": ["a", "b"],
    }
    assert json.loads(json.dumps(event.to_json())) == event.to_json()


def test_to_json_without_data() -> None:
    assert EngineEvent("run_started", 1, 2.0).to_json() == {
        "name": "run_started",
        "run_id": 1,
        "time": 2.0,
    }


def test_events_are_immutable() -> None:
    event = EngineEvent("x", 1, 2.0)
    with pytest.raises(AttributeError):
        event.name = "y"  # type: ignore[misc]


def test_fired_data_becomes_the_json_line() -> None:
    event = make_bus().fire("x", 1, values=[1, 2], ok=True)
    assert event.to_json() == {
        "name": "x",
        "run_id": 1,
        "time": event.time,
        "values": [1, 2],
        "ok": True,
    }


def test_a_raising_plugin_does_not_hide_the_event_from_the_others() -> None:
    received: list[str] = []

    class Listening:
        @hookimpl
        def syft_flwr_event(self, event: EngineEvent) -> None:
            received.append(event.name)

    bus = make_bus(RaisingPlugin(), Listening())
    bus.fire(ev.RUN_STARTED, 1)
    assert received == ["run_started"]


@pytest.mark.parametrize("key", ["name", "run_id", "time"])
def test_event_data_cannot_overwrite_the_event_fields(key: str) -> None:
    with pytest.raises(EngineError, match=key):
        make_bus().fire("custom", 1, **{key: 1})
