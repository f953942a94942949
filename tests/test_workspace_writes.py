"""A run's workspace files are rewritten per round, not per datasite.

``run.json`` and ``clients.json`` each list every datasite: rewritten once per datasite (a
first answer, a join, a stop signal sent), a run of n datasites would cost n^2. A datasite's
first answer and its stop signal are one appended line each instead, and ``clients.json``
takes a round's joins when the exchange ends. Counted over a real run on the memory
transport, the rewrites must not grow with the number of datasites.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from syft_flwr.demo.apps import make_client_app, make_server_app
from syft_flwr.server import workspace
from syft_flwr.server.workspace import Workspace
from syft_flwr.testing.local import LocalFederation

pytestmark = pytest.mark.slow


def rewrites_of_a_run(
    build: Callable[..., LocalFederation], monkeypatch: pytest.MonkeyPatch, n: int
) -> Counter[str]:
    """How often each whole-file JSON of the run's workspace is written in a 1-round run."""
    written: Counter[str] = Counter()
    write_json = workspace.write_json

    def counting(path: Path, value: Any, *, fsync: bool = True) -> None:
        written[path.name] += 1
        write_json(path, value, fsync=fsync)

    monkeypatch.setattr(workspace, "write_json", counting)
    federation = build("memory", n)
    federation.start_clients(lambda index: make_client_app())
    federation.run_server(make_server_app(n, 1))
    federation.join_clients()
    monkeypatch.setattr(workspace, "write_json", write_json)
    return written


def test_run_and_clients_files_are_rewritten_per_round_not_per_datasite(
    syft_flwr_federation: Callable[..., LocalFederation],
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
) -> None:
    monkeypatch.setenv("SYFT_FLWR_WORKSPACE", str(tmp_path / "small"))
    small = rewrites_of_a_run(syft_flwr_federation, monkeypatch, 2)
    monkeypatch.setenv("SYFT_FLWR_WORKSPACE", str(tmp_path / "large"))
    large = rewrites_of_a_run(syft_flwr_federation, monkeypatch, 8)
    assert small["run.json"] > 0 and small["clients.json"] > 0
    assert large == small
    run = Workspace(tmp_path / "large").latest()
    assert run is not None and run.info().status == "finished"
    assert len(run.answered()) == 8 and run.stop_pending() == ()
