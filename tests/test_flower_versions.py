"""The Flower versions syft-flwr-core supports: tested at both ends of its range, and one beyond.

The core declares a range (``flwr>=1.41,<1.43`` in ``core/pyproject.toml``), not a pin, so it
installs next to any Flower in it. The whole suite runs on the Flower of this environment (on
a fresh machine: the newest release the range admits, 1.42.0 today), which the first test
checks. The others run the demo (a real FedAvg run: a ``ServerApp`` and ``ClientApp``s of the
message API, over the memory transport) in environments of their own, with this checkout's
core and memory plugin installed editable: on the oldest release of the range, 1.41.0, and on
Flower's nightly preview of the next release (``flwr-nightly``, pinned to one build), so a
break in 1.43 shows before it is released.
"""

from __future__ import annotations

import subprocess
import tomllib
from importlib.metadata import requires, version
from pathlib import Path

import pytest
from packaging.requirements import Requirement

from syft_flwr.testing.peer_venvs import peer_venv

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parents[1]
OLDEST = "flwr==1.41.0"
NIGHTLY = "flwr-nightly==1.43.0.dev20261026"


def declared_flower() -> Requirement:
    (flower,) = [
        Requirement(spec)
        for spec in requires("syft-flwr-core") or []
        if Requirement(spec).name == "flwr"
    ]
    return flower


def test_the_suite_runs_on_a_flower_the_core_declares() -> None:
    declared = declared_flower()
    operators = {spec.operator for spec in declared.specifier}
    assert operators and not operators & {"==", "==="}, f"a range, not a pin: {declared}"
    assert declared.specifier.contains(version("flwr")), (version("flwr"), str(declared))


@pytest.mark.parametrize("flower", [OLDEST, NIGHTLY], ids=["oldest", "nightly"])
def test_the_demo_runs_on(flower: str) -> None:
    core = tomllib.loads((ROOT / "core" / "pyproject.toml").read_text())["project"]
    others = [spec for spec in core["dependencies"] if Requirement(spec).name != "flwr"]
    venv = peer_venv(
        f"flower-{Requirement(flower).specifier}".replace("==", ""),
        [flower, *others],
        no_deps=["-e", str(ROOT / "core"), "-e", str(ROOT / "plugins" / "memory")],
    )
    probe = subprocess.run(
        [
            str(venv.python),
            "-c",
            "import flwr, syft_flwr; print(flwr.__version__, syft_flwr.__file__)",
        ],
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    )
    installed, module = probe.stdout.split()
    assert installed == str(Requirement(flower).specifier).removeprefix("==")
    assert Path(module).is_relative_to(ROOT / "core" / "src"), "not this checkout's core"
    demo = subprocess.run(
        [str(venv.bin("syft-flwr")), "demo", "--rounds", "2", "--datasites", "2"],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert demo.returncode == 0, demo.stdout + demo.stderr
    assert "round  2" in demo.stdout and "2/2 client threads stopped cleanly" in demo.stdout
