"""Seconds per FedAvg round over a real SyftBox sync, against the sync's own floor.

A real SyftBox 0.4.0 network runs on loopback (its server and one sync client per party, from
their own virtual environment; see ``syft_flwr_syftbox.testing.network``): an aggregator and
two datasites, each with its own data dir. The floor is what the sync allows at best: the
median round trip of a plain file ping-pong between two parties through the same network
(party A writes a file, B writes one back as soon as its copy of A's appears), times the
exchanges of a round (train and evaluate: 2). Then a FedAvg run, encrypted, with the demo's
apps in threads of this process (server and clients each on their own data dir) measures the
seconds per round after round 1 (round 1 includes the first sight of key documents).

Prints both; the headline (last line) is our seconds per round as a ratio of the floor.
Target: within 1.3x.

    python bench/sync_round.py [--rounds 4] [--pings 5]
"""

import argparse
import os
import statistics
import tempfile
import threading
import time
from pathlib import Path

from figures import add_options, report

from syft_flwr.demo.apps import RoundReport, make_client_app, make_server_app
from syft_flwr.fl_orchestrator import syftbox_flwr_client, syftbox_flwr_server
from syft_flwr.testing.local import empty_context
from syft_flwr.transport import TransportSettings
from syft_flwr_syftbox import SyftBoxTransport
from syft_flwr_syftbox.testing.network import SyftBoxNetwork

AGGREGATOR = "aggregator@bench-university.org"
DATASITES = ["ds1@bench-hospital-a.org", "ds2@bench-hospital-b.org"]
EXCHANGES_PER_ROUND = 2


def wait_for(path: Path, timeout: float = 120.0) -> None:
    deadline = time.monotonic() + timeout
    while not path.exists():
        if time.monotonic() > deadline:
            raise RuntimeError(f"{path} never arrived")
        time.sleep(0.005)


def ping_pong(network: SyftBoxNetwork, count: int) -> list[float]:
    """Round trips of a small file between two parties through the sync."""
    a, b = network.party(DATASITES[0]), network.party(DATASITES[1])
    samples = []
    for index in range(count):
        ping = f"ping-{index}-{os.getpid()}"
        started = time.perf_counter()
        (a.datasites / a.email / "public" / ping).write_text("ping")
        wait_for(b.datasites / a.email / "public" / ping)
        (b.datasites / b.email / "public" / ping).write_text("pong")
        wait_for(a.datasites / b.email / "public" / ping)
        samples.append(time.perf_counter() - started)
    return samples


def fedavg(network: SyftBoxNetwork, rounds: int) -> list[RoundReport]:
    def transport(email: str) -> SyftBoxTransport:
        options = {"data_dir": str(network.party(email).data_dir)}
        return SyftBoxTransport(TransportSettings(email, options, poll_interval=0.5))

    def serve(index: int, email: str) -> None:
        context = empty_context(**{"partition-id": index, "num-partitions": len(DATASITES)})
        syftbox_flwr_client(
            make_client_app(),
            context,
            "bench",
            transport=transport(email),
            trusted_aggregators=[AGGREGATOR],
        )

    threads = [
        threading.Thread(target=serve, args=(i, email), daemon=True)
        for i, email in enumerate(DATASITES)
    ]
    for thread in threads:
        thread.start()
    reports: list[RoundReport] = []
    syftbox_flwr_server(
        make_server_app(len(DATASITES), rounds, reports.append, round_timeout=120),
        empty_context(),
        DATASITES,
        "bench",
        transport=transport(AGGREGATOR),
    )
    for thread in threads:
        thread.join(120)
    return reports


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=4)
    parser.add_argument("--pings", type=int, default=5)
    add_options(parser)
    args = parser.parse_args()
    if args.smoke:
        args.rounds, args.pings = 3, 2
    with tempfile.TemporaryDirectory(prefix="sync-bench-") as tmp:
        root = Path(tmp)
        os.environ["SYFT_FLWR_WORKSPACE"] = str(root / "workspace")
        os.environ["SYFT_FLWR_KEY_DIR"] = str(root / "keys")
        os.environ["SYFT_FLWR_ENCRYPTION_ENABLED"] = "true"
        with SyftBoxNetwork(root / "net") as network:
            for email in (AGGREGATOR, *DATASITES):
                network.add_party(email)
            rtts = ping_pong(network, args.pings)
            reports = fedavg(network, args.rounds)
    rtt = statistics.median(rtts)
    floor = EXCHANGES_PER_ROUND * rtt
    per_round = statistics.median(r.seconds for r in reports[2:]) if len(reports) > 2 else 0.0
    failures = sum(r.failures for r in reports)
    print(f"file ping-pong through the sync: median {rtt:.2f} s over {len(rtts)} round trips")
    print(f"floor of a round ({EXCHANGES_PER_ROUND} exchanges):  {floor:.2f} s")
    print(
        f"FedAvg over the sync, encrypted:    {per_round:.2f} s/round (rounds 2+), "
        f"{failures} failed replies"
    )
    report(
        args,
        "sync_round",
        f"seconds per round vs the sync's floor: {per_round / floor:.2f}x",
        ratio=per_round / floor,
        ours=per_round,
        baseline=floor,
        unit="s",
        ours_label="FedAvg round over a real SyftBox 0.4.0 sync, encrypted",
        baseline_label="the sync's floor (file ping-pong x 2)",
        better="bound",
    )


if __name__ == "__main__":
    main()
