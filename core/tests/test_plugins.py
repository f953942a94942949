"""The plugin manager and the transport registry, independent of what is installed."""

from __future__ import annotations

import subprocess
import sys

import pytest

from syft_flwr.deprecation import SyftFlwrDeprecationWarning
from syft_flwr.errors import PluginError, UnknownTransportError
from syft_flwr.events import ServerStarted
from syft_flwr.hookspecs import hookimpl
from syft_flwr.plugins import (
    create_plugin_manager,
    fire_event,
    get_plugin_manager,
    get_transport_registry,
    reset_plugin_manager,
)
from syft_flwr.registry import TransportRegistry
from syft_flwr.transport import Transport, TransportSettings


class NullTransport(Transport):
    """A transport that carries nothing (used to test registration only)."""

    name = "null"
    capabilities = property(lambda self: None)  # type: ignore[assignment]

    def send(self, datasite, app, endpoint, body, expires_at):  # pragma: no cover - unused
        raise NotImplementedError

    def poll(self, future_id):  # pragma: no cover - unused
        return None

    def forget(self, future_id):  # pragma: no cover - unused
        pass

    def serve(self, app, endpoint, handler):  # pragma: no cover - unused
        pass

    def run(self):  # pragma: no cover - unused
        pass

    def stop(self):
        pass


class NullPlugin:
    @hookimpl
    def syft_flwr_register_transports(self, registry: TransportRegistry) -> None:
        registry.register(NullTransport)


def test_no_entry_points_means_no_transports():
    manager = create_plugin_manager(load_entry_points=False)
    assert get_transport_registry(manager).names() == []


def test_registered_plugin_provides_its_transport():
    manager = create_plugin_manager(load_entry_points=False, extra_plugins=[NullPlugin()])
    registry = get_transport_registry(manager)
    assert registry.names() == ["null"]
    transport = registry.create("null", TransportSettings(identity="a@b.org"))
    assert isinstance(transport, NullTransport)
    assert transport.identity == "a@b.org"


def test_unknown_transport_lists_installed_and_names_the_distribution():
    manager = create_plugin_manager(load_entry_points=False, extra_plugins=[NullPlugin()])
    registry = get_transport_registry(manager)
    with pytest.raises(UnknownTransportError) as info:
        registry.get("syftbox")
    message = str(info.value)
    assert "installed transports: null" in message
    assert "pip install syft-flwr-syftbox" in message
    with pytest.raises(UnknownTransportError, match="syft-flwr-carrier-pigeon"):
        registry.get("carrier-pigeon")


def test_misspelt_hook_fails_loudly():
    class Misspelt:
        @hookimpl
        def syft_flwr_register_transport(self, registry):  # missing the final "s"
            pass

    with pytest.raises(PluginError, match="unknown hook"):
        create_plugin_manager(load_entry_points=False, extra_plugins=[Misspelt()])


def test_the_registry_reads_name_and_description_from_the_class():
    class Described(NullTransport):
        """Docstring line (not shown: the description wins)."""

        name = "described"
        description = "An explicit description."

    class Undescribed(NullTransport):
        """First docstring line.

        More text.
        """

        name = "undescribed"

    registry = TransportRegistry()
    registry.register(Described)
    registry.register(Undescribed)
    registry.register(NullTransport)
    assert registry.get("described").description == "An explicit description."
    assert registry.get("undescribed").description == "First docstring line."
    assert registry.get("null").description.startswith("A transport that carries nothing")
    assert registry.get("described").transport_class is Described
    assert isinstance(registry.create("described", TransportSettings("a@b.org")), Described)


def test_registering_the_same_class_twice_is_harmless():
    registry = TransportRegistry()
    registry.register(NullTransport)
    registry.register(NullTransport)
    assert registry.names() == ["null"]


def test_duplicate_transport_name_from_two_classes_is_an_error():
    class OtherNull(NullTransport):
        name = "null"

    class Other:
        @hookimpl
        def syft_flwr_register_transports(self, registry):
            registry.register(OtherNull)

    manager = create_plugin_manager(load_entry_points=False, extra_plugins=[NullPlugin(), Other()])
    with pytest.raises(PluginError, match="registered twice"):
        get_transport_registry(manager)


@pytest.mark.parametrize("name", ["Upper", "has space", "../x", "a" * 80])
def test_invalid_transport_names_are_rejected(name):
    bad = type("Bad", (NullTransport,), {"name": name})
    with pytest.raises(PluginError, match="invalid"):
        TransportRegistry().register(bad)


def test_a_class_without_a_name_is_rejected_with_the_fix():
    nameless = type("Nameless", (NullTransport,), {"name": ""})
    with pytest.raises(PluginError, match=r"Nameless has no name: set the class attribute"):
        TransportRegistry().register(nameless)


@pytest.mark.parametrize("thing", [object(), object, lambda settings: None])
def test_only_transport_classes_can_be_registered(thing):
    with pytest.raises(PluginError, match=r"pass a syft_flwr\.transport\.Transport subclass"):
        TransportRegistry().register(thing)


def test_a_class_takes_no_extra_registration_arguments():
    with pytest.raises(PluginError, match="set its `description` class attribute"):
        TransportRegistry().register(NullTransport, description="x")  # type: ignore[call-overload]


def test_the_deprecated_name_and_factory_form_still_registers_and_warns_once():
    registry = TransportRegistry()
    with pytest.warns(SyftFlwrDeprecationWarning) as warned:
        registry.register("old", lambda settings: NullTransport(settings), description="Old.")
        registry.register("old2", NullTransport)
    messages = [str(w.message) for w in warned]
    assert len(messages) == 2
    assert "registry.register(TheTransportClass)" in messages[0]
    assert "removed in syft-flwr 0.2.0" in messages[0]
    assert registry.get("old").description == "Old." and registry.get("old").transport_class is None
    assert registry.get("old2").transport_class is NullTransport
    assert isinstance(registry.create("old", TransportSettings("a@b.org")), NullTransport)


@pytest.mark.parametrize("name", ["", "Upper", "../x"])
def test_the_deprecated_form_validates_names_as_before(name):
    with pytest.warns(SyftFlwrDeprecationWarning), pytest.raises(PluginError, match="invalid"):
        TransportRegistry().register(name, NullTransport)


def test_a_deprecated_factory_must_return_a_transport():
    registry = TransportRegistry()
    with pytest.warns(SyftFlwrDeprecationWarning):
        registry.register("bad", lambda settings: object())
    with pytest.raises(PluginError, match=r"not a syft_flwr\.transport\.Transport"):
        registry.create("bad", TransportSettings(identity="a@b.org"))


def test_faulty_event_observer_does_not_propagate(caplog):
    class Faulty:
        @hookimpl
        def syft_flwr_server_started(self, run_id, app_name, datasites):
            raise RuntimeError("observer bug")

    manager = create_plugin_manager(load_entry_points=False, extra_plugins=[Faulty()])
    fire_event(ServerStarted(run_id=1, app_name="x", datasites=[]), manager)
    assert "observer bug" in caplog.text


def test_global_manager_is_created_lazily_and_resettable():
    custom = create_plugin_manager(load_entry_points=False)
    reset_plugin_manager(custom)
    try:
        assert get_plugin_manager() is custom
    finally:
        reset_plugin_manager(None)
    assert get_plugin_manager() is not custom
    reset_plugin_manager(None)


def test_importing_the_package_registers_nothing():
    code = (
        "import syft_flwr, syft_flwr.fl_orchestrator, syft_flwr.plugins as p; "
        "assert p._manager is None, 'a plugin manager was created at import'"
    )
    subprocess.run([sys.executable, "-c", code], check=True, timeout=60)
