"""Discovery of the memory transport through its installed distribution's entry point."""

from __future__ import annotations

import importlib.metadata

import pytest

from syft_flwr.errors import UnknownTransportError
from syft_flwr.plugins import ALLOW_ENV, BLOCK_ENV, create_plugin_manager, get_transport_registry
from syft_flwr.transport import TransportSettings


def test_memory_entry_point_belongs_to_its_distribution():
    entry_points = {ep.name: ep for ep in importlib.metadata.entry_points(group="syft_flwr")}
    assert "memory" in entry_points
    assert entry_points["memory"].dist.name == "syft-flwr-memory"


def test_memory_transport_is_registered_through_the_entry_point():
    registry = get_transport_registry(create_plugin_manager())
    info = registry.get("memory")
    assert info.distribution == "syft-flwr-memory"
    assert info.version == importlib.metadata.version("syft-flwr-memory")
    transport = registry.create("memory", TransportSettings(identity="a@x.org"))
    try:
        assert transport.capabilities.notifies
    finally:
        transport.close()


def test_blocklist_hides_an_installed_plugin(monkeypatch):
    monkeypatch.setenv(BLOCK_ENV, "memory")
    registry = get_transport_registry(create_plugin_manager())
    with pytest.raises(UnknownTransportError, match="pip install syft-flwr-memory"):
        registry.get("memory")


def test_allowlist_loads_only_named_plugins(monkeypatch):
    monkeypatch.setenv(ALLOW_ENV, "")
    assert "memory" not in get_transport_registry(create_plugin_manager()).names()
    monkeypatch.setenv(ALLOW_ENV, "memory")
    assert "memory" in get_transport_registry(create_plugin_manager()).names()
