"""The one event channel: typed events, the dispatcher, and hook coverage (datasette-style).

The coverage tests fail when an event class is added without being documented in
``docs/plugins.md`` and fired somewhere in the core, or a hook without being called or derived
from an event (``tests/test_docs.py`` checks that every hook is documented and tested).
"""

from __future__ import annotations

import ast
import inspect
import json
import logging
import re
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from syft_flwr import events, hookspecs
from syft_flwr.events import (
    ENGINE_EVENTS,
    LIFECYCLE_EVENTS,
    EngineEvent,
    ExchangeFinished,
    ReplyPulled,
    ServerFinished,
    StopSignalReceived,
)
from syft_flwr.hookspecs import DEPRECATED_HOOKS, DERIVED_HOOKS, hookimpl
from syft_flwr.plugins import create_plugin_manager, fire_event

ROOT = Path(__file__).resolve().parents[2]
SOURCE = ROOT / "core" / "src" / "syft_flwr"
DOCS = (ROOT / "docs" / "plugins.md").read_text()


def hook_names() -> list[str]:
    return sorted(
        name
        for name, value in vars(hookspecs).items()
        if name.startswith("syft_flwr_") and callable(value)
    )


def source_text(*, excluding: tuple[str, ...] = ()) -> str:
    return "\n".join(
        path.read_text()
        for path in sorted(SOURCE.rglob("*.py"))
        if path.relative_to(SOURCE).as_posix() not in excluding
    )


# --- coverage ---------------------------------------------------------------------------------


@pytest.mark.parametrize("event_class", LIFECYCLE_EVENTS, ids=lambda c: c.__name__)
def test_every_lifecycle_event_is_documented_and_fired(event_class: type) -> None:
    assert f"`{event_class.__name__}`" in DOCS and f"`{event_class.name}`" in DOCS
    code = source_text(excluding=("events.py",))
    assert re.search(rf"\b{event_class.__name__}\(", code), f"nothing fires {event_class}"


@pytest.mark.parametrize("name", sorted(ENGINE_EVENTS))
def test_every_engine_event_is_documented_and_fired(name: str) -> None:
    assert f"`{name}`" in DOCS
    constant = name.upper()
    code = source_text(excluding=("events.py", "engine/events.py"))
    assert re.search(rf"\bev\.{constant}\b", code), f"the engine never fires {name}"


NO_DERIVED_HOOK = {events.ExchangeStarted, events.TransferProgress}
"""Events newer than the one channel: ``syft_flwr_event`` only, no hook of their own."""


def test_every_lifecycle_event_but_the_newer_ones_derives_a_hook() -> None:
    assert set(DERIVED_HOOKS) == set(LIFECYCLE_EVENTS) - NO_DERIVED_HOOK


def test_every_event_class_has_a_distinct_name() -> None:
    names = [c.name for c in LIFECYCLE_EVENTS]
    assert len(set(names)) == len(names)
    # one meaning per name: only stop_signal_sent is shared, and it reaches plugins once
    assert set(names) & ENGINE_EVENTS == {"stop_signal_sent"}
    assert "round_finished" not in names


@pytest.mark.parametrize("hook", hook_names())
def test_every_hook_is_called_or_derived(hook: str) -> None:
    """(That each is documented and exercised by a test is ``tests/test_docs.py``'s job.)"""
    derived = set(DERIVED_HOOKS.values())
    called = re.search(rf"\bhook\.{hook}\b|\"{hook}\"", source_text(excluding=("hookspecs.py",)))
    assert hook in derived or called, f"{hook} is neither called nor derived from an event"


@pytest.mark.parametrize("hook", sorted(DEPRECATED_HOOKS))
def test_every_deprecated_hook_is_documented_with_its_removal(hook: str) -> None:
    section = DOCS[DOCS.index("## Deprecated, removed in syft-flwr 0.2.0") :]
    assert f"`{hook}(" in section
    assert "Removed in syft-flwr 0.2.0" in inspect.getdoc(getattr(hookspecs, hook))


@pytest.mark.parametrize("event_class", list(DERIVED_HOOKS), ids=lambda c: c.__name__)
def test_each_derived_hook_takes_exactly_the_events_fields(event_class: type) -> None:
    fields = set(inspect.signature(event_class).parameters) - {"time"}
    hook = DERIVED_HOOKS[event_class]
    params = set(inspect.signature(getattr(hookspecs, hook)).parameters)
    assert params <= fields, f"{hook} wants {params - fields}"
    assert fields - params <= {"run_id"}, f"{hook} misses {fields - params}"


def test_the_events_module_is_a_leaf() -> None:
    tree = ast.parse((SOURCE / "events.py").read_text())
    imported = {
        node.module or "" for node in ast.walk(tree) if isinstance(node, ast.ImportFrom)
    } | {
        alias.name
        for node in ast.walk(tree)
        if isinstance(node, ast.Import)
        for alias in node.names
    }
    assert not {m for m in imported if m.startswith("syft_flwr")}, imported


# --- the dispatcher ---------------------------------------------------------------------------


class Recorder:
    def __init__(self, label: str, calls: list[str]) -> None:
        self.label, self.calls = label, calls

    @hookimpl
    def syft_flwr_event(self, event: events.Event) -> None:
        self.calls.append(f"{self.label}:event:{event.name}")

    @hookimpl
    def syft_flwr_stop_signal_received(self, datasite: str, reason: str) -> None:
        self.calls.append(f"{self.label}:hook:{datasite}:{reason}")


class Raising:
    @hookimpl
    def syft_flwr_event(self, event: events.Event) -> None:
        raise RuntimeError("observer bug in event")

    @hookimpl
    def syft_flwr_stop_signal_received(self, datasite: str, reason: str) -> None:
        raise RuntimeError("observer bug in hook")


def test_every_implementation_runs_in_isolation_and_the_hook_is_derived(
    caplog: pytest.LogCaptureFixture,
) -> None:
    calls: list[str] = []
    manager = create_plugin_manager(
        load_entry_points=False,
        extra_plugins=[Recorder("a", calls), Raising(), Recorder("b", calls)],
    )
    with caplog.at_level(logging.ERROR, logger="syft_flwr.plugins"):
        fire_event(StopSignalReceived(datasite="d@x.org", reason="done"), manager)
    # pluggy's order (last registered first), every implementation, the event before the hook
    assert calls == [
        "b:event:stop_signal_received",
        "a:event:stop_signal_received",
        "b:hook:d@x.org:done",
        "a:hook:d@x.org:done",
    ]
    logged = [r.getMessage() for r in caplog.records]
    assert len(logged) == 2
    assert "raised on event stop_signal_received (in syft_flwr_event)" in logged[0]
    assert "(in syft_flwr_stop_signal_received)" in logged[1]


def test_the_deprecated_alias_is_derived_from_exchange_finished() -> None:
    seen: list[tuple[int | None, str, int, int]] = []

    class Old:
        @hookimpl
        def syft_flwr_round_finished(self, run_id, group_id, replies, failures):  # type: ignore[no-untyped-def]
            seen.append((run_id, group_id, replies, failures))

    with pytest.warns(DeprecationWarning, match="syft_flwr_round_finished"):
        manager = create_plugin_manager(load_entry_points=False, extra_plugins=[Old()])
    fire_event(ExchangeFinished(run_id=3, group_id="2", replies=4, failures=1), manager)
    assert seen == [(3, "2", 4, 1)]


def test_engine_events_reach_only_syft_flwr_event() -> None:
    calls: list[str] = []
    manager = create_plugin_manager(load_entry_points=False, extra_plugins=[Recorder("a", calls)])
    fire_event(EngineEvent("round_finished", 1, 0.0, {"round": 1}), manager)
    assert calls == ["a:event:round_finished"]


# --- the events themselves --------------------------------------------------------------------


@given(
    run_id=st.integers(min_value=0, max_value=2**63 - 1),
    message_id=st.text(max_size=40),
    datasite=st.emails(),
    error_code=st.none() | st.integers(min_value=0, max_value=999),
)
def test_lifecycle_events_read_like_engine_events(
    run_id: int, message_id: str, datasite: str, error_code: int | None
) -> None:
    event = ReplyPulled(
        run_id=run_id, message_id=message_id, datasite=datasite, error_code=error_code
    )
    line = json.loads(json.dumps(event.to_json()))
    assert line == {
        "name": "reply_pulled",
        "run_id": run_id,
        "time": event.time,
        "message_id": message_id,
        "datasite": datasite,
        "error_code": error_code,
    }
    assert event.fields() == {"run_id": run_id, **dict(event.data)}


def test_an_error_is_kept_for_the_hook_and_made_text_for_json() -> None:
    error = ValueError("bad strategy")
    event = ServerFinished(run_id=1, error=error)
    assert event.fields()["error"] is error
    assert event.data == {"error": "bad strategy"}
    assert json.dumps(event.to_json())
