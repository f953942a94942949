"""Repository-wide test isolation (applies to every distribution's tests).

Server runs keep a workspace per project and resume interrupted runs from it; tests must never
share one, nor leave one inside the repository, so each test gets its own.
"""

from __future__ import annotations

from pathlib import Path

import pytest


@pytest.fixture(autouse=True)
def _private_workspace(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SYFT_FLWR_WORKSPACE", str(tmp_path / "syft-flwr-workspace"))
