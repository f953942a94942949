"""Every documented entry point imports on a fresh interpreter, whatever is imported first.

An import cycle only shows when a module is the first one imported (the README's
``from syft_flwr.server.engine import ServerEngine`` once failed that way), so each
entry point is imported in a process of its own.
"""

from __future__ import annotations

import subprocess
import sys

import pytest

ENTRY_POINTS = [
    "from syft_flwr.server.engine import ServerEngine",
    "from syft_flwr.fl_orchestrator import syftbox_flwr_server, syftbox_flwr_client",
    "from syft_flwr.grid.syft_grid import SyftGrid",
    "from syft_flwr.client.runner import ClientRunner",
    "from syft_flwr.services.auxiliary import AuxSender",
    "from syft_flwr.server.resume import ResumableServer",
    "from syft_flwr.testing.transport_suite import TransportSuite",
    "from syft_flwr.crypto import SecureChannel",
    "import syft_flwr.cli",
]


@pytest.mark.parametrize("statement", ENTRY_POINTS)
def test_entry_point_imports_first(statement: str) -> None:
    result = subprocess.run(
        [sys.executable, "-c", statement], capture_output=True, text=True, timeout=120
    )
    assert result.returncode == 0, result.stderr
