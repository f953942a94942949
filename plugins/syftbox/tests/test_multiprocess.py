"""End to end runs: real processes on one shared folder, and a faulty syncer between folders.

1. A server process and three client processes, each started as a user would start it
   (``python -m syft_flwr run <project>`` with ``SYFTBOX_EMAIL``), share one datasites folder as
   the SyftBox client presents it locally, and run a full FedAvg training; every client exits
   0 on the stop signal.
2. Each datasite has its own folder and a test syncer copies files between them the way a sync
   engine might at its worst: late, out of order, twice, and written in place so that readers
   see partial files. The run still completes with every reply in, and no message reaches a
   ``ClientApp`` twice.

Every wait is bounded; nothing depends on timing luck (replies are awaited, not slept for).
"""

from __future__ import annotations

import hashlib
import heapq
import json
import os
import random
import subprocess
import threading
import time
from pathlib import Path

import pytest
from flwr.app import Context, Message, RecordDict
from flwr.clientapp import ClientApp

from plugins.syftbox.tests.flower_project import start_run, write_project
from syft_flwr.demo.apps import RoundReport, make_client_app, make_server_app
from syft_flwr.fl_orchestrator import syftbox_flwr_client, syftbox_flwr_server
from syft_flwr.transport import TransportSettings
from syft_flwr_syftbox import SyftBoxTransport
from syft_flwr_syftbox.layout import FileKind, Layout

pytestmark = pytest.mark.slow

DATASITES = ["ds1@mp.test", "ds2@mp.test", "ds3@mp.test"]
AGGREGATOR = "aggregator@mp.test"
ROUNDS = 3
PROCESS_TIMEOUT = 120.0

APPS = """\
    import json
    import os

    from flwr.clientapp import ClientApp

    from syft_flwr.demo.apps import make_client_app, make_server_app
    from syft_flwr.node_ids import node_id_for

    DATASITES = {datasites!r}
    _demo = make_client_app()
    client_app = ClientApp()


    def _locate(context):
        # `syft-flwr run` gives no partition: derive it from this datasite's node id.
        index = [node_id_for(d) for d in DATASITES].index(context.node_id)
        context.node_config["partition-id"] = index
        context.node_config["num-partitions"] = len(DATASITES)


    @client_app.train()
    def train(message, context):
        _locate(context)
        return _demo(message, context)


    @client_app.evaluate()
    def evaluate(message, context):
        _locate(context)
        return _demo(message, context)


    def _record(report):
        with open(os.environ["ROUNDS_FILE"], "a") as handle:
            handle.write(json.dumps(report.__dict__) + "\\n")


    server_app = make_server_app(len(DATASITES), {rounds}, _record, round_timeout=60.0)
"""


def mp_project(root: Path, data_dir: Path) -> Path:
    return write_project(
        root,
        data_dir,
        module="mpapps",
        source=APPS.format(datasites=DATASITES, rounds=ROUNDS),
        app_name="mp",
        datasites=DATASITES,
        aggregator=AGGREGATOR,
    )


def test_server_and_three_client_processes_share_one_folder(tmp_path: Path, data_dir: Path) -> None:
    project = mp_project(tmp_path, data_dir)
    rounds_file = tmp_path / "rounds.jsonl"
    env = {
        **os.environ,
        "ROUNDS_FILE": str(rounds_file),
        "SYFT_FLWR_POLL_INTERVAL": "0.5",
        "PYTHONUNBUFFERED": "1",
    }

    def start(email: str) -> subprocess.Popen[str]:
        return start_run(project, env, email)

    clients = {email: start(email) for email in DATASITES}
    server = start(AGGREGATOR)
    try:
        server_out, _ = server.communicate(timeout=PROCESS_TIMEOUT)
        assert server.returncode == 0, server_out
        for email, client in clients.items():
            out, _ = client.communicate(timeout=30)
            assert client.returncode == 0, out
            assert f"{email}: stopped (Server stopped)" in out, out
    finally:
        for process in [server, *clients.values()]:
            if process.poll() is None:
                process.kill()
                process.communicate()
    reports = [json.loads(line) for line in rounds_file.read_text().splitlines()]
    assert [(r["clients"], r["failures"]) for r in reports[1:]] == [(3, 0)] * ROUNDS
    assert reports[-1]["test_loss"] < reports[0]["test_loss"]
    # encrypted by default: every participant published its key document before the run
    for email in [*DATASITES, AGGREGATOR]:
        document = json.loads((data_dir / "datasites" / email / "public" / "did.json").read_text())
        assert "syftFlwr" in document


class FaultySyncer:
    """Copies each datasite's own writes to every other folder, badly.

    A file is authored by one datasite: a request by its sender (the sender folder), a reply
    by the recipient (the datasite folder). Each new version an author writes is copied to
    every other folder after a random delay (so copies overtake each other), sometimes twice
    (a duplicate, much later), and half of the time in place in two halves with a pause in
    between, exposing a partial file as a non-atomic writer or a naive sync engine would.
    Deletions are not propagated. Seeded, so a failure can be replayed.
    """

    def __init__(self, roots: dict[str, Path], seed: int = 7) -> None:
        self.roots = roots
        self.rng = random.Random(seed)
        self.seen: set[tuple[str, Path, str]] = set()
        self.jobs: list[tuple[float, int, Path, bytes]] = []
        self.counter = 0
        self.copies = self.partial = self.duplicates = 0
        self.lock = threading.Condition()
        self.stopping = threading.Event()
        self.threads = [threading.Thread(target=self._scan, daemon=True)] + [
            threading.Thread(target=self._copy, daemon=True) for _ in range(2)
        ]

    def __enter__(self) -> FaultySyncer:
        for thread in self.threads:
            thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stopping.set()
        with self.lock:
            self.lock.notify_all()
        for thread in self.threads:
            thread.join(10)

    def _author(self, root: Path, path: Path) -> str | None:
        parts = path.relative_to(root).parts
        if len(parts) == 3 and parts[1:] == ("public", "did.json"):
            return parts[0]  # a key document: synced like everything a datasite publishes
        location = Layout(root).parse(path)
        if location is None:
            return None
        return location.sender if location.kind is FileKind.REQUEST else location.recipient

    def _scan(self) -> None:
        while not self.stopping.wait(0.01):
            for owner, root in self.roots.items():
                for folder, _, names in os.walk(root):
                    for name in names:
                        path = Path(folder) / name
                        if name.startswith(".") or self._author(root, path) != owner:
                            continue
                        try:
                            content = path.read_bytes()
                        except FileNotFoundError:
                            continue
                        key = (owner, path.relative_to(root), hashlib.sha1(content).hexdigest())
                        if key not in self.seen:
                            self.seen.add(key)
                            self._schedule(owner, key[1], content)

    def _schedule(self, owner: str, relative: Path, content: bytes) -> None:
        with self.lock:
            for other, root in self.roots.items():
                if other == owner:
                    continue
                delays = [self.rng.uniform(0.0, 0.15)]
                if self.rng.random() < 0.3:
                    delays.append(delays[0] + self.rng.uniform(0.1, 0.3))
                    self.duplicates += 1
                for delay in delays:
                    self.counter += 1
                    due = time.monotonic() + delay
                    heapq.heappush(self.jobs, (due, self.counter, root / relative, content))
            self.lock.notify_all()

    def _copy(self) -> None:
        while True:
            with self.lock:
                while True:
                    if self.stopping.is_set():
                        return
                    wait = self.jobs[0][0] - time.monotonic() if self.jobs else 1.0
                    if self.jobs and wait <= 0:
                        _, _, target, content = heapq.heappop(self.jobs)
                        partial = self.rng.random() < 0.5
                        break
                    self.lock.wait(wait)
            target.parent.mkdir(parents=True, exist_ok=True)
            with open(target, "wb") as handle:  # in place: readers may see a partial file
                if partial:
                    handle.write(content[: len(content) // 2])
                    handle.flush()
                    time.sleep(0.05)
                    self.partial += 1
                handle.write(content[len(content) // 2 if partial else 0 :])
            self.copies += 1


def test_faulty_syncer_between_separate_folders(tmp_path: Path) -> None:
    everyone = [AGGREGATOR, *DATASITES]
    roots = {}
    for email in everyone:
        (tmp_path / email / "datasites").mkdir(parents=True)
        roots[email] = tmp_path / email / "datasites"
    transports = {
        email: SyftBoxTransport(
            TransportSettings(email, {"data_dir": str(tmp_path / email)}, poll_interval=0.2)
        )
        for email in everyone
    }
    handled: dict[str, list[str]] = {email: [] for email in DATASITES}
    stop_reasons: dict[str, str | None] = {}

    def counting_app(email: str) -> ClientApp:
        demo = make_client_app()
        app = ClientApp()

        def handle(message: Message, context: Context) -> Message:
            handled[email].append(message.metadata.message_id)
            return demo(message, context)

        app.train()(handle)
        app.evaluate()(handle)
        return app

    def serve(index: int, email: str) -> None:
        context = Context(
            run_id=0,
            node_id=0,
            node_config={"partition-id": index, "num-partitions": len(DATASITES)},
            state=RecordDict(),
            run_config={},
        )
        stop_reasons[email] = syftbox_flwr_client(
            counting_app(email),
            context,
            "mp",
            transport=transports[email],
            trusted_aggregators=[AGGREGATOR],
        )

    threads = [
        threading.Thread(target=serve, args=(i, email), daemon=True)
        for i, email in enumerate(DATASITES)
    ]
    reports: list[RoundReport] = []
    try:
        with FaultySyncer(roots) as syncer:
            for thread in threads:
                thread.start()
            syftbox_flwr_server(
                make_server_app(len(DATASITES), ROUNDS, reports.append, round_timeout=60.0),
                Context(run_id=0, node_id=0, node_config={}, state=RecordDict(), run_config={}),
                DATASITES,
                "mp",
                transport=transports[AGGREGATOR],
            )
            for thread in threads:
                thread.join(60)
                assert not thread.is_alive(), "a client did not stop"
    finally:
        for transport in transports.values():
            transport.close()
    assert [(r.clients, r.failures) for r in reports[1:]] == [(3, 0)] * ROUNDS
    assert stop_reasons == {email: "Server stopped" for email in DATASITES}
    for email, ids in handled.items():
        assert len(ids) == 2 * ROUNDS, (email, ids)
        assert len(set(ids)) == len(ids), f"{email} got a message twice"
    assert syncer.partial and syncer.duplicates and syncer.copies > syncer.duplicates
