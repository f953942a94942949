"""Discovery through the ``syft_flwr`` entry point, as syft-flwr itself finds the plugin."""

from __future__ import annotations

import importlib.metadata
from pathlib import Path

import pytest
from syft_flwr.crypto.errors import KeyDocumentsUnsupportedError
from syft_flwr.plugins import create_plugin_manager, get_transport_registry
from syft_flwr.testing.local import local_options
from syft_flwr.transport import TransportSettings

from syft_flwr_sqlite import SqliteTransport


def test_the_entry_point_belongs_to_this_distribution() -> None:
    (entry_point,) = importlib.metadata.entry_points(group="syft_flwr", name="sqlite")
    assert entry_point.dist is not None and entry_point.dist.name == "syft-flwr-sqlite"
    assert entry_point.value == "syft_flwr_sqlite.plugin"


def test_the_registry_builds_the_transport(tmp_path: Path) -> None:
    registry = get_transport_registry(create_plugin_manager())
    info = registry.get("sqlite")
    assert (info.distribution, info.version) == ("syft-flwr-sqlite", "0.1.0")
    assert "SQLite" in info.description
    settings = TransportSettings("a@x.org", {"database": str(tmp_path / "db.sqlite3")})
    with registry.create("sqlite", settings) as transport:
        assert isinstance(transport, SqliteTransport)


def test_local_options_put_the_database_in_the_workdir(tmp_path: Path) -> None:
    assert local_options("sqlite", tmp_path, create_plugin_manager()) == {
        "database": str(tmp_path / "syft-flwr.sqlite3")
    }


def test_the_class_describes_itself_and_has_no_key_documents(tmp_path: Path) -> None:
    assert SqliteTransport.name == "sqlite"
    assert SqliteTransport.summary().startswith("Processes on one machine")
    settings = TransportSettings("a@x.org", {"database": str(tmp_path / "db.sqlite3")})
    with SqliteTransport(settings) as transport, pytest.raises(KeyDocumentsUnsupportedError):
        transport.publish_key_document(b"{}")
