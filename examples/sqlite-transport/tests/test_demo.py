"""``syft-flwr demo --transport sqlite``: a real federation, one process per participant."""

from __future__ import annotations

import os
import re
import subprocess
import sys

DEMO_TIMEOUT = 120.0


def test_the_demo_trains_a_better_model_over_sqlite() -> None:
    command = [sys.executable, "-m", "syft_flwr", "demo", "--transport", "sqlite", "--rounds", "3"]
    environment = {**os.environ, "SYFT_FLWR_POLL_INTERVAL": "0.02"}
    done = subprocess.run(
        command, capture_output=True, text=True, timeout=DEMO_TIMEOUT, env=environment
    )
    assert done.returncode == 0, done.stdout + done.stderr
    final = re.search(r"final model: test loss ([\d.]+) \(initial ([\d.]+)\)", done.stdout)
    assert final is not None, done.stdout
    assert float(final[1]) < float(final[2])
