"""A stranger attacks a live, encrypted FedAvg run over SyftBox: real processes, real files.

The server and three clients run as ``syft-flwr run`` processes on one SyftBox folder, as the
SyftBox client presents it locally; encryption is on (the syftbox default). The attacker is a
real datasite that is not in the run: its own transport on the same folder, its own keys
published in its own ``did.json``, writing only into its own sender folders of the victims'
endpoints (which the permission files let every user do). While the run is live it:

- asks every victim to train, with the live run id and with a made-up one (sealed to them);
- sends stop signals, a resource check and a job start of its own;
- writes a request in place in two halves (a non-atomic writer);
- plants a symlink to a folder, a symlink loop, a FIFO, a folder and a symlink to a file
  outside the tree, all named like requests, and a 200 MiB sparse request;
- turns its sender folder at one victim into a symlink to a folder outside the tree;
- plants empty files at the reply slots of the aggregator's requests (a sync client's debris);
- queues a message of a fake run when the last round has been reported, just before the stop.

The run must end exactly as a clean run does, no ``ClientApp`` may see anything the attacker
sent, every refusal must be in the victims' audit trails, nothing may appear outside the
datasites tree, and the victim that received the 200 MiB file must not have grown its peak
memory by more than 20 %.
"""

from __future__ import annotations

import json
import os
import threading
import time
from pathlib import Path

import pytest
from flwr.common.constant import ErrorCode

from plugins.syftbox.tests.flower_project import WAIT, Cluster, wait_for, write_project
from syft_flwr.audit import read_audit
from syft_flwr.client.workspace import DatasiteWorkspace
from syft_flwr.config import ProjectConfig, RuntimeSettings
from syft_flwr.crypto.policy import open_channel
from syft_flwr.demo.runner import run_local
from syft_flwr.services.auxiliary import AuxStatus
from syft_flwr.testing.attacker import Attacker
from syft_flwr.transport import TransportSettings
from syft_flwr_syftbox import SyftBoxTransport
from syft_flwr_syftbox.layout import Layout

pytestmark = pytest.mark.slow

DATASITES = ["ds1@attack.test", "ds2@attack.test", "ds3@attack.test"]
AGGREGATOR = "aggregator@attack.test"
MALLORY = "mallory@evil.test"
APP = "flwr/attack"
ROUNDS = 3
HUGE = 200 * 1024 * 1024

APPS = """\
    import json
    import os
    import time

    from flwr.clientapp import ClientApp

    from syft_flwr.demo.apps import make_client_app, make_server_app

    DATASITES = {datasites!r}
    _demo = make_client_app()
    client_app = ClientApp()


    def _handle(message, context):
        email = os.environ["SYFTBOX_EMAIL"]
        context.node_config["partition-id"] = DATASITES.index(email)
        context.node_config["num-partitions"] = len(DATASITES)
        seen = {{
            "run_id": message.metadata.run_id,
            "type": message.metadata.message_type,
            "keys": sorted(message.content.keys()),
        }}
        with open(os.path.join(os.environ["SEEN_DIR"], email), "a") as handle:
            handle.write(json.dumps(seen) + "\\n")
        return _demo(message, context)


    client_app.train()(_handle)
    client_app.evaluate()(_handle)


    def _record(report):
        with open(os.environ["ROUNDS_FILE"], "a") as handle:
            handle.write(json.dumps(report.__dict__) + "\\n")
        # the test holds the run here (live, clients serving) while it attacks
        gates = os.environ["GATE_DIR"]
        if os.path.exists(os.path.join(gates, f"hold-{{report.server_round}}")):
            go = os.path.join(gates, f"go-{{report.server_round}}")
            deadline = time.monotonic() + 120
            while not os.path.exists(go) and time.monotonic() < deadline:
                time.sleep(0.02)


    server_app = make_server_app(len(DATASITES), {rounds}, _record, round_timeout=60.0)
"""


def peak_rss(pid: int) -> int:
    """The process's peak resident set (VmHWM), in bytes."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) * 1024
    raise AssertionError(f"no VmHWM for process {pid}")


class Run:
    """Where the run's processes write what they saw, and the gates that hold the server."""

    def __init__(self, root: Path) -> None:
        self.rounds_file = root / "rounds.jsonl"
        self.seen_dir = root / "seen"
        self.seen_dir.mkdir()
        self.gates = root / "gates"
        self.gates.mkdir()

    def hold(self, server_round: int) -> None:
        """Make the server wait after reporting ``server_round`` until :meth:`release`."""
        (self.gates / f"hold-{server_round}").touch()

    def release(self, server_round: int) -> None:
        (self.gates / f"go-{server_round}").touch()

    def rounds(self) -> list[dict[str, object]]:
        if not self.rounds_file.exists():
            return []
        lines = self.rounds_file.read_text().splitlines()
        return [json.loads(line) for line in lines if line.endswith("}")]

    def seen(self, email: str) -> list[dict[str, object]]:
        path = self.seen_dir / email
        return [json.loads(line) for line in path.read_text().splitlines()]


class Vandal:
    """The file-level attacks, all inside the attacker's own folders (or as sync debris)."""

    def __init__(self, datasites: Path, outside: Path) -> None:
        self.layout = Layout(datasites)
        self.outside = outside
        self.debris = 0
        self._stop = threading.Event()

    def own_folder(self, victim: str) -> Path:
        folder = self.layout.sender_dir(victim, APP, "messages", MALLORY)
        folder.mkdir(parents=True, exist_ok=True)
        return folder

    def plant_objects(self, victim: str) -> None:
        folder = self.own_folder(victim)
        (folder / "a1b2c3d4-0000-4000-8000-000000000001.request").symlink_to(self.outside)
        loop = folder / "a1b2c3d4-0000-4000-8000-000000000002.request"
        loop.symlink_to(loop)
        os.mkfifo(folder / "a1b2c3d4-0000-4000-8000-000000000003.request")
        (folder / "a1b2c3d4-0000-4000-8000-000000000004.request").mkdir()
        passwd = self.outside / "passwd"
        passwd.write_text("root:x:0:0:root:/root:/bin/bash\n")
        (folder / "a1b2c3d4-0000-4000-8000-000000000005.request").symlink_to(passwd)

    def plant_huge(self, victim: str) -> None:
        """A 200 MiB sparse request, appearing whole (made under a name nobody reads)."""
        path = self.own_folder(victim) / "a1b2c3d4-0000-4000-8000-000000000006.request"
        hidden = path.with_name(f".{path.name}.tmp")
        with hidden.open("wb") as handle:
            handle.truncate(HUGE)
        hidden.rename(path)

    def write_in_place(self, victim: str, data: bytes) -> Path:
        path = self.own_folder(victim) / "a1b2c3d4-0000-4000-8000-000000000007.request"
        with path.open("wb") as handle:
            handle.write(data[: len(data) // 2])
            handle.flush()
            time.sleep(0.3)
            handle.write(data[len(data) // 2 :])
        return path

    def redirect(self, victim: str, request: bytes) -> None:
        """Swap the attacker's sender folder at ``victim`` for a symlink to a folder outside
        the tree holding a request, so a reply would land outside."""
        folder = self.own_folder(victim)
        for entry in folder.iterdir():
            if entry.is_dir() and not entry.is_symlink():
                entry.rmdir()
            else:
                entry.unlink()
        folder.rmdir()
        target = self.outside / "redirected"
        target.mkdir()
        (target / "a1b2c3d4-0000-4000-8000-000000000008.request").write_bytes(request)
        folder.symlink_to(target)

    def litter_reply_slots(self, victim: str) -> None:
        """Plant empty files at the reply slots of the aggregator's new requests (a thread)."""
        folder = self.layout.sender_dir(victim, APP, "messages", AGGREGATOR)

        def loop() -> None:
            while not self._stop.wait(0.005):
                for request in folder.glob("*.request") if folder.exists() else []:
                    slot = request.with_suffix(".response")
                    try:
                        with open(slot, "xb"):
                            self.debris += 1
                    except OSError:
                        continue

        threading.Thread(target=loop, daemon=True).start()

    def stop(self) -> None:
        self._stop.set()


def test_a_stranger_cannot_drive_crash_or_redirect_a_live_encrypted_run(
    tmp_path: Path, data_dir: Path
) -> None:
    project = write_project(
        tmp_path,
        data_dir,
        module="attackapps",
        source=APPS.format(datasites=DATASITES, rounds=ROUNDS),
        app_name="attack",
        datasites=DATASITES,
        aggregator=AGGREGATOR,
    )
    run = Run(tmp_path)
    outside = tmp_path / "outside"
    outside.mkdir()
    env = {
        **os.environ,
        "ROUNDS_FILE": str(run.rounds_file),
        "SEEN_DIR": str(run.seen_dir),
        "GATE_DIR": str(run.gates),
        "SYFT_FLWR_POLL_INTERVAL": "0.5",
        "PYTHONUNBUFFERED": "1",
    }
    workspace = Path(os.environ["SYFT_FLWR_WORKSPACE"])
    procs = Cluster(project, env)
    mallory = SyftBoxTransport(
        TransportSettings(MALLORY, {"data_dir": str(data_dir)}, poll_interval=0.5)
    )
    channel = open_channel(mallory, RuntimeSettings(encryption_enabled=True))
    assert channel is not None
    attacker = Attacker(mallory, APP, channel=channel, timeout=20)
    vandal = Vandal(data_dir / "datasites", outside)
    run.hold(1)
    run.hold(ROUNDS)
    try:
        clients = {email: procs.start(email) for email in DATASITES}
        server = procs.start(AGGREGATOR)
        wait_for("round 1", lambda: len(run.rounds()) >= 2, alive=server)
        run_id = int(next((workspace / "runs").iterdir()).name)
        victim = DATASITES[0]
        idle_peak = peak_rss(clients[victim].pid)

        vandal.litter_reply_slots(DATASITES[1])
        replies = [attacker.send(ds, rid, "train") for ds in DATASITES for rid in (run_id, 4242)]
        for ds in DATASITES:
            attacker.stop(ds, run_id)
        aux = [answer for ds in DATASITES for answer in attacker.check_and_start(ds, 4242)]
        vandal.plant_objects(victim)
        vandal.plant_huge(victim)
        torn = vandal.write_in_place(victim, b"SFRF a request written in place, torn")
        wait_for("the torn request to be refused", torn.with_suffix(".response").exists)
        huge_reply = vandal.own_folder(victim) / "a1b2c3d4-0000-4000-8000-000000000006.response"
        wait_for("the huge request to be refused", huge_reply.exists)
        hostile_peak = peak_rss(clients[victim].pid)
        vandal.redirect(victim, torn.read_bytes())
        run.release(1)

        wait_for("the last round", lambda: len(run.rounds()) == ROUNDS + 1, alive=server)
        vandal.stop()
        for ds in DATASITES[1:]:  # the victim's folder is a symlink now: nothing can be sent
            attacker.push(ds, 999)  # a fake run right before the real stop
        run.release(ROUNDS)

        server_out, _ = server.communicate(timeout=WAIT)
        assert server.returncode == 0, server_out
        for email, client in clients.items():
            out, _ = client.communicate(timeout=WAIT)
            assert client.returncode == 0, out
            assert f"{email}: stopped (Server stopped)" in out, out
    finally:
        vandal.stop()
        procs.close()
        channel.close()
        mallory.close()

    rounds = run.rounds()
    assert [(r["clients"], r["failures"]) for r in rounds[1:]] == [(3, 0)] * ROUNDS
    clean = run_local("memory", num_datasites=len(DATASITES), num_rounds=ROUNDS)
    assert rounds[-1]["test_loss"] == pytest.approx(clean.final.test_loss, abs=1e-9)

    refusal = f"{MALLORY} is not a trusted aggregator"
    assert len(replies) == 6 and len(aux) == 6
    for reply in replies:
        assert reply.has_error() and reply.error.code == ErrorCode.NODE_UNAVAILABLE
        assert refusal in reply.error.reason, reply.error.reason
    assert all(a.status is AuxStatus.REJECTED and refusal in a.detail for a in aux)

    for email in DATASITES:
        seen = run.seen(email)
        assert len(seen) == 2 * ROUNDS, seen
        assert all(
            s["run_id"] == run_id and "syft_flwr.testing.attack" not in s["keys"] for s in seen
        )
        records = read_audit(DatasiteWorkspace.locate(ProjectConfig(), None, email).audit_path)
        refused = [r for r in records if r["sender"] == MALLORY]
        assert refused and all(r["outcome"] == "refused" and r["run_id"] is None for r in refused)
        assert {r["sender"] for r in records if r["outcome"] == "accepted"} == {AGGREGATOR}
    victim_refusals = [
        r
        for r in read_audit(
            DatasiteWorkspace.locate(ProjectConfig(), None, DATASITES[0]).audit_path
        )
        if r["sender"] == MALLORY
    ]
    assert any(r["body_size"] == HUGE for r in victim_refusals), "the huge file was not refused"

    assert sorted(p.name for p in outside.iterdir()) == ["passwd", "redirected"]
    assert [p.suffix for p in (outside / "redirected").iterdir()] == [".request"], (
        "something was written outside the datasites tree"
    )
    assert hostile_peak < 1.2 * idle_peak, (idle_peak, hostile_peak)
    print(
        f"victim peak memory: idle {idle_peak / 2**20:.1f} MiB, after a {HUGE >> 20} MiB hostile "
        f"file {hostile_peak / 2**20:.1f} MiB ({hostile_peak / idle_peak:.2f}x); "
        f"{vandal.debris} reply slots littered"
    )
