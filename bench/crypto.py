"""What end-to-end encryption costs: wire size, codec throughput, and round trips.

All figures come from one run, so ratios compare like with like:

1. wire size of a 100 MiB model message sealed vs raw (target: at most raw + 1 KiB);
2. throughput of encode + seal + open + decode against plaintext encode + decode (one core);
3. median round trip of a 1 KiB message, encrypted vs plaintext, through ``SyftGrid`` and a
   ``ClientApp`` that echoes it (per-message overhead);
4. push + reply of the 100 MiB model through the transport, encrypted vs plaintext.

The headline (last line) is (4): encrypted push + reply throughput relative to plaintext (target
at least 0.5x). ``--transport`` takes any installed transport that implements the key document
hooks and can run locally (``memory`` by default; it moves bodies without copying, so crypto
is the whole difference there and the ratio is a worst case).

    python bench/crypto.py [--mib 100] [--repeat 3] [--transport memory]
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import statistics
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
from figures import add_options, report
from flwr.app import ArrayRecord, Context, Message, RecordDict
from flwr.clientapp import ClientApp
from flwr.supercore.task_identity import TaskIdentity

from syft_flwr.config import RuntimeSettings
from syft_flwr.crypto import IdentityKeys, ReplayStore, SecureChannel, build_document
from syft_flwr.crypto.policy import open_channel
from syft_flwr.fl_orchestrator import SyftGrid, syftbox_flwr_client
from syft_flwr.plugins import get_plugin_manager, get_transport_registry
from syft_flwr.testing.local import local_options
from syft_flwr.transport import Transport, TransportSettings
from syft_flwr.wire import decode_message, encode_message, encode_message_frames

SERVER, CLIENT, APP = "server@bench.org", "client@bench.org", "bench"
MIB = 1 << 20


def model_of(nbytes: int) -> ArrayRecord:
    rng = np.random.default_rng(0)
    return ArrayRecord([rng.random(max(1, nbytes // 4), dtype=np.float32)])


def message_of(model: ArrayRecord, node_id: int = 2) -> Message:
    return Message(RecordDict({"arrays": model}), dst_node_id=node_id, message_type="train")


def median_seconds(repeat: int, once: Callable[[], float]) -> float:
    return statistics.median(once() for _ in range(repeat))


def channels() -> tuple[SecureChannel, SecureChannel]:
    server, client = IdentityKeys.generate(SERVER), IdentityKeys.generate(CLIENT)
    documents = {k.email: json.dumps(build_document(k)).encode() for k in (server, client)}
    return (
        SecureChannel(server, ReplayStore(":memory:"), documents.get),
        SecureChannel(client, ReplayStore(":memory:"), documents.get),
    )


def codec(message: Message, repeat: int, sealed: bool) -> float:
    sender, receiver = channels()

    def once() -> float:
        started = time.perf_counter()
        if sealed:  # as the grid does: the codec's frames straight into the cipher
            frames = encode_message_frames(message)
            body, _ = sender.seal(CLIENT, "flwr/bench", "messages", frames, time.time() + 600)
            body = receiver.open(body, sender=SERVER, app="flwr/bench", endpoint="messages").body
        else:
            body = encode_message(message)
        decode_message(body)
        return time.perf_counter() - started

    return median_seconds(repeat, once)


def echo_app() -> ClientApp:
    app = ClientApp()

    @app.train()
    def train(message: Message, context: Context) -> Message:
        return Message(RecordDict({"arrays": message.content["arrays"]}), reply_to=message)

    return app


def round_trip(name: str, workdir: Path, model: ArrayRecord, repeat: int, sealed: bool) -> float:
    os.environ["SYFT_FLWR_ENCRYPTION_ENABLED"] = "true" if sealed else "false"
    os.environ["SYFT_FLWR_KEY_DIR"] = str(workdir / "keys")
    manager = get_plugin_manager()
    registry = get_transport_registry(manager)
    options = local_options(name, workdir / f"{name}-{sealed}-{len(model.values())}", manager)
    (workdir / f"{name}-{sealed}-{len(model.values())}").mkdir(exist_ok=True)
    server = registry.create(name, TransportSettings(SERVER, options, poll_interval=0.01))
    client = registry.create(name, TransportSettings(CLIENT, options, poll_interval=0.01))
    context = Context(run_id=0, node_id=0, node_config={}, state=RecordDict(), run_config={})
    thread = threading.Thread(
        target=syftbox_flwr_client,
        args=(echo_app(), context, APP),
        kwargs={"transport": client, "trusted_aggregators": [SERVER]},
    )
    thread.start()
    if sealed:
        wait_for_document(server, CLIENT)
    channel = open_channel(server, RuntimeSettings.from_env(), manager)
    grid = SyftGrid(f"flwr/{APP}", [CLIENT], server, channel=channel)
    grid.set_run(1)

    def once() -> float:
        message = message_of(model, grid.get_node_ids()[0])
        started = time.perf_counter()
        (reply,) = grid.send_and_receive([message], timeout=300)
        elapsed = time.perf_counter() - started
        if reply.has_error():
            raise SystemExit(f"the round trip failed: {reply.error.reason}")
        return elapsed

    try:
        return median_seconds(repeat, once)
    finally:
        grid.send_stop_signal(reason="benchmark done")
        thread.join(30)
        if channel is not None:
            channel.close()
        server.close()
        client.close()


def wait_for_document(transport: Transport, datasite: str, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while transport.fetch_key_document(datasite) is None:
        if time.monotonic() > deadline:
            raise SystemExit(f"{datasite} never published its key document")
        time.sleep(0.01)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--mib", type=int, default=100)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--transport", default="memory")
    add_options(parser)
    args = parser.parse_args()
    if args.smoke:
        args.mib, args.repeat = 4, 1
    logging.basicConfig(level=logging.ERROR)
    TaskIdentity.run_id, TaskIdentity.node_id, TaskIdentity.task_id = 1, 1, 1
    big = model_of(args.mib * MIB)
    message = message_of(big)

    raw = encode_message(message)
    sender, _ = channels()
    sealed, _ = sender.seal(CLIENT, "flwr/bench", "messages", raw, time.time() + 600)
    print(
        f"wire size, {args.mib} MiB model: raw {len(raw)} B, sealed {len(sealed)} B, "
        f"overhead {len(sealed) - len(raw)} B ({len(sealed) / len(raw):.6f}x; target <= +1024 B)"
    )
    del raw, sealed

    mb = args.mib * MIB / 1e6
    plain_codec = codec(message, args.repeat, sealed=False)
    sealed_codec = codec(message, args.repeat, sealed=True)
    print(
        f"codec, {args.mib} MiB: plaintext encode+decode {mb / plain_codec:8.1f} MB/s, "
        f"encode+seal+open+decode {mb / sealed_codec:8.1f} MB/s "
        f"({plain_codec / sealed_codec:.2f}x)"
    )

    with tempfile.TemporaryDirectory(prefix="syft-flwr-bench-crypto-") as tmp:
        workdir = Path(tmp)
        small = model_of(1024)
        plain_small = round_trip(args.transport, workdir, small, max(20, args.repeat), False)
        sealed_small = round_trip(args.transport, workdir, small, max(20, args.repeat), True)
        print(
            f"1 KiB round trip over {args.transport}: plaintext {plain_small * 1e3:.2f} ms, "
            f"encrypted {sealed_small * 1e3:.2f} ms "
            f"(+{(sealed_small - plain_small) * 1e3:.2f} ms per message)"
        )
        plain_big = round_trip(args.transport, workdir, big, args.repeat, False)
        sealed_big = round_trip(args.transport, workdir, big, args.repeat, True)
        moved = 2 * mb
        print(
            f"{args.mib} MiB push+reply over {args.transport}: plaintext "
            f"{moved / plain_big:.1f} MB/s, encrypted {moved / sealed_big:.1f} MB/s"
        )
    report(
        args,
        "crypto",
        f"encrypted/plaintext push+reply throughput: {plain_big / sealed_big:.2f}x",
        ratio=plain_big / sealed_big,
        better="higher",
        ours=moved / sealed_big,
        baseline=moved / plain_big,
        unit="MB/s",
        ours_label=f"{args.mib} MiB push+reply over {args.transport}, encrypted",
        baseline_label="the same, plaintext",
    )


if __name__ == "__main__":
    main()
