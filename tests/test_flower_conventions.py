"""Flower's conventions and syft-flwr 0.5.x's API: run config, node config, identity, seed route.

The quickstart-style example (``examples/quickstart-numpy``: ``[tool.flwr.app.components]``,
``[tool.flwr.app.config]``, a message-API ``ServerApp`` reading ``context.run_config`` and a
``ClientApp`` reading ``context.node_config``) trains over ``syft-flwr run`` with only its
``[tool.syft_flwr]`` table added, one process per party over a SyftBox folder, encrypted.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import threading
from pathlib import Path

import numpy as np
import pytest
from flwr.app import ArrayRecord, ConfigRecord, RecordDict

from syft_flwr.cli import main
from syft_flwr.config import RuntimeSettings, load_project_config
from syft_flwr.errors import ConfigError
from syft_flwr.fl_orchestrator import SyftGrid, create_client
from syft_flwr.flower_config import node_config, run_config
from syft_flwr.run import syftbox_run_flwr_client
from syft_flwr.transport_setup import resolve_identity

EXAMPLE = Path(__file__).resolve().parents[1] / "examples" / "quickstart-numpy"
AGGREGATOR = "aggregator@openmined.org"
DATASITES = ("do1@openmined.org", "do2@openmined.org")
WAIT = 120.0


@pytest.fixture
def project(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A copy of the example whose SyftBox folder and keys live in the test's folder."""
    target = tmp_path / "quickstart-numpy"
    shutil.copytree(EXAMPLE, target, ignore=shutil.ignore_patterns("__pycache__", "*.npz"))
    (tmp_path / "SyftBox" / "datasites").mkdir(parents=True)
    with (target / "pyproject.toml").open("a") as handle:
        handle.write(
            f'\n[tool.syft_flwr.syftbox]\ndata_dir = "{tmp_path / "SyftBox"}"\n'
            f'key_dir = "{tmp_path / "keys"}"\n'
        )
    for name in ("SYFTBOX_EMAIL", "SYFTBOX_FOLDER", "SYFTBOX_CLIENT_CONFIG_PATH"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.delenv("SYFT_FLWR_ENCRYPTION_ENABLED", raising=False)
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    return target


def with_table(project: Path, text: str) -> Path:
    with (project / "pyproject.toml").open("a") as handle:
        handle.write(text)
    return project


# -- run config and node config --------------------------------------------------------------


def test_the_run_config_is_the_apps_config_with_overrides(project: Path) -> None:
    config = load_project_config(project)
    assert run_config(config)["num-server-rounds"] == 3
    values = run_config(config, ["num-server-rounds=5 learning-rate=0.25", "local-epochs=2"])
    assert (values["num-server-rounds"], values["learning-rate"], values["local-epochs"]) == (
        5,
        0.25,
        2,
    )
    with pytest.raises(ConfigError, match=r"no such key in \[tool.flwr.app.config\]"):
        run_config(config, ["num-rounds=5"])
    with pytest.raises(ConfigError, match="is not a key=value pair"):
        run_config(config, ["num-server-rounds 5"])


def test_a_node_config_defaults_to_the_datasites_position(project: Path) -> None:
    config = load_project_config(project)
    assert node_config(config, "DO2@openmined.org") == {"partition-id": 1, "num-partitions": 2}
    assert node_config(config, "other@openmined.org") == {}
    assert node_config(config, DATASITES[0], ["partition-id=7 data-path='/d'"]) == {
        "partition-id": 7,
        "num-partitions": 2,
        "data-path": "/d",
    }


def test_a_datasite_table_sets_its_node_config(project: Path) -> None:
    with_table(
        project,
        '\n[tool.syft_flwr.node_config."do1@openmined.org"]\npartition-id = 3\n'
        'num-partitions = 4\nsource = { path = "/data" }\n',
    )
    config = load_project_config(project)
    assert node_config(config, DATASITES[0]) == {
        "partition-id": 3,
        "num-partitions": 4,
        "source.path": "/data",
    }
    assert node_config(config, DATASITES[0], ["partition-id=0"])["partition-id"] == 0


@pytest.mark.parametrize(
    ("table", "message"),
    [
        ('[tool.syft_flwr.node_config]\n"do1@openmined.org" = 3\n', "must be a table of values"),
        ('[tool.syft_flwr.node_config."not an email"]\na = 1\n', "node_config"),
        ('[tool.syft_flwr.node_config."do1@openmined.org"]\na = [1, 2]\n', "Flower config values"),
    ],
)
def test_a_malformed_node_config_table_is_named(project: Path, table: str, message: str) -> None:
    with_table(project, "\n" + table)
    with pytest.raises(ConfigError, match=message):
        load_project_config(project)


def test_a_bad_run_config_override_exits_2_with_one_line(
    project: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("SYFTBOX_EMAIL", AGGREGATOR)
    assert main(["run", str(project), "--run-config", "rounds=5"]) == 2
    err = capsys.readouterr().err
    assert "--run-config rounds: no such key" in err and "Traceback" not in err


# -- identity from the SyftBox client config -------------------------------------------------


def client_config(tmp_path: Path, email: str) -> Path:
    path = tmp_path / f"{email}.json"
    path.write_text(json.dumps({"email": email, "data_dir": str(tmp_path / "SyftBox")}))
    return path


def test_the_identity_comes_from_the_syftbox_client_config(
    project: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    config = load_project_config(project)
    monkeypatch.setenv("SYFTBOX_CLIENT_CONFIG_PATH", str(client_config(tmp_path, DATASITES[1])))
    runtime = RuntimeSettings.from_env()
    # a datasite with a SyftBox login no longer takes itself for the aggregator
    assert resolve_identity(config, runtime, None, server=True) == DATASITES[1]
    monkeypatch.setenv("SYFTBOX_EMAIL", DATASITES[0])  # the variable still wins
    assert resolve_identity(config, RuntimeSettings.from_env(), None, server=False) == DATASITES[0]


def test_an_unreadable_syftbox_client_config_is_named(
    project: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    config = load_project_config(project)
    broken = tmp_path / "config.json"
    broken.write_bytes(b"\xff\xfe not json")
    monkeypatch.setenv("SYFTBOX_CLIENT_CONFIG_PATH", str(broken))
    with pytest.raises(ConfigError, match=f"{broken}.*not UTF-8"):
        resolve_identity(config, RuntimeSettings.from_env(), None, server=False)
    monkeypatch.setenv("SYFTBOX_CLIENT_CONFIG_PATH", str(tmp_path / "missing.json"))
    with pytest.raises(ConfigError, match=r"SYFTBOX_CLIENT_CONFIG_PATH=.*does not exist"):
        resolve_identity(config, RuntimeSettings.from_env(), None, server=False)


# -- the quickstart-style example over syft-flwr run ------------------------------------------


def test_the_quickstart_example_trains_over_syft_flwr_run(project: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("SYFTBOX_")}
    command = [sys.executable, "-m", "syft_flwr", "run", str(project)]
    clients = [
        subprocess.Popen(
            command, env={**env, "SYFTBOX_EMAIL": email}, cwd=project, stdout=subprocess.PIPE
        )
        for email in DATASITES
    ]
    try:
        server = subprocess.run(
            [*command, "--run-config", "num-server-rounds=4"],
            env={**env, "SYFTBOX_EMAIL": AGGREGATOR},
            cwd=project,
            capture_output=True,
            text=True,
            timeout=WAIT,
        )
        assert server.returncode == 0, server.stderr
        outputs = [client.communicate(timeout=WAIT)[0].decode() for client in clients]
    finally:
        for client in clients:
            client.kill()
    assert all("stopped (Server stopped)" in out for out in outputs), outputs
    history = json.loads((project / "history.json").read_text())
    assert sorted(history["train"], key=int) == ["1", "2", "3", "4"]  # the override, not 3
    losses = [history["train"][str(r)]["train_loss"] for r in range(1, 5)]
    assert losses == sorted(losses, reverse=True)
    assert history["evaluate"]["4"]["eval_acc"] > 0.8
    assert len(np.load(project / "final_model.npz").files) == 2


# -- the seed's own route: SyftGrid(app_name=..., datasites=..., client=...) -----------------


def test_the_seed_route_seals_on_an_encrypted_project(project: Path) -> None:
    reasons: list[str | None] = []
    threads = [
        threading.Thread(
            target=lambda email=email: reasons.append(
                syftbox_run_flwr_client(project, email=email)
            ),
            daemon=True,
        )
        for email in DATASITES
    ]
    for thread in threads:
        thread.start()
    client = create_client(project, email=AGGREGATOR)
    try:
        grid = SyftGrid(app_name="flwr/quickstart-numpy", datasites=list(DATASITES), client=client)
        assert grid.channel is not None, "an encrypted project must seal on the seed's route"
        grid.set_run(1)
        for _ in range(200):  # the datasites publish their keys as they start
            if not grid.unreachable_datasites():
                break
            threading.Event().wait(0.05)
        weights = [np.zeros(8), np.zeros(1)]
        content = RecordDict(
            {
                "arrays": ArrayRecord(weights),
                "config": ConfigRecord({"lr": 0.5, "local-epochs": 1}),
            }
        )
        messages = [
            grid.create_message(content, "train", node, group_id="1", ttl=60)
            for node in grid.get_node_ids()
        ]
        replies = list(grid.send_and_receive(messages, timeout=60))
        assert len(replies) == 2 and not any(reply.has_error() for reply in replies)
        grid.send_stop_signal(reason="seed route done")
        for thread in threads:
            thread.join(WAIT)
        grid.close()
    finally:
        client.close()
    assert reasons == ["seed route done"] * 2
