"""Discovery through the entry point, and the registry of named networks."""

from __future__ import annotations

import importlib.metadata
from pathlib import Path

import pytest

from syft_flwr.plugins import create_plugin_manager, get_transport_registry
from syft_flwr.testing.local import local_options
from syft_flwr.transport import ReplyStatus, TransportSettings
from syft_flwr_memory import MemoryNetwork, MemoryTransport

APP, EP = "flwr/demo", "messages"

# A timer or run loop that dies in its thread must fail the test, not just warn.
pytestmark = pytest.mark.filterwarnings("error::pytest.PytestUnhandledThreadExceptionWarning")


@pytest.fixture(autouse=True)
def clean_named_networks():
    MemoryNetwork.reset()
    yield
    MemoryNetwork.reset()


def test_entry_point_registers_memory() -> None:
    registry = get_transport_registry(create_plugin_manager())
    assert "memory" in registry
    transport = registry.create("memory", TransportSettings(identity="a@x.org"))
    assert isinstance(transport, MemoryTransport)
    transport.close()


def test_local_options_give_each_run_its_own_network(tmp_path: Path) -> None:
    first = MemoryTransport.local_options(tmp_path / "run-1")
    second = MemoryTransport.local_options(tmp_path / "run-2")
    assert first["network"] != second["network"]
    assert local_options("memory", tmp_path / "run-1", create_plugin_manager()) == first


def test_entry_point_belongs_to_this_distribution() -> None:
    (entry_point,) = importlib.metadata.entry_points(group="syft_flwr", name="memory")
    assert entry_point.dist is not None and entry_point.dist.name == "syft-flwr-memory"
    assert entry_point.value == "syft_flwr_memory.plugin"


def test_registry_names_the_distribution() -> None:
    info = get_transport_registry(create_plugin_manager()).get("memory")
    assert info.distribution == "syft-flwr-memory"
    assert info.transport_class is MemoryTransport
    assert info.description == MemoryTransport.description


def test_named_networks_connect_independent_transports(serving, wait_reply, later) -> None:
    alice = MemoryTransport(TransportSettings("alice@x.org", options={"network": "n1"}))
    bob = MemoryTransport(TransportSettings("bob@x.org", options={"network": "n1"}))
    stranger = MemoryTransport(TransportSettings("carol@x.org", options={"network": "n2"}))
    assert alice.network is bob.network is MemoryNetwork.named("n1")
    assert stranger.network is not alice.network
    bob.serve(APP, EP, lambda request: b"hi")
    with serving(bob):
        assert wait_reply(alice, alice.send("bob@x.org", APP, EP, b"", later())).body == b"hi"
        lonely = stranger.send("bob@x.org", APP, EP, b"", later(0.1))
        assert wait_reply(stranger, lonely).status is ReplyStatus.EXPIRED


def test_default_network_and_reset() -> None:
    first = MemoryTransport(TransportSettings("alice@x.org"))
    assert first.network is MemoryNetwork.named("default")
    first.send("bob@x.org", APP, EP, b"", 1e12)
    assert MemoryNetwork.named().inbox_size("bob@x.org") == 1
    MemoryNetwork.reset("default")
    fresh = MemoryNetwork.named()
    assert fresh is not first.network and fresh.inbox_size("bob@x.org") == 0
    fresh.close()
    assert MemoryNetwork.named() is not fresh
    MemoryNetwork.reset("never-created")


def test_key_documents_are_published_and_fetched_on_the_network() -> None:
    alice = MemoryTransport(TransportSettings(identity="a@x.org", options={"network": "k"}))
    bob = MemoryTransport(TransportSettings(identity="b@x.org", options={"network": "k"}))
    other = MemoryTransport(TransportSettings(identity="c@x.org", options={"network": "z"}))
    assert bob.fetch_key_document("a@x.org") is None
    alice.publish_key_document(b"{}")
    assert bob.fetch_key_document("a@x.org") == b"{}"
    assert other.fetch_key_document("a@x.org") is None
    for transport in (alice, bob, other):
        transport.close()
