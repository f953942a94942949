"""Push + reply of a 100 MiB model message over the syftbox transport, against a plain file copy.

The message is a Flower ``Message`` carrying a 100 MiB float32 ``ArrayRecord``, encoded as the
core hands it to a transport. The transport sends it to a client that echoes it back (push +
reply), on one temporary SyftBox folder. Bytes moved count both directions, so MB/s compares
directly with the baseline measured in the same run: ``shutil.copyfile`` of the same bytes on
the same disk. Each figure is the median of ``--repeat`` runs.

The other lines show where time goes: a copy followed by fsync, next to the transport with
its optional ``fsync = true`` (what durability against power loss costs either), and the
full Flower path (``SyftGrid.send_and_receive`` to a ``ClientApp`` that returns the
arrays), which adds the core's encoding and decoding of the model on both sides. The
headline (last line) is the transport at its default settings relative to the plain copy.
Target: at least 0.3x.

    python bench/throughput.py [--mib 100] [--repeat 3]
"""

from __future__ import annotations

import argparse
import logging
import os
import shutil
import statistics
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
from flwr.app import ArrayRecord, Context, Message, RecordDict
from flwr.clientapp import ClientApp
from flwr.supercore.task_identity import TaskIdentity

from syft_flwr.fl_orchestrator import SyftGrid, syftbox_flwr_client
from syft_flwr.transport import Request, TransportSettings
from syft_flwr.wire import encode_message
from syft_flwr_syftbox import SyftBoxTransport

APP = "throughput"
SERVER, CLIENT = "server@bench.test", "client@bench.test"


def echo_app() -> ClientApp:
    app = ClientApp()

    @app.train()
    def train(message: Message, context: Context) -> Message:
        return Message(RecordDict({"arrays": message.content["arrays"]}), reply_to=message)

    return app


def best_of(repeat: int, run: Callable[[], float]) -> float:
    return statistics.median(run() for _ in range(repeat))


def plain_copy(folder: Path, payload: bytes, repeat: int) -> float:
    source = folder / "model.bin"
    source.write_bytes(payload)

    def once() -> float:
        target = folder / "copy.bin"
        started = time.perf_counter()
        shutil.copyfile(source, target)
        elapsed = time.perf_counter() - started
        target.unlink()
        return elapsed

    return best_of(repeat, once)


def message_round_trip(data_dir: Path, model: ArrayRecord, repeat: int) -> float:
    options = {"data_dir": str(data_dir)}
    server = SyftBoxTransport(TransportSettings(SERVER, options))
    client = SyftBoxTransport(TransportSettings(CLIENT, options))
    context = Context(run_id=0, node_id=0, node_config={}, state=RecordDict(), run_config={})
    thread = threading.Thread(
        target=syftbox_flwr_client, args=(echo_app(), context, APP), kwargs={"transport": client}
    )
    thread.start()
    grid = SyftGrid(f"flwr/{APP}", [CLIENT], server)
    grid.set_run(1)

    def once() -> float:
        message = Message(
            RecordDict({"arrays": model}), dst_node_id=grid.get_node_ids()[0], message_type="train"
        )
        started = time.perf_counter()
        (reply,) = grid.send_and_receive([message], timeout=120)
        elapsed = time.perf_counter() - started
        if reply.has_error():
            raise SystemExit(f"the round trip failed: {reply.error.reason}")
        return elapsed

    try:
        return best_of(repeat, once)
    finally:
        grid.send_stop_signal(reason="benchmark done")
        thread.join(30)
        server.close()
        client.close()


def transport_round_trip(data_dir: Path, payload: bytes, repeat: int, fsync: bool) -> float:
    options = {"data_dir": str(data_dir), "fsync": fsync}
    server = SyftBoxTransport(TransportSettings(SERVER, options))
    client = SyftBoxTransport(TransportSettings(CLIENT, options))

    def echo(request: Request) -> bytes:
        return request.body

    client.serve(f"flwr/{APP}", "raw", echo)
    thread = threading.Thread(target=client.run)
    thread.start()

    def once() -> float:
        started = time.perf_counter()
        future = server.send(CLIENT, f"flwr/{APP}", "raw", payload, time.time() + 120)
        while (reply := server.poll(future)) is None:
            server.wait_ready([future], 120)
        elapsed = time.perf_counter() - started
        if len(reply.body) != len(payload):
            raise SystemExit(f"the raw round trip failed: {reply.status} {reply.detail}")
        server.forget(future)
        return elapsed

    try:
        return best_of(repeat, once)
    finally:
        client.stop()
        thread.join(30)
        server.close()
        client.close()


def durable_copy(folder: Path, payload: bytes, repeat: int) -> float:
    source = folder / "model.bin"
    source.write_bytes(payload)

    def once() -> float:
        target = folder / "copy.bin"
        started = time.perf_counter()
        shutil.copyfile(source, target)
        with open(target, "rb+") as handle:
            os.fsync(handle.fileno())
        elapsed = time.perf_counter() - started
        target.unlink()
        return elapsed

    return best_of(repeat, once)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--mib", type=int, default=100)
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    logging.getLogger("flwr").setLevel(logging.WARNING)
    TaskIdentity.run_id, TaskIdentity.node_id, TaskIdentity.task_id = 1, 1, 1
    model = ArrayRecord([np.ones(args.mib * 2**20 // 4, dtype=np.float32)])
    message = Message(RecordDict({"arrays": model}), dst_node_id=2, message_type="train")
    payload = encode_message(message)  # the model message as the transport carries it
    size = len(payload)
    with tempfile.TemporaryDirectory(prefix="syftbox-throughput-") as workdir:
        root = Path(workdir)
        (root / "SyftBox" / "datasites").mkdir(parents=True)
        copy = plain_copy(root, payload, args.repeat)
        synced_copy = durable_copy(root, payload, args.repeat)
        full = message_round_trip(root / "SyftBox", model, args.repeat)
        synced = transport_round_trip(root / "SyftBox", payload, args.repeat, fsync=True)
        default = transport_round_trip(root / "SyftBox", payload, args.repeat, fsync=False)

    def rate(seconds: float, copies: int = 2) -> float:
        return copies * size / seconds / 1e6

    baseline, durable = rate(copy, copies=1), rate(synced_copy, copies=1)
    mib = size / 2**20
    print(
        f"plain file copy of the {mib:.0f} MiB message: {copy:.3f} s, "
        f"{baseline:.0f} MB/s (baseline)"
    )
    print(f"plain file copy + fsync: {synced_copy:.3f} s, {durable:.0f} MB/s")
    print(
        f"full Flower path (SyftGrid -> ClientApp echo -> SyftGrid, core codec included): "
        f"{full:.3f} s, {rate(full):.0f} MB/s, {rate(full) / baseline:.2f}x"
    )
    print(
        f"transport push + reply, fsync on: {synced:.3f} s, {rate(synced):.0f} MB/s, "
        f"{rate(synced) / durable:.2f}x of the fsynced copy"
    )
    print(
        f"push + reply of a {mib:.0f} MiB model message (defaults) vs plain file copy: "
        f"{rate(default) / baseline:.2f}x (target >= 0.3x)"
    )


if __name__ == "__main__":
    main()
