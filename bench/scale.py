"""How FedAvg rounds scale with the number of datasites (issue: no quadratic paths).

Runs Flower's message-API ``FedAvg`` over a locally runnable transport (memory by default)
with a tiny model and one client thread per datasite, for 10, 100 and 1,000 datasites, and
prints the time per round and per datasite for each size. The baseline is the smallest size
measured in the same run; the headline (last line) is the per-datasite cost at the largest
size relative to it. Target: within 2x.

    python bench/scale.py [--transport memory] [--sizes 10 100 1000] [--rounds 3]
"""

from __future__ import annotations

import argparse
import logging
import tempfile
import threading
import time
from pathlib import Path

import numpy as np
from flwr.app import ArrayRecord, Context, Message, MetricRecord, RecordDict
from flwr.clientapp import ClientApp
from flwr.serverapp import Grid, ServerApp
from flwr.serverapp.strategy import FedAvg

from syft_flwr.fl_orchestrator import syftbox_flwr_client, syftbox_flwr_server
from syft_flwr.plugins import get_plugin_manager, get_transport_registry
from syft_flwr.testing.local import local_options
from syft_flwr.transport import TransportSettings


def tiny_client_app() -> ClientApp:
    app = ClientApp()

    @app.train()
    def train(message: Message, context: Context) -> Message:
        arrays = message.content["arrays"]
        metrics = MetricRecord({"num-examples": 10})
        return Message(RecordDict({"arrays": arrays, "metrics": metrics}), reply_to=message)

    @app.evaluate()
    def evaluate(message: Message, context: Context) -> Message:
        metrics = MetricRecord({"eval_loss": 0.5, "num-examples": 10})
        return Message(RecordDict({"metrics": metrics}), reply_to=message)

    return app


def timed_server_app(n: int, rounds: int, timings: list[float]) -> ServerApp:
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
        timings.append((time.perf_counter() - started) / rounds)

    return app


def measure(transport: str, n: int, rounds: int) -> float:
    """Seconds per FedAvg round (train + evaluate) with ``n`` datasites."""
    manager = get_plugin_manager()
    registry = get_transport_registry(manager)
    with tempfile.TemporaryDirectory() as workdir:
        options = local_options(transport, Path(workdir), manager, registry)
        emails = [f"ds{i}@scale.test" for i in range(n)]
        transports = []
        threads = []
        for email in emails:
            client = registry.create(transport, TransportSettings(email, options))
            transports.append(client)
            context = Context(0, 0, {}, RecordDict(), {})
            thread = threading.Thread(
                target=syftbox_flwr_client,
                args=(tiny_client_app(), context, "scale"),
                kwargs={"transport": client},
                daemon=True,
            )
            thread.start()
            threads.append(thread)
        server = registry.create(transport, TransportSettings("server@scale.test", options))
        timings: list[float] = []
        try:
            syftbox_flwr_server(
                timed_server_app(n, rounds, timings),
                Context(0, 0, {}, RecordDict(), {}),
                emails,
                "scale",
                transport=server,
            )
        finally:
            server.close()
            for thread in threads:
                thread.join(60)
            for client in transports:
                client.close()
    if not timings:
        raise SystemExit(f"the run with {n} datasites failed; rerun with logging enabled")
    return timings[0]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--transport", default="memory")
    parser.add_argument("--sizes", type=int, nargs="+", default=[10, 100, 1000])
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    logging.getLogger("flwr").setLevel(logging.WARNING)
    results = []
    for n in args.sizes:
        per_round = measure(args.transport, n, args.rounds)
        results.append((n, per_round))
        print(
            f"{args.transport}: {n:5d} datasites  {per_round * 1e3:9.1f} ms/round  "
            f"{per_round / n * 1e6:8.1f} us/datasite",
            flush=True,
        )
    (base_n, base), (top_n, top) = results[0], results[-1]
    ratio = (top / top_n) / (base / base_n)
    print(f"per-datasite cost at {top_n} vs {base_n} datasites: {ratio:.2f}x (target <= 2x)")


if __name__ == "__main__":
    main()
