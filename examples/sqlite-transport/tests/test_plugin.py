"""Discovery through the ``syft_flwr`` entry point, as syft-flwr itself finds the plugin."""

from __future__ import annotations

import importlib.metadata
from pathlib import Path

from syft_flwr.plugins import create_plugin_manager, get_transport_registry
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
    hook = create_plugin_manager().hook.syft_flwr_local_options
    assert hook(transport="sqlite", workdir=tmp_path) == {
        "database": str(tmp_path / "syft-flwr.sqlite3")
    }


def test_local_options_answer_only_for_sqlite(tmp_path: Path) -> None:
    from syft_flwr_sqlite.plugin import syft_flwr_local_options

    assert syft_flwr_local_options(transport="memory", workdir=tmp_path) is None
