"""A round's commit must cost the same at round 1,000 as at round 10 (no O(rounds) work).

Every round of a run is committed: the resumable training loop hands its history to the
engine, which writes the model file and ``state/snapshot.json`` (the commit point), then
derives ``metrics.jsonl`` and ``run.json`` from it. The snapshot holds every committed round's
history and metrics, so code that encodes it whole each round costs O(rounds) per round and
O(rounds^2) per run. This bench drives the real loops (``run_message_rounds`` and the legacy
``ResumableServer``) for N rounds against a real ``ServerEngine`` with a workspace, over the
memory transport; the strategy is a stub that returns a few metrics per round at no cost (no
clients, no training), so what a round costs is the loop's bookkeeping and the commit.

The figure of a round is the CPU time (``time.process_time``: user and system, so the file
writes count, other processes on the machine do not) from the end of one commit to the end of
the next. Per loop it prints the median of rounds 6-15 (the baseline, measured in the same
run) and of the last ten rounds; the headline (last line) is the larger of the two loops'
ratios, last rounds over rounds 6-15. 1.0x is flat.

    python bench/commit.py [--rounds 1000] [--smoke] [--json PATH]
"""

from __future__ import annotations

import argparse
import logging
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

from figures import add_options, report

from syft_flwr.server.engine import ServerEngine
from syft_flwr.server.rounds import ResumePoint
from syft_flwr.server.workspace import Workspace
from syft_flwr.testing.rounds import STYLES, run_rounds
from syft_flwr.transport import TransportSettings
from syft_flwr_memory.network import MemoryNetwork
from syft_flwr_memory.transport import MemoryTransport

SERVER = "server@commit.test"
DATASITE = "ds@commit.test"
BASELINE_ROUNDS = range(6, 16)
"""The rounds whose median is the baseline ("round 10")."""


class Clock:
    """The engine as the loops' round keeper, noting the CPU time at the end of each commit."""

    def __init__(self, engine: ServerEngine) -> None:
        self.engine = engine
        self.ends: dict[int, float] = {}

    def resume_point(self, style: str, num_rounds: int) -> ResumePoint | None:
        return self.engine.resume_point(style, num_rounds)

    def begin_round(self, round_: int, num_rounds: int) -> None:
        self.engine.begin_round(round_, num_rounds)

    def commit_round(self, round_: int, *args: Any) -> None:
        self.engine.commit_round(round_, *args)
        self.ends[round_] = time.process_time()

    def costs(self) -> dict[int, float]:
        """Each round's CPU seconds, from the previous round's commit to its own."""
        return {r: self.ends[r] - self.ends[r - 1] for r in self.ends if r - 1 in self.ends}


def run(style: str, rounds: int, root: Path) -> dict[int, float]:
    """Run ``rounds`` rounds of ``style``'s loop; each round's CPU seconds."""
    transport = MemoryTransport(TransportSettings(SERVER), network=MemoryNetwork())
    engine = ServerEngine(transport, style, [DATASITE], workspace=Workspace(root / style))
    try:
        engine.open_run()
        clock = Clock(engine)
        run_rounds(style, clock, rounds)
        return clock.costs()
    finally:
        engine.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=1000)
    add_options(parser)
    args = parser.parse_args()
    if args.smoke:
        args.rounds = 100
    logging.disable(logging.INFO)  # the loops log every round
    rows = []
    with tempfile.TemporaryDirectory(prefix="syft-flwr-commit-") as workdir:
        for style in STYLES:
            costs = run(style, args.rounds, Path(workdir))
            early = statistics.median(costs[r] for r in BASELINE_ROUNDS)
            late = statistics.median(costs[r] for r in range(args.rounds - 9, args.rounds + 1))
            rows.append({"style": style, "early_ms": early * 1e3, "late_ms": late * 1e3})
            print(
                f"{style} loop: {early * 1e3:.3f} ms CPU per round at rounds 6-15, "
                f"{late * 1e3:.3f} ms at rounds {args.rounds - 9}-{args.rounds} "
                f"({late / early:.2f}x)"
            )
    worst = max(rows, key=lambda row: row["late_ms"] / row["early_ms"])
    ratio = worst["late_ms"] / worst["early_ms"]
    report(
        args,
        "commit",
        f"CPU per round's commit at round {args.rounds} vs round 10 "
        f"(the worse of the message and legacy loops, {worst['style']}): {ratio:.1f}x "
        "(1.0x is flat)",
        ratio=ratio,
        ours=worst["late_ms"],
        baseline=worst["early_ms"],
        unit="ms",
        ours_label=f"CPU per round at round {args.rounds} ({worst['style']} loop)",
        baseline_label="the same at rounds 6-15",
        better="lower",
        rows=rows,
    )


if __name__ == "__main__":
    main()
