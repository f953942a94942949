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
    extra: str = "",
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
        + textwrap.dedent(extra)
    )
    return project


RECORDING_APPS = """\
    import json
    import os
    import time
    from pathlib import Path

    from flwr.clientapp import ClientApp

    from syft_flwr.demo.apps import make_client_app, make_server_app
    from syft_flwr.node_ids import node_id_for

    DATASITES = {datasites!r}
    _demo = make_client_app()
    client_app = ClientApp()


    def _handle(kind, message, context):
        email = os.environ["SYFTBOX_EMAIL"]
        context.node_config["partition-id"] = DATASITES.index(email)
        context.node_config["num-partitions"] = len(DATASITES)
        server_round = int(message.content.config_records["config"]["server-round"])
        log = Path(os.environ["HANDLED_DIR"]) / f"{{email}}.log"
        with log.open("a") as handle:
            handle.write(f"{{os.getpid()}} start {{kind}} {{server_round}}\\n")
        if os.environ.get("SLOW_ROUND") == str(server_round) and kind == "train":
            time.sleep(float(os.environ["SLOW_SECONDS"]))
        reply = _demo(message, context)
        with log.open("a") as handle:
            handle.write(f"{{os.getpid()}} done {{kind}} {{server_round}}\\n")
        return reply


    @client_app.train()
    def train(message, context):
        return _handle("train", message, context)


    @client_app.evaluate()
    def evaluate(message, context):
        return _handle("evaluate", message, context)


    def _record(report):
        with open(os.environ["ROUNDS_FILE"], "a") as handle:
            handle.write(json.dumps(report.__dict__) + "\\n")
        if os.environ.get("GATE_ROUND") == str(report.server_round):
            gate = Path(os.environ["GATE_FILE"])
            deadline = time.monotonic() + 120
            while not gate.exists() and time.monotonic() < deadline:
                time.sleep(0.05)


    server_app = make_server_app(
        len(DATASITES), {rounds}, _record, round_timeout=float(os.environ["ROUND_TIMEOUT"])
    )
"""
"""The demo ``ClientApp`` and a FedAvg ``ServerApp`` that write what they did: each client
logs ``<pid> start|done <kind> <round>`` to ``$HANDLED_DIR/<email>.log``, the server appends
each round's report to ``$ROUNDS_FILE``. ``SLOW_ROUND``/``SLOW_SECONDS`` slow a round's
training, ``GATE_ROUND``/``GATE_FILE`` hold the server after a round until the file exists."""


def recording_project(
    root: Path,
    data_dir: Path,
    *,
    app_name: str,
    datasites: Sequence[str],
    aggregator: str,
    rounds: int,
    extra: str = "",
) -> Path:
    """A project running :data:`RECORDING_APPS` (``ROUND_TIMEOUT`` must be set)."""
    return write_project(
        root,
        data_dir,
        module="recordingapps",
        source=RECORDING_APPS.format(datasites=list(datasites), rounds=rounds),
        app_name=app_name,
        datasites=datasites,
        aggregator=aggregator,
        extra=extra,
    )


def start_run(project: Path, env: dict[str, str], email: str, *flags: str) -> subprocess.Popen[str]:
    """``python -m syft_flwr run project [flags]`` acting as ``email``, output as text."""
    return subprocess.Popen(
        [sys.executable, "-m", "syft_flwr", "run", str(project), *flags],
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


def run_dir(workspace: Path) -> Path | None:
    """The folder of the (first) run in a server workspace, once there is one."""
    runs = sorted((workspace / "runs").glob("*/run.json")) if workspace.exists() else []
    return runs[0].parent if runs else None


def events(workspace: Path) -> list[dict[str, object]]:
    """The engine events of that run (a line torn by a kill is skipped)."""
    folder = run_dir(workspace)
    if folder is None or not (folder / "events.jsonl").exists():
        return []
    lines = (folder / "events.jsonl").read_text().splitlines()
    return [json.loads(line) for line in lines if line.endswith("}")]


def handled(handled_dir: Path, email: str) -> list[str]:
    """What a :data:`RECORDING_APPS` client logged: ``<pid> start|done <kind> <round>``."""
    path = handled_dir / f"{email}.log"
    return path.read_text().splitlines() if path.exists() else []
