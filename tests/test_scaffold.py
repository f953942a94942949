"""``syft-flwr plugin new`` writes a package that installs, is discovered, and runs the kit."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from syft_flwr.cli import main
from syft_flwr.errors import ConfigError
from syft_flwr.scaffold import PluginNames, create_plugin_package

pytestmark = pytest.mark.slow


def test_names_are_derived_from_the_transport_name():
    names = PluginNames.from_transport("carrier-pigeon")
    assert names.distribution == "syft-flwr-carrier-pigeon"
    assert names.package == "syft_flwr_carrier_pigeon"
    assert names.class_name == "CarrierPigeonTransport"


@pytest.mark.parametrize("name", ["", "Pigeon", "pi geon", "../x", "-x", "x-"])
def test_invalid_names_are_refused(name, tmp_path):
    with pytest.raises(ConfigError, match="invalid"):
        create_plugin_package(name, tmp_path / "out")


def test_existing_directory_is_not_overwritten(tmp_path):
    (tmp_path / "keep.txt").write_text("mine")
    with pytest.raises(ConfigError, match="not empty"):
        create_plugin_package("pigeon", tmp_path)
    assert (tmp_path / "keep.txt").read_text() == "mine"


def test_scaffold_installs_registers_and_fails_the_kit_with_instructions(tmp_path, capsys):
    package_dir = tmp_path / "syft-flwr-pigeon"
    assert main(["plugin", "new", "pigeon", "--dir", str(package_dir)]) == 0
    assert "created" in capsys.readouterr().out
    target = tmp_path / "site"
    subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "install",
            "--quiet",
            "--no-deps",
            "--no-build-isolation",
            "--target",
            str(target),
            str(package_dir),
        ],
        check=True,
        timeout=300,
        capture_output=True,
    )
    env = {**os.environ, "PYTHONPATH": str(target)}
    listing = subprocess.run(
        [sys.executable, "-m", "syft_flwr", "transports"],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    )
    assert "pigeon" in listing.stdout and "syft-flwr-pigeon" in listing.stdout
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "pytest",
            "-q",
            "-p",
            "no:cacheprovider",
            "-k",
            "request_reaches_handler or unknown_future or stop_before_run",
            str(package_dir / "tests"),
        ],
        cwd=package_dir,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    output = result.stdout + result.stderr
    assert result.returncode == 1, output
    assert "NotImplementedError: PigeonTransport.serve: remember `handler`" in output
    assert "NotImplementedError: PigeonTransport.poll: return the Reply" in output
    assert "3 failed" in output
