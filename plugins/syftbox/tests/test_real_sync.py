"""Federated runs over a real SyftBox network: every party its own data dir and sync client.

The SyftBox 0.4.0 server and one sync client per party run from their own virtual environment
(:mod:`syft_flwr_syftbox.testing.network`), on loopback; the server and the datasites run as
``syft-flwr run`` processes, each finding its data dir and identity the way a SyftBox user's
tools do (``SYFTBOX_CLIENT_CONFIG_PATH``, ``SYFTBOX_EMAIL``). Nothing is shared between parties
but what the sync carries: permission files in both formats decide what it carries, key
documents arrive a cycle or two late, files over 10 MB are refused by the sync, downloads are
written in place.

Timeouts follow the rule documented in plugins/syftbox/README.md: about two sync intervals per
hop, so a round trip takes four or more; rounds get a minute.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from plugins.syftbox.tests.flower_project import WAIT, recording_project, start_run, wait_for
from syft_flwr_syftbox.testing.network import SyftBoxNetwork

pytestmark = pytest.mark.slow

AGGREGATOR = "aggregator@sync-university.org"  # SyftBox refuses reserved domains
DATASITES = ["ds1@sync-hospital-a.org", "ds2@sync-hospital-b.org"]
PEAK_MODELS, PEAK_BASE_MIB = 6, 400
"""Bound on a party's peak RSS: this many copies of the model plus Flower, numpy and Python."""

BIG_APPS = """\
    import json
    import os
    import resource

    import numpy as np
    from flwr.app import Array, ArrayRecord, Context, Message, RecordDict
    from flwr.clientapp import ClientApp
    from flwr.serverapp import Grid, ServerApp
    from flwr.serverapp.strategy import FedAvg

    SIZE = int(os.environ["MODEL_BYTES"]) // 4
    client_app = ClientApp()
    server_app = ServerApp()


    @client_app.train()
    def train(message: Message, context: Context) -> Message:
        arrays = message.content.array_records["arrays"]
        updated = ArrayRecord({k: Array(v.numpy() + 1.0) for k, v in arrays.items()})
        metrics = {"num-examples": 1}
        from flwr.app import MetricRecord

        content = RecordDict({"arrays": updated, "metrics": MetricRecord(metrics)})
        return Message(content, reply_to=message)


    @client_app.lifespan()
    def lifespan(context: Context):
        yield
        with open(os.environ["CLIENT_PEAK_FILE"], "w") as handle:
            handle.write(str(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss))


    @server_app.main()
    def main(grid: Grid, context: Context) -> None:
        initial = ArrayRecord({"w": Array(np.arange(SIZE, dtype=np.float32))})
        strategy = FedAvg(fraction_evaluate=0.0, min_train_nodes=1, min_available_nodes=1)
        result = strategy.start(grid=grid, initial_arrays=initial, num_rounds=1, timeout=600)
        final = result.arrays["w"].numpy()
        ok = bool(np.array_equal(final, np.arange(SIZE, dtype=np.float32) + 1.0))
        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss  # KiB
        with open(os.environ["RESULT_FILE"], "w") as handle:
            json.dump({"ok": ok, "peak_kib": peak}, handle)
"""


@pytest.fixture
def network(tmp_path: Path) -> Iterator[SyftBoxNetwork]:
    with SyftBoxNetwork(tmp_path / "net") as net:
        yield net


def party_env(network: SyftBoxNetwork, email: str, **extra: str) -> dict[str, str]:
    """How a SyftBox user's process finds its data dir and identity."""
    party = network.party(email)
    return {
        **os.environ,
        "SYFTBOX_CLIENT_CONFIG_PATH": str(party.config_path),
        "SYFTBOX_EMAIL": email,
        "HOME": str(party.home),
        "PYTHONUNBUFFERED": "1",
        **extra,
    }


def project_for(root: Path, datasites: list[str], rounds: int) -> Path:
    return recording_project(
        root,
        root / "unused",  # each party's own data dir comes from its SyftBox config
        app_name="sync",
        datasites=datasites,
        aggregator=AGGREGATOR,
        rounds=rounds,
    )


def without_data_dir(project: Path) -> Path:
    toml = project / "pyproject.toml"
    lines = [line for line in toml.read_text().splitlines() if not line.startswith("data_dir")]
    toml.write_text("\n".join(lines) + "\n")
    return project


def rejected(network: SyftBoxNetwork) -> list[Path]:
    """Files a sync client renamed because the server refused them."""
    return sorted(network.root.rglob("*.syftrejected.*"))


class Runs:
    """The ``syft-flwr run`` processes of a test, killed at the end whatever happens."""

    def __init__(self, project: Path, network: SyftBoxNetwork, **env: str) -> None:
        self.project = project
        self.network = network
        self.env = env
        self.processes: list[tuple[str, subprocess.Popen[str]]] = []

    def start(self, email: str, flags: tuple[str, ...] = (), **extra: str) -> subprocess.Popen[str]:
        env = party_env(self.network, email, **self.env, **extra)
        process = start_run(self.project, env, email, *flags)
        self.processes.append((email, process))
        return process

    def finish(self, process: subprocess.Popen[str], what: str) -> str:
        out, _ = process.communicate(timeout=WAIT * 3)
        assert process.returncode == 0, f"{what} exited {process.returncode}:\n{out}"
        return out

    def close(self) -> None:
        for email, process in self.processes:
            if process.poll() is None:
                process.kill()
                out, _ = process.communicate()
                print(f"--- {email} (killed) ---\n{out}")


@pytest.fixture
def runs(tmp_path: Path, network: SyftBoxNetwork) -> Iterator[Runs]:
    for email in (AGGREGATOR, *DATASITES):
        network.add_party(email)
    handled = tmp_path / "handled"
    handled.mkdir()
    project = without_data_dir(project_for(tmp_path, DATASITES, rounds=3))
    processes = Runs(
        project,
        network,
        ROUNDS_FILE=str(tmp_path / "rounds.jsonl"),
        HANDLED_DIR=str(handled),
        ROUND_TIMEOUT="60",
        SYFT_FLWR_POLL_INTERVAL="0.5",
    )
    yield processes
    processes.close()


def reports(tmp_path: Path) -> list[dict[str, object]]:
    lines = (tmp_path / "rounds.jsonl").read_text().splitlines()
    return [json.loads(line) for line in lines]


@pytest.mark.parametrize("encryption", ["true", "false"])
def test_fedavg_over_a_real_sync(
    runs: Runs, network: SyftBoxNetwork, tmp_path: Path, encryption: str
) -> None:
    runs.env["SYFT_FLWR_ENCRYPTION_ENABLED"] = encryption
    clients = [runs.start(email) for email in DATASITES]
    server = runs.start(AGGREGATOR)
    runs.finish(server, "the server")
    for email, client in zip(DATASITES, clients, strict=True):
        assert f"{email}: stopped (Server stopped)" in runs.finish(client, email)
    assert [(r["clients"], r["failures"]) for r in reports(tmp_path)[1:]] == [(2, 0)] * 3
    assert reports(tmp_path)[-1]["test_loss"] < reports(tmp_path)[0]["test_loss"]
    assert rejected(network) == [], "the SyftBox server refused files"
    for email in DATASITES:
        rpc = network.party(email).datasites / email / "app_data" / "flwr" / "sync" / "rpc"
        assert {p.name for p in rpc.glob("*.yaml")} == {"syft.pub.yaml", "syftperm.yaml"}


def one_run(runs: Runs, *flags: str) -> None:
    """A whole run: both datasites, then the server, until every process ended well."""
    clients = [runs.start(email) for email in DATASITES]
    runs.finish(runs.start(AGGREGATOR, flags=flags), "the server")
    for client, email in zip(clients, DATASITES, strict=True):
        assert f"{email}: stopped (Server stopped)" in runs.finish(client, email)


def test_a_key_rotation_between_two_runs(runs: Runs, network: SyftBoxNetwork) -> None:
    """The server and a datasite rotate their keys (the old ones void at once) right before
    the second run: their new did.json reaches the others a sync cycle or two after the first
    messages were sealed to the old one, so those are refused and sealed again."""
    runs.env["SYFT_FLWR_ENCRYPTION_ENABLED"] = "true"
    one_run(runs)
    for email in (AGGREGATOR, DATASITES[0]):
        rotated = subprocess.run(
            [
                *(sys.executable, "-m", "syft_flwr", "keys", "rotate", "--email", email),
                *("--grace", "0", "--project-dir", str(runs.project)),
            ],
            env=party_env(network, email),
            capture_output=True,
            text=True,
            timeout=120,
        )
        assert rotated.returncode == 0, rotated.stderr
    one_run(runs, "--fresh")
    assert rejected(network) == []


@pytest.mark.parametrize("encryption", ["true", "false"])
def test_a_client_that_joins_late(
    runs: Runs, network: SyftBoxNetwork, tmp_path: Path, encryption: str
) -> None:
    """One datasite starts only once the server is running. Encrypted, the server waits for
    its key document; in plaintext it sends at once, into a folder the late datasite has not
    given permissions for yet: the SyftBox server refuses those requests, and they must be
    offered again once the datasite serves the app."""
    runs.env["SYFT_FLWR_ENCRYPTION_ENABLED"] = encryption
    early = runs.start(DATASITES[0])
    server = runs.start(AGGREGATOR)
    if encryption == "true":
        network.wait_visible(DATASITES[0], f"{AGGREGATOR}/public/did.json")
    else:
        wait_for("the sync to refuse a request", lambda: bool(rejected(network)), alive=server)
    late = runs.start(DATASITES[1])
    runs.finish(server, "the server")
    for client, email in ((early, DATASITES[0]), (late, DATASITES[1])):
        assert f"{email}: stopped (Server stopped)" in runs.finish(client, email)
    assert [(r["clients"], r["failures"]) for r in reports(tmp_path)[1:]] == [(2, 0)] * 3
    assert rejected(network) == [], "a refused request was left behind"


@pytest.mark.parametrize("megabytes", [12, 100])
def test_large_models_travel_over_the_sync_in_parts(
    tmp_path: Path, network: SyftBoxNetwork, megabytes: int
) -> None:
    network.add_party(AGGREGATOR)
    network.add_party(DATASITES[0])
    project = tmp_path / "big"
    project.mkdir()
    (project / "bigapps.py").write_text(textwrap.dedent(BIG_APPS))
    (project / "pyproject.toml").write_text(
        textwrap.dedent(
            f"""\
            [tool.flwr.app.components]
            serverapp = "bigapps:server_app"
            clientapp = "bigapps:client_app"

            [tool.syft_flwr]
            app_name = "big"
            datasites = ["{DATASITES[0]}"]
            aggregator = "{AGGREGATOR}"
            """
        )
    )
    result, client_peak = tmp_path / "result", tmp_path / "client-peak"
    processes = Runs(
        project,
        network,
        MODEL_BYTES=str(megabytes * 2**20),
        RESULT_FILE=str(result),
        CLIENT_PEAK_FILE=str(client_peak),
        SYFT_FLWR_ENCRYPTION_ENABLED="true",
    )
    try:
        client = processes.start(DATASITES[0])
        started = time.monotonic()
        processes.finish(processes.start(AGGREGATOR), "the server")
        seconds = time.monotonic() - started
        processes.finish(client, "the client")
    finally:
        processes.close()
    outcome = json.loads(result.read_text())
    assert outcome["ok"], "the model did not come back as trained"
    assert rejected(network) == [], "the sync refused a file (over its 10 MB limit?)"
    peaks = {"server": outcome["peak_kib"] / 1024, "client": int(client_peak.read_text()) / 1024}
    print(
        f"{megabytes} MiB model over the real sync, encrypted: {seconds:.1f} s; peak RSS "
        + ", ".join(f"{who} {mib:.0f} MiB" for who, mib in peaks.items())
    )
    for who, mib in peaks.items():  # the model, its wire copy, its sealed copy, and Python
        assert mib < PEAK_MODELS * megabytes + PEAK_BASE_MIB, f"{who} peaked at {mib:.0f} MiB"
