"""A model of 100 MiB and of 1 GiB, server -> client -> server over SyftBox, encrypted, against a
plain copy.

For each size, the server and the client each run in their own process on one temporary SyftBox
folder, with end-to-end encryption on (real keys, made and published as a run makes them). The
server sends a Flower ``Message`` whose ``ArrayRecord`` holds one float32 array of that size
(read from a file, as a server loads a model) through ``SyftGrid.send_and_receive``; the
client's ``ClientApp`` returns the arrays; the figure is the time until the server holds the
decoded reply. The baseline, measured in the same run, is a plain ``shutil.copyfile`` of the
same bytes there and back through the same folder; a second line shows writing the bytes from
memory and reading them back, there and back, the floor of anything that handles the bytes in
user space (sealing does), where the kernel-side copy does not; a third seals into a file and
opens from it there and back in one process (the AES-GCM passes, each file's page cache and each
received model's fresh memory, with nothing of the transport), the floor of any encrypted copy
on this machine. Each process reports its peak resident memory (``VmHWM``) as a multiple of the
model, the interpreter and libraries included.

Targets (issue 16): at 1 GiB, wall time <= 3x the plain copy, and peak memory <= 2.5x the
model in each process. The headline (last line) is the wall ratio at the largest size.

    python bench/throughput.py [--mib 1 10 100 1024] [--repeat 2] [--json PATH] [--smoke]
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
from figures import add_options, report

APP = "throughput"
SERVER, CLIENT = "server@bench.test", "client@bench.test"


def peak_rss() -> int:
    """This process's peak resident memory in bytes (``VmHWM``)."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) * 1024
    raise SystemExit("no VmHWM in /proc/self/status")


def transport_options(root: Path, size: int) -> dict[str, Any]:
    return {"data_dir": str(root / "SyftBox"), "max_body_size": 2 * size + 2**20}


def run_server(root: Path, size: int, repeat: int) -> dict[str, Any]:
    from flwr.app import Array, ArrayRecord, Message, RecordDict

    from syft_flwr.fl_orchestrator import SyftGrid
    from syft_flwr.transport import TransportSettings
    from syft_flwr_syftbox import SyftBoxTransport

    transport = SyftBoxTransport(TransportSettings(SERVER, transport_options(root, size)))
    deadline = time.monotonic() + 60
    while transport.fetch_key_document(CLIENT) is None:
        if time.monotonic() > deadline:
            raise SystemExit("the client published no key document within 60 s")
        time.sleep(0.05)
    grid = SyftGrid(f"flwr/{APP}", [CLIENT], transport)
    grid.set_run(1)
    data = (root / "model.bin").read_bytes()  # the model, loaded once
    model = ArrayRecord({"w": Array("float32", (size // 4,), "numpy.ndarray", data)})
    del data
    times = []
    for _ in range(repeat):
        message = Message(
            RecordDict({"arrays": model}), dst_node_id=grid.get_node_ids()[0], message_type="train"
        )
        started = time.perf_counter()
        (reply,) = grid.send_and_receive([message], timeout=600)
        times.append(time.perf_counter() - started)
        if reply.has_error():
            raise SystemExit(f"the round trip failed: {reply.error.reason}")
        if reply.content["arrays"]["w"].data != model["w"].data:
            raise SystemExit("the reply's model differs from the one sent")
        del message, reply
    grid.send_stop_signal(reason="benchmark done")
    transport.close()
    return {"seconds": times, "peak": peak_rss()}


def run_client(root: Path, size: int) -> dict[str, Any]:
    from flwr.app import Context, Message, RecordDict
    from flwr.clientapp import ClientApp

    from syft_flwr.fl_orchestrator import syftbox_flwr_client
    from syft_flwr.transport import TransportSettings
    from syft_flwr_syftbox import SyftBoxTransport

    app = ClientApp()

    @app.train()
    def train(message: Message, context: Context) -> Message:
        return Message(RecordDict({"arrays": message.content["arrays"]}), reply_to=message)

    transport = SyftBoxTransport(TransportSettings(CLIENT, transport_options(root, size)))
    context = Context(run_id=0, node_id=0, node_config={}, state=RecordDict(), run_config={})
    syftbox_flwr_client(app, context, APP, transport=transport, trusted_aggregators=[SERVER])
    transport.close()
    return {"peak": peak_rss()}


def child(role: str, root: Path, size: int, repeat: int) -> subprocess.Popen[str]:
    env = dict(
        os.environ,
        SYFT_FLWR_ENCRYPTION_ENABLED="true",
        SYFT_FLWR_KEY_DIR=str(root / "keys"),
    )
    command = [sys.executable, __file__, "--role", role, "--dir", str(root)]
    command += ["--bytes", str(size), "--repeat", str(repeat)]
    return subprocess.Popen(command, env=env, stdout=subprocess.PIPE, text=True)


def result(process: subprocess.Popen[str], timeout: float) -> dict[str, Any]:
    out, _ = process.communicate(timeout=timeout)
    if process.returncode:
        raise SystemExit(f"a benchmark process failed with exit code {process.returncode}")
    value: dict[str, Any] = json.loads(out.strip().splitlines()[-1])
    return value


def plain_copy(root: Path, repeat: int) -> float:
    """Seconds to copy the model there and back through the folder (median)."""
    source, there, back = root / "model.bin", root / "there.bin", root / "back.bin"

    def once() -> float:
        started = time.perf_counter()
        shutil.copyfile(source, there)
        shutil.copyfile(there, back)
        elapsed = time.perf_counter() - started
        there.unlink()
        back.unlink()
        return elapsed

    return statistics.median(once() for _ in range(repeat))


def memory_copy(root: Path, repeat: int) -> float:
    """Seconds to write the model from memory into a file and read it back into memory, there
    and back (median): what any transport that must touch the bytes in user space (to seal
    them) pays at least, next to the kernel-side ``copyfile``."""
    data = (root / "model.bin").read_bytes()
    target = bytearray(len(data))

    def once() -> float:
        started = time.perf_counter()
        for name in ("there.bin", "back.bin"):
            path = root / name
            path.write_bytes(data)
            with path.open("rb") as handle:
                handle.readinto(target)
        elapsed = time.perf_counter() - started
        for name in ("there.bin", "back.bin"):
            (root / name).unlink()
        return elapsed

    return statistics.median(once() for _ in range(repeat))


def sealed_floor(root: Path, repeat: int) -> float:
    """Seconds to seal the model into a file through one reused buffer, then read and open it
    into fresh plaintext, there and back, in this process (median): the same passes as the
    transport (AES-GCM each way, the page cache of each file, fresh memory for each received
    model), without parts, hashes, watchers or processes: the floor of an encrypted copy."""
    import os as _os

    from syft_flwr.crypto.envelope import open_frames, parse_envelope, seal_stream
    from syft_flwr.crypto.keys import IdentityKeys
    from syft_flwr.transport import stream_body
    from syft_flwr_syftbox.received import FileBody

    sender, recipient = IdentityKeys.generate(SERVER), IdentityKeys.generate(CLIENT)
    fields = {
        "sender": SERVER,
        "recipient": CLIENT,
        "app": APP,
        "endpoint": "ep",
        "reply_to": b"",
        "created": 1.0,
        "expires": 2.0,
        "sender_kid": sender.current.kid,
        "recipient_kid": recipient.current.kid,
    }

    def once() -> float:
        held = [(root / "model.bin").read_bytes()]  # the model in hand, each way
        started = time.perf_counter()
        for name in ("there.bin", "back.bin"):
            path = root / name
            sealed = seal_stream(
                {**fields, "message_id": _os.urandom(16)},
                held.pop(),
                sender.current.private,
                recipient.current.public,
            )
            with path.open("wb") as handle:
                for frame in stream_body(sealed):
                    handle.write(frame)
            del sealed
            with path.open("rb") as handle:
                body = FileBody(handle, 0, path.stat().st_size)
            envelope = parse_envelope(body)
            held += open_frames(envelope, recipient.current.private, sender.current.public)
        elapsed = time.perf_counter() - started
        for name in ("there.bin", "back.bin"):
            (root / name).unlink()
        return elapsed

    return statistics.median(once() for _ in range(repeat))


def measure(mib: float, repeat: int) -> dict[str, float]:
    size = int(mib * 2**20) // 4 * 4
    with tempfile.TemporaryDirectory(prefix="syftbox-throughput-") as workdir:
        root = Path(workdir)
        (root / "SyftBox" / "datasites").mkdir(parents=True)
        np.random.default_rng(0).random(size // 4, dtype=np.float32).tofile(root / "model.bin")
        copy = plain_copy(root, repeat)
        through_memory = memory_copy(root, repeat)
        floor = sealed_floor(root, repeat)
        client = child("client", root, size, repeat)
        server = child("server", root, size, repeat)
        try:
            served = result(server, 600 + 60 * mib / 100)
            answered = result(client, 120)
        finally:
            for process in (server, client):
                if process.poll() is None:
                    process.kill()
                    process.wait(10)
    ours = statistics.median(served["seconds"])
    return {
        "mib": mib,
        "ours_s": ours,
        "copy_s": copy,
        "ratio": ours / copy,
        "memory_copy_s": through_memory,
        "sealed_floor_s": floor,
        "server_peak_x": served["peak"] / size,
        "client_peak_x": answered["peak"] / size,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--mib", type=float, nargs="+", default=[1, 10, 100, 1024])
    parser.add_argument("--repeat", type=int, default=2)
    add_options(parser)
    parser.add_argument("--role", choices=["server", "client"], help=argparse.SUPPRESS)
    parser.add_argument("--dir", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--bytes", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args()
    logging.getLogger("flwr").setLevel(logging.WARNING)
    if args.role is not None:
        run = run_server(args.dir, args.bytes, args.repeat) if args.role == "server" else None
        outcome = run if run is not None else run_client(args.dir, args.bytes)
        print(json.dumps(outcome))
        return
    sizes, repeat = ([20.0], 1) if args.smoke else (args.mib, args.repeat)
    rows = [measure(mib, repeat) for mib in sizes]
    for row in rows:
        print(
            f"{row['mib']:.0f} MiB model, encrypted, server -> client -> server: "
            f"{row['ours_s']:.2f} s; plain copy there and back: {row['copy_s']:.2f} s; "
            f"write + read through memory there and back: {row['memory_copy_s']:.2f} s "
            f"({row['ours_s'] / row['memory_copy_s']:.1f}x); "
            f"seal + write + read + open in one process there and back: "
            f"{row['sealed_floor_s']:.2f} s ({row['ours_s'] / row['sealed_floor_s']:.1f}x); "
            f"peak memory: server {row['server_peak_x']:.2f}x, client "
            f"{row['client_peak_x']:.2f}x the model (targets <= 2.5x)"
        )
    last = rows[-1]
    report(
        args,
        "throughput",
        f"wall time vs plain copy, {last['mib']:.0f} MiB encrypted round trip: "
        f"{last['ratio']:.1f}x (target <= 3x); peak memory server "
        f"{last['server_peak_x']:.2f}x, client {last['client_peak_x']:.2f}x the model",
        ratio=last["ratio"],
        better="lower",
        ours=last["ours_s"],
        baseline=last["copy_s"],
        unit="s",
        ours_label=f"{last['mib']:.0f} MiB model, encrypted, server -> client -> server",
        baseline_label="plain copy of the same bytes there and back",
        rows=rows,
    )


if __name__ == "__main__":
    main()
