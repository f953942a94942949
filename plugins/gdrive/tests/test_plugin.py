"""Discovery through the entry point, the local-demo options, and the demo itself."""

from __future__ import annotations

import importlib.metadata
import time
from pathlib import Path

import pytest

from syft_flwr.cli import main as syft_flwr_main
from syft_flwr.demo.runner import run_local
from syft_flwr.plugins import create_plugin_manager, get_transport_registry
from syft_flwr.testing.helpers import eventually
from syft_flwr.transport import TransportSettings
from syft_flwr_gdrive import GDriveTransport


def test_entry_point_registers_gdrive() -> None:
    (entry_point,) = importlib.metadata.entry_points(group="syft_flwr", name="gdrive")
    assert entry_point.dist is not None and entry_point.dist.name == "syft-flwr-gdrive"
    info = get_transport_registry(create_plugin_manager()).get("gdrive")
    assert info.distribution == "syft-flwr-gdrive" and info.description


def test_local_options_start_a_fake_that_lives_as_long_as_the_workdir(tmp_path: Path) -> None:
    workdir = tmp_path / "run"
    workdir.mkdir()
    options = GDriveTransport.local_options(workdir)
    assert options["auth"] == "local" and options["api_root"].startswith("http://127.0.0.1:")
    registry = get_transport_registry(create_plugin_manager())
    transport = registry.create("gdrive", TransportSettings("someone@demo.example", options))
    assert isinstance(transport, GDriveTransport)
    assert transport.api.account_email() == "someone@demo.example"
    workdir.rmdir()

    def stopped() -> bool:
        try:
            transport.api.retrier.policy = type(transport.api.retrier.policy)(attempts=1)
            transport.api.account_email()
        except Exception:
            return True
        return False

    eventually(stopped, "the fake Drive stopping once the workdir is gone")
    transport.close()


@pytest.mark.slow
def test_run_local_trains_over_gdrive() -> None:
    started = time.monotonic()
    result = run_local("gdrive", num_datasites=2, num_rounds=2)
    assert result.final.test_loss < result.initial.test_loss
    assert set(result.stop_reasons.values()) == {"Server stopped"}
    assert not result.client_errors
    assert time.monotonic() - started < 30


@pytest.mark.slow
def test_syft_flwr_demo_command(capsys: pytest.CaptureFixture[str]) -> None:
    assert (
        syft_flwr_main(["demo", "--transport", "gdrive", "--datasites", "3", "--rounds", "2"]) == 0
    )
    out = capsys.readouterr().out
    assert "transport 'gdrive'" in out and "3/3 client" in out and "stopped cleanly" in out


def test_login_console_script_is_installed() -> None:
    (script,) = importlib.metadata.entry_points(group="console_scripts", name="syft-flwr-gdrive")
    assert script.value == "syft_flwr_gdrive.cli:main"
