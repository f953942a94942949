"""Repository-wide test settings (apply to every distribution's tests).

Server runs keep a workspace per project and resume interrupted runs from it; tests must never
share one, nor leave one inside the repository, so each test gets its own.

Property tests have no deadline: CI machines are shared and a loaded one must not turn a slow
example into a failure (hypothesis' default fails any example slower than 200 ms).
"""

from __future__ import annotations

from pathlib import Path

import pytest
from hypothesis import settings

settings.register_profile("repository", deadline=None, print_blob=True)
settings.load_profile("repository")


@pytest.fixture(autouse=True)
def _private_workspace(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SYFT_FLWR_WORKSPACE", str(tmp_path / "syft-flwr-workspace"))
