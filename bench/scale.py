"""How FedAvg rounds scale with the number of datasites (issue 16: no quadratic paths).

Runs Flower's message-API ``FedAvg`` through the real server (``syftbox_flwr_server``: the
engine, ``SyftGrid``) with a tiny model for 10, 100 and 1,000 datasites, and prints per size
the time per round, per round and datasite, and the server's inotify watches and open file
descriptors. The baseline is the smallest size measured in the same run; the headline (last
line) is the per-datasite cost at the largest size relative to it. Target: within 1.5x.

- ``--transport memory``: one client thread with a real ``ClientApp`` per datasite.
- ``--transport syftbox`` (default): one local SyftBox folder, real files and real inotify. The
  clients are *simulated* by a responder subprocess (so the figures are the server's and the
  transport's, not 1,000 ClientApps', and the server's watches, fds and CPU are its own): it
  watches each datasite's folder for the server's requests with one inotify instance and one
  watch per datasite (the fewest inotify allows: a request lands in one folder per datasite),
  and answers each with a real Flower reply, encoded by the core's wire codec and written as
  the transport writes replies (an atomic ``.response`` beside the request). Encryption is
  off: sealing is a constant cost per message (``bench/crypto.py`` measures it), and with it
  on, 2,000 opens and seals per round in the one responder process would share the two cores
  with the server and measure the responder.

Either way the server runs with a workspace, so the future journal is written as in
``syft-flwr run``.

    python bench/scale.py [--transport memory|syftbox] [--sizes 10 100 1000] [--rounds 3]
                          [--smoke] [--json PATH]
"""

from __future__ import annotations

import argparse
import ctypes
import logging
import os
import select
import struct
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
from figures import add_options, report
from flwr.app import ArrayRecord, Context, Message, MetricRecord, RecordDict
from flwr.clientapp import ClientApp
from flwr.serverapp import Grid, ServerApp
from flwr.serverapp.strategy import FedAvg

from syft_flwr.fl_orchestrator import syftbox_flwr_client, syftbox_flwr_server
from syft_flwr.grid.syft_grid import APP_PREFIX, DEFAULT_ENDPOINT
from syft_flwr.plugins import get_plugin_manager, get_transport_registry
from syft_flwr.stop_signal import SYSTEM_MESSAGE_TYPE
from syft_flwr.testing.local import local_options
from syft_flwr.transport import TransportSettings
from syft_flwr.wire import decode_message, encode_message_frames
from syft_flwr_syftbox.atomic import is_temp_name
from syft_flwr_syftbox.files import encode_rpc_file, read_rpc_file
from syft_flwr_syftbox.layout import FileKind, Layout
from syft_flwr_syftbox.rpcfile import RpcFile
from syft_flwr_syftbox.safe_fs import SafeRoot
from syft_flwr_syftbox.watcher import inotify_watches

APP = "scale"
SERVER = "server@scale.test"
READY_WAIT = 120.0
"""Longest wait for the responder to have its watches in place."""


def datasite_emails(n: int) -> list[str]:
    return [f"ds{i}@scale.test" for i in range(n)]


@dataclass(frozen=True)
class Row:
    """One size's figures, as ``--json`` writes them."""

    n: int
    ms_per_round: float
    ms_per_datasite: float
    watches: int
    fds: int


# -- the server's resources ---------------------------------------------------------------


def open_fds() -> int:
    """File descriptors this process holds (``/proc/self/fd``)."""
    return len(os.listdir("/proc/self/fd"))


# -- the server -----------------------------------------------------------------------------


def tiny_client_app() -> ClientApp:
    app = ClientApp()

    @app.train()
    def train(message: Message, context: Context) -> Message:
        return Message(train_reply(message), reply_to=message)

    @app.evaluate()
    def evaluate(message: Message, context: Context) -> Message:
        return Message(evaluate_reply(), reply_to=message)

    return app


def train_reply(message: Message) -> RecordDict:
    arrays = message.content["arrays"]
    return RecordDict({"arrays": arrays, "metrics": MetricRecord({"num-examples": 10})})


def evaluate_reply() -> RecordDict:
    return RecordDict({"metrics": MetricRecord({"eval_loss": 0.5, "num-examples": 10})})


def timed_server_app(n: int, rounds: int, out: dict[str, float]) -> ServerApp:
    app = ServerApp()

    @app.main()
    def main(grid: Grid, context: Context) -> None:
        strategy = FedAvg(min_train_nodes=n, min_evaluate_nodes=n, min_available_nodes=n)
        started = time.perf_counter()
        strategy.start(
            grid=grid,
            initial_arrays=ArrayRecord([np.zeros(16, np.float32)]),
            num_rounds=rounds,
            timeout=600,
        )
        out["per_round"] = (time.perf_counter() - started) / rounds
        out["watches"] = inotify_watches() or 0  # the server's transport is still open here
        out["fds"] = open_fds()

    return app


def run_server(
    transport_name: str, options: dict[str, Any], n: int, rounds: int, workdir: Path
) -> Row:
    """Time ``rounds`` FedAvg rounds of the real server, with a workspace (so the future
    journal is written, as in ``syft-flwr run``)."""
    os.environ["SYFT_FLWR_WORKSPACE"] = str(workdir / "workspace")
    registry = get_transport_registry(get_plugin_manager())
    server = registry.create(transport_name, TransportSettings(SERVER, options))
    out: dict[str, float] = {}
    try:
        syftbox_flwr_server(
            timed_server_app(n, rounds, out),
            Context(0, 0, {}, RecordDict(), {}),
            datasite_emails(n),
            APP,
            transport=server,
        )
    finally:
        server.close()
    if "per_round" not in out:
        raise SystemExit(f"the run with {n} datasites failed; rerun with logging enabled")
    per_round = out["per_round"]
    return Row(n, per_round * 1e3, per_round * 1e3 / n, int(out["watches"]), int(out["fds"]))


def measure_memory(n: int, rounds: int) -> Row:
    """FedAvg over the memory transport, one ClientApp thread per datasite."""
    manager = get_plugin_manager()
    registry = get_transport_registry(manager)
    with tempfile.TemporaryDirectory() as workdir:
        options = local_options("memory", Path(workdir), manager, registry)
        transports = []
        threads = []
        for email in datasite_emails(n):
            client = registry.create("memory", TransportSettings(email, options))
            transports.append(client)
            thread = threading.Thread(
                target=syftbox_flwr_client,
                args=(tiny_client_app(), Context(0, 0, {}, RecordDict(), {}), APP),
                kwargs={"transport": client, "trusted_aggregators": [SERVER]},
                daemon=True,
            )
            thread.start()
            threads.append(thread)
        try:
            return run_server("memory", options, n, rounds, Path(workdir))
        finally:
            for thread in threads:
                thread.join(60)
            for client in transports:
                client.close()


def measure_syftbox(n: int, rounds: int) -> Row:
    """FedAvg over one local SyftBox folder, the datasites simulated by a responder process."""
    with tempfile.TemporaryDirectory() as workdir:
        options = local_options("syftbox", Path(workdir))
        datasites = Path(options["data_dir"]) / "datasites"
        responder = subprocess.Popen(
            [sys.executable, __file__, "--respond", str(datasites), "--sizes", str(n)],
            stdin=subprocess.PIPE,  # its end of the pipe closing tells the responder to go
            stdout=subprocess.PIPE,
            text=True,
        )
        try:
            wait_ready(responder)
            return run_server("syftbox", options, n, rounds, Path(workdir))
        finally:
            assert responder.stdin is not None
            responder.stdin.close()
            try:
                responder.wait(30)
            except subprocess.TimeoutExpired:
                responder.kill()
                responder.wait(30)


def wait_ready(responder: subprocess.Popen[str]) -> None:
    assert responder.stdout is not None
    readable, _, _ = select.select([responder.stdout], [], [], READY_WAIT)
    line = responder.stdout.readline() if readable else ""
    if line.strip() != "ready":
        raise SystemExit(f"the responder did not start within {READY_WAIT:g} s (got {line!r})")


# -- the responder (a subprocess: the simulated datasites) ----------------------------------

_IN_MOVED_TO = 0x080
_IN_CREATE = 0x100
"""The transport publishes a file by hard-linking it in (a create), or renaming (a move)."""
_EVENT = struct.Struct("iIII")


class Inotify:
    """One inotify instance watching a fixed set of folders for files linked or moved in."""

    def __init__(self) -> None:
        self._libc = ctypes.CDLL(None, use_errno=True)
        self.fd = self._libc.inotify_init1(os.O_CLOEXEC)
        if self.fd < 0:
            raise OSError(ctypes.get_errno(), "inotify_init1")
        self._folders: dict[int, Path] = {}

    def watch(self, folder: Path) -> None:
        wd = self._libc.inotify_add_watch(self.fd, os.fsencode(folder), _IN_CREATE | _IN_MOVED_TO)
        if wd < 0:
            raise OSError(ctypes.get_errno(), f"inotify_add_watch {folder}")
        self._folders[wd] = folder

    def read(self) -> list[Path]:
        """The files of the next batch of events (blocks until there is one)."""
        data = os.read(self.fd, 1 << 16)
        paths = []
        offset = 0
        while offset < len(data):
            wd, _, _, size = _EVENT.unpack_from(data, offset)
            offset += _EVENT.size
            name = data[offset : offset + size].rstrip(b"\0")
            offset += size
            if wd in self._folders and name:
                paths.append(self._folders[wd] / os.fsdecode(name))
        return paths


def respond(datasites: Path, n: int) -> None:
    """Answer every request the server writes to any of ``n`` simulated datasites."""
    layout = Layout(datasites)
    fs = SafeRoot(datasites)
    inotify = Inotify()
    for email in datasite_emails(n):
        # what a datasite's serve() and the server's first request would create
        folder = layout.sender_dir(email, APP_PREFIX + APP, DEFAULT_ENDPOINT, SERVER)
        fs.makedirs(folder)
        inotify.watch(folder)
    print("ready", flush=True)
    while True:
        readable, _, _ = select.select([inotify.fd, sys.stdin], [], [])
        if sys.stdin in readable:
            return  # the server's process closed the pipe (finished, or died)
        for path in inotify.read():
            if not path.name.endswith(FileKind.REQUEST.value) or is_temp_name(path.name):
                continue
            rpc = read_rpc_file(path, FileKind.REQUEST, 1 << 30)
            message = decode_message(bytes(rpc.body))
            kind = message.metadata.message_type
            if kind == SYSTEM_MESSAGE_TYPE:
                continue  # the stop signal: a client answers nothing
            content = train_reply(message) if kind.startswith("train") else evaluate_reply()
            reply = RpcFile(
                kind=FileKind.RESPONSE,
                format=rpc.format,
                id=rpc.id,
                sender=rpc.recipient,
                recipient=rpc.recipient,
                app=rpc.app,
                endpoint=rpc.endpoint,
                created=time.time(),
                expires=rpc.expires,
                body=tuple(encode_message_frames(Message(content, reply_to=message))),
            )
            fs.write_atomic(  # unsynced, as the transport's default ``fsync = false``
                path.with_suffix(FileKind.RESPONSE.value), encode_rpc_file(reply), fsync=False
            )


# -- the report -----------------------------------------------------------------------------


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--transport", choices=["memory", "syftbox"], default="syftbox")
    parser.add_argument("--sizes", type=int, nargs="+", default=[10, 100, 1000])
    parser.add_argument("--rounds", type=int, default=3)
    add_options(parser)
    parser.add_argument("--respond", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.respond is not None:
        respond(args.respond, args.sizes[0])
        return
    if args.smoke:
        args.sizes, args.rounds = [10, 50], 2
    logging.getLogger("flwr").setLevel(logging.WARNING)
    if args.transport == "syftbox":
        os.environ["SYFT_FLWR_ENCRYPTION_ENABLED"] = "false"
        print("syftbox: encryption off, datasites simulated by a responder process", flush=True)
    measure = measure_syftbox if args.transport == "syftbox" else measure_memory
    rows = []
    for n in args.sizes:
        row = measure(n, args.rounds)
        rows.append(row)
        print(
            f"{args.transport}: {n:5d} datasites  {row.ms_per_round:9.1f} ms/round  "
            f"{row.ms_per_datasite:7.3f} ms/round/datasite  "
            f"server: {row.watches:5d} inotify watches  {row.fds:5d} open fds",
            flush=True,
        )
    base, top = rows[0], rows[-1]
    ratio = top.ms_per_datasite / base.ms_per_datasite
    report(
        args,
        "scale",
        f"per-datasite cost at {top.n} vs {base.n} datasites: {ratio:.2f}x (target <= 1.5x)",
        ratio=ratio,
        better="lower",
        ours=top.ms_per_datasite,
        baseline=base.ms_per_datasite,
        unit="ms",
        ours_label=f"round cost per datasite at {top.n} datasites over {args.transport}",
        baseline_label=f"the same at {base.n} datasites",
        rows=[{"transport": args.transport, **asdict(row)} for row in rows],
    )


if __name__ == "__main__":
    main()
