"""A Flower project on a SyftBox folder, and the processes of tests that start real
``syft-flwr run`` processes on it (bounded waits, everything killed at the end)."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
import time
from collections.abc import Callable, Sequence
from pathlib import Path

WAIT = 120.0
"""Upper bound of a wait for something a process reports."""


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


class Cluster:
    """The processes of one test, all killed at the end whatever happens.

    The output of a process still running at :meth:`close` (the test failed before it
    ended) is printed, so pytest shows what it was doing next to the failure.
    """

    def __init__(self, project: Path, env: dict[str, str]) -> None:
        self.project = project
        self.env = env
        self.processes: list[tuple[str, subprocess.Popen[str]]] = []

    def start(self, email: str, **extra: str) -> subprocess.Popen[str]:
        process = start_run(self.project, {**self.env, **extra}, email)
        self.processes.append((email, process))
        return process

    def close(self) -> None:
        for email, process in self.processes:
            running = process.poll() is None
            if running:
                process.kill()
            out, _ = process.communicate()
            if running or process.returncode != 0:
                print(f"--- {email} (exit {process.returncode}) ---\n{out}")


def wait_for(
    what: str,
    condition: Callable[[], bool],
    timeout: float = WAIT,
    alive: subprocess.Popen[str] | None = None,
) -> None:
    """Poll ``condition`` until it holds; fail at ``timeout`` or as soon as ``alive`` exits."""
    deadline = time.monotonic() + timeout
    while not condition():
        if alive is not None and alive.poll() is not None:
            out, _ = alive.communicate()
            raise AssertionError(f"the process exited while waiting for {what}:\n{out}")
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout:.0f} s waiting for {what}")
        time.sleep(0.05)
