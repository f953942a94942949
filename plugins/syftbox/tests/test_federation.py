"""The process federation of the interoperability tests and ``bench/round.py``."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from syft_flwr_syftbox.testing import federation as federation_module
from syft_flwr_syftbox.testing.federation import ProcessFederation

AGGREGATOR = "server@test.org"


class _Started:
    """What ``subprocess.Popen`` gives back, for a party that is never really started."""

    def __init__(self, command: list[str], **kwargs: Any) -> None:
        self.command, self.env = command, kwargs["env"]

    def poll(self) -> int:
        return 0


def test_our_parties_run_the_sources_the_harness_runs_from(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Run from a checkout (its sources on ``PYTHONPATH``), a party must not import the
    installed copy instead: a bench or test of the checkout would measure another tree."""
    example = tmp_path / "example"
    example.mkdir()
    (example / "pyproject.toml").write_text('[project]\nname = "example"\n')
    monkeypatch.setenv("PYTHONPATH", "/checkout/core/src")
    monkeypatch.setattr(federation_module.subprocess, "Popen", _Started)
    with ProcessFederation(
        tmp_path / "run", example, AGGREGATOR, ("a@test.org",), encrypted=False
    ) as federation:
        party = federation.start(AGGREGATOR, legacy=False)
    started = party.process
    assert isinstance(started, _Started)
    assert started.env["PYTHONPATH"] == "/checkout/core/src"
