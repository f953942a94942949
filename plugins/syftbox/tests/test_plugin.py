"""Discovery through the entry point, local options, and the demo over syftbox."""

from __future__ import annotations

import importlib.metadata
from pathlib import Path

from syft_flwr.demo.runner import run_local
from syft_flwr.plugins import create_plugin_manager, get_transport_registry
from syft_flwr.testing.local import local_options
from syft_flwr.transport import TransportSettings
from syft_flwr_syftbox import SyftBoxTransport


def test_entry_point_registers_syftbox(tmp_path: Path) -> None:
    (entry_point,) = importlib.metadata.entry_points(group="syft_flwr", name="syftbox")
    assert entry_point.dist is not None and entry_point.dist.name == "syft-flwr-syftbox"
    assert entry_point.value == "syft_flwr_syftbox.plugin"
    manager = create_plugin_manager()
    info = get_transport_registry(manager).get("syftbox")
    assert info.distribution == "syft-flwr-syftbox" and info.description
    assert info.transport_class is SyftBoxTransport
    options = local_options("syftbox", tmp_path, manager)
    transport = get_transport_registry(manager).create(
        "syftbox", TransportSettings("a@x.org", options)
    )
    assert isinstance(transport, SyftBoxTransport)
    transport.close()


def test_local_options_make_a_fresh_folder(tmp_path: Path) -> None:
    options = SyftBoxTransport.local_options(tmp_path)
    assert options == {"data_dir": str(tmp_path / "SyftBox"), "key_dir": str(tmp_path / "keys")}
    assert (tmp_path / "SyftBox" / "datasites").is_dir()


def test_demo_runs_over_syftbox() -> None:
    result = run_local("syftbox", num_datasites=3, num_rounds=2)
    assert [(r.clients, r.failures) for r in result.rounds[1:]] == [(3, 0), (3, 0)]
    assert result.final.test_loss < result.initial.test_loss
    assert not result.client_errors and len(result.stop_reasons) == 3
