"""The ``syft-flwr`` command: transports, demo and run."""

from __future__ import annotations

import os
import re
import subprocess
import sys
import textwrap
import threading
import uuid

import pytest

from syft_flwr.cli import main
from syft_flwr.hookspecs import hookimpl
from syft_flwr.plugins import create_plugin_manager, reset_plugin_manager

pytestmark = pytest.mark.slow


def run_cli(
    *args: str, timeout: float = 120, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "syft_flwr", *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
        env={**os.environ, **(env or {})},
    )


def test_transports_lists_memory_with_its_distribution():
    result = run_cli("transports")
    assert result.returncode == 0, result.stderr
    assert re.search(r"^memory\s+syft-flwr-memory\s+\d+\.\d+", result.stdout, re.MULTILINE)


def test_demo_trains_a_better_model():
    result = run_cli("demo", "--rounds", "4")
    assert result.returncode == 0, result.stdout + result.stderr
    rounds = re.findall(
        r"^round\s+(\d+).*test loss ([0-9.]+)\s+accuracy ([0-9.]+)", result.stdout, re.MULTILINE
    )
    assert [int(r) for r, _, _ in rounds] == [0, 1, 2, 3, 4]
    losses = [float(loss) for _, loss, _ in rounds]
    accuracies = [float(acc) for _, _, acc in rounds]
    assert losses[-1] < losses[0] - 0.1
    assert accuracies[-1] > accuracies[0] + 0.1
    assert "3/3 client threads stopped cleanly" in result.stdout


def test_verbose_output_prints_each_flower_line_once():
    """Flower's logger prints through its own console handler; the root's handlers that
    ``-v`` installs must not print the same record again."""
    result = run_cli("-v", "demo", "--rounds", "1")
    assert result.returncode == 0, result.stdout + result.stderr
    output = result.stdout + result.stderr
    assert output.count("configure_train: Sampled") == 1, output
    assert "INFO syft_flwr." in output  # our own INFO lines are still printed


def test_demo_with_unknown_transport_says_what_to_install():
    result = run_cli("demo", "--transport", "gdrive", env={"SYFT_FLWR_DISABLED_PLUGINS": "gdrive"})
    assert result.returncode == 2
    assert "pip install syft-flwr-gdrive" in result.stderr


PROJECT_APPS = textwrap.dedent("""
    from flwr.app import ArrayRecord, Context, Message, MetricRecord, RecordDict
    from flwr.clientapp import ClientApp
    from flwr.serverapp import Grid, ServerApp
    from flwr.serverapp.strategy import FedAvg
    import numpy as np

    clientapp = ClientApp()

    @clientapp.train()
    def train(message: Message, context: Context) -> Message:
        arrays = ArrayRecord([a + 1 for a in message.content["arrays"].to_numpy_ndarrays()])
        metrics = MetricRecord({"num-examples": 1})
        return Message(RecordDict({"arrays": arrays, "metrics": metrics}), reply_to=message)

    serverapp = ServerApp()

    @serverapp.main()
    def main(grid: Grid, context: Context) -> None:
        strategy = FedAvg(fraction_evaluate=0.0, min_available_nodes=2, min_train_nodes=2)
        result = strategy.start(grid=grid, initial_arrays=ArrayRecord([np.zeros(3)]),
                                num_rounds=2, timeout=30)
        RESULTS.append(result.arrays.to_numpy_ndarrays()[0].tolist())

    RESULTS = []
""")


def test_run_serves_the_client_side_and_drives_the_server_side(tmp_path, monkeypatch):
    module = f"apps_{uuid.uuid4().hex}"
    (tmp_path / f"{module}.py").write_text(PROJECT_APPS)
    (tmp_path / "pyproject.toml").write_text(
        textwrap.dedent(f'''
        [tool.flwr.app.components]
        serverapp = "{module}:serverapp"
        clientapp = "{module}:clientapp"

        [tool.syft_flwr]
        app_name = "cli-test"
        datasites = ["a@x.org", "b@x.org"]
        aggregator = "agg@x.org"
        transport = "memory"

        [tool.syft_flwr.memory]
        network = "{module}"
    ''')
    )
    monkeypatch.delenv("SYFTBOX_EMAIL", raising=False)
    codes: dict[str, int] = {}

    def client(email: str) -> None:
        codes[email] = main(["run", str(tmp_path), "--email", email])

    threads = [
        threading.Thread(target=client, args=(e,), daemon=True) for e in ("a@x.org", "b@x.org")
    ]
    for thread in threads:
        thread.start()
    assert main(["run", str(tmp_path), "--email", "agg@x.org"]) == 0
    for thread in threads:
        thread.join(30)
    assert codes == {"a@x.org": 0, "b@x.org": 0}
    results = sys.modules[module].RESULTS
    assert results == [[2.0, 2.0, 2.0]]


def test_run_without_identity_says_what_to_set(tmp_path, monkeypatch, capsys):
    (tmp_path / "pyproject.toml").write_text(
        '[tool.syft_flwr]\napp_name = "x"\ntransport = "memory"\n'
    )
    monkeypatch.delenv("SYFTBOX_EMAIL", raising=False)
    assert main(["run", str(tmp_path)]) == 2
    assert "SYFTBOX_EMAIL" in capsys.readouterr().err


def test_demo_refuses_processes_for_an_in_process_transport():
    result = run_cli("demo", "--clients", "processes")
    assert result.returncode == 2
    assert "works within one process only" in result.stderr


class EchoCommand:
    """A plugin contributing ``syft-flwr echo``."""

    def __init__(self) -> None:
        self.calls: list[list[str]] = []

    @hookimpl
    def syft_flwr_cli_commands(self):
        return [("echo", "repeat the arguments", self.run)]

    def run(self, argv) -> int:
        self.calls.append(list(argv))
        return 7


def test_plugins_contribute_subcommands():
    plugin = EchoCommand()
    reset_plugin_manager(create_plugin_manager(load_entry_points=False, extra_plugins=[plugin]))
    try:
        assert main(["echo", "login", "--flag", "x"]) == 7
    finally:
        reset_plugin_manager(None)
    assert plugin.calls == [["login", "--flag", "x"]]


def test_gdrive_login_is_reachable_through_syft_flwr():
    result = run_cli("gdrive", "login", "--help")
    assert result.returncode == 0, result.stderr
    assert "client-secrets" in result.stdout
