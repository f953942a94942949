"""A Flower project on a SyftBox folder, for tests that start real ``syft-flwr run`` processes."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from collections.abc import Sequence
from pathlib import Path


def write_project(
    root: Path,
    data_dir: Path,
    *,
    module: str,
    source: str,
    app_name: str,
    datasites: Sequence[str],
    aggregator: str,
) -> Path:
    """``root/project`` with ``module.py`` holding ``server_app``/``client_app`` and its config."""
    project = root / "project"
    project.mkdir()
    (project / f"{module}.py").write_text(textwrap.dedent(source))
    (project / "pyproject.toml").write_text(
        textwrap.dedent(
            f"""\
            [tool.flwr.app.components]
            serverapp = "{module}:server_app"
            clientapp = "{module}:client_app"

            [tool.syft_flwr]
            app_name = "{app_name}"
            datasites = {json.dumps(list(datasites))}
            aggregator = "{aggregator}"
            transport = "syftbox"

            [tool.syft_flwr.syftbox]
            data_dir = {json.dumps(str(data_dir))}
            """
        )
    )
    return project


def start_run(project: Path, env: dict[str, str], email: str) -> subprocess.Popen[str]:
    """``python -m syft_flwr run project`` acting as ``email``, output captured as text."""
    return subprocess.Popen(
        [sys.executable, "-m", "syft_flwr", "run", str(project)],
        env={**env, "SYFTBOX_EMAIL": email},
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
