"""A round's commit must cost the same at round 1,000 as at round 10 (no O(rounds) work).

Every round of a run is committed: the resumable training loop hands its history to the
engine, which writes the model file and ``state/snapshot.json`` (the commit point), then
derives ``metrics.jsonl`` and ``run.json`` from it. The snapshot holds every committed round's
history and metrics, so code that encodes it whole each round costs O(rounds) per round and
O(rounds^2) per run. This bench drives the real loops (``run_message_rounds`` and the legacy
``ResumableServer``, through ``syft_flwr.testing.rounds``) against a real ``ServerEngine``
with a workspace, over the memory transport; the strategy is a stub that returns a few
metrics per round at no cost (no clients, no training), so what a round costs is the loop's
bookkeeping and the commit.

A round's figure is the CPU time of its thread (``time.thread_time``: user and system, so the
file writes count, other processes do not) from ``begin_round`` to the end of its commit.
Per loop, two runs go on in two threads that take turns: a long run to round N whose last ten
rounds are measured, and a short one whose rounds 6-15 (the baseline) are measured, one round
of each in turn, so both see the same machine. Each window's figure is its least round (the
one least disturbed by the machine's other work). The headline (last line) is the larger of
the two loops' ratios, round N over round 10; 1.0x is flat.

    python bench/commit.py [--rounds 1000] [--smoke] [--json PATH]
"""

from __future__ import annotations

import argparse
import logging
import tempfile
import threading
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
"""The short run's measured rounds ("round 10")."""
WINDOW = len(BASELINE_ROUNDS)
TURN_WAIT = 600.0
"""Longest a run waits for its turn (the other run's rounds up to its window take seconds)."""


class Turns:
    """Makes two runs' scheduled rounds go one at a time, in the order of ``schedule``."""

    def __init__(self, schedule: list[tuple[str, int]]) -> None:
        self.schedule = schedule
        self.scheduled = set(schedule)
        self.next = 0
        self.broken = False
        self.changed = threading.Condition()

    def take(self, run: str, round_: int) -> None:
        """Wait until it is ``run``'s round ``round_``'s turn (at once if not scheduled)."""
        if (run, round_) not in self.scheduled:
            return
        with self.changed:
            if not self.changed.wait_for(
                lambda: self.broken or self.schedule[self.next] == (run, round_), TURN_WAIT
            ):
                raise TimeoutError(f"{run} round {round_} waited {TURN_WAIT:.0f} s for its turn")
            if self.broken:
                raise RuntimeError(f"{run} round {round_}: the other run failed")

    def give(self, run: str, round_: int) -> None:
        """``run``'s round ``round_`` is done: the next scheduled round's turn."""
        if (run, round_) in self.scheduled:
            with self.changed:
                self.next += 1
                self.changed.notify_all()

    def abort(self) -> None:
        """A run failed: the other's waits end."""
        with self.changed:
            self.broken = True
            self.changed.notify_all()


class Clock:
    """The engine as the loops' round keeper: takes turns and notes each round's CPU time."""

    def __init__(self, engine: ServerEngine, name: str, turns: Turns) -> None:
        self.engine = engine
        self.name = name
        self.turns = turns
        self.started = 0.0
        self.costs: dict[int, float] = {}

    def resume_point(self, style: str, num_rounds: int) -> ResumePoint | None:
        return self.engine.resume_point(style, num_rounds)

    def begin_round(self, round_: int, num_rounds: int) -> None:
        self.turns.take(self.name, round_)
        self.started = time.thread_time()
        self.engine.begin_round(round_, num_rounds)

    def commit_round(self, round_: int, *args: Any) -> None:
        self.engine.commit_round(round_, *args)
        self.costs[round_] = time.thread_time() - self.started
        self.turns.give(self.name, round_)


def run(style: str, name: str, rounds: int, turns: Turns, root: Path) -> dict[int, float]:
    """Run ``rounds`` rounds of ``style``'s loop; each round's CPU seconds."""
    transport = MemoryTransport(TransportSettings(SERVER), network=MemoryNetwork())
    engine = ServerEngine(transport, style, [DATASITE], workspace=Workspace(root / name))
    try:
        engine.open_run()
        clock = Clock(engine, name, turns)
        run_rounds(style, clock, rounds)
        return clock.costs
    finally:
        engine.close()


def measure(style: str, rounds: int, root: Path) -> tuple[float, float]:
    """The least CPU seconds of a round at rounds 6-15 and at the last ten of ``rounds``,
    measured in turns."""
    late = range(rounds - WINDOW + 1, rounds + 1)
    schedule = [("long", rounds - WINDOW)]
    for early_round, late_round in zip(BASELINE_ROUNDS, late, strict=True):
        schedule += [("short", early_round), ("long", late_round)]
    turns = Turns(schedule)
    found: dict[str, dict[int, float]] = {}
    failed: list[BaseException] = []

    def go(name: str, num_rounds: int) -> None:
        try:
            found[name] = run(style, name, num_rounds, turns, root / style)
        except BaseException as exc:
            failed.append(exc)
            turns.abort()  # the other run would wait for a turn that never comes

    threads = [
        threading.Thread(target=go, args=("long", rounds)),
        threading.Thread(target=go, args=("short", BASELINE_ROUNDS[-1])),
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    if failed:
        raise failed[0]
    return (
        min(found["short"][r] for r in BASELINE_ROUNDS),
        min(found["long"][r] for r in late),
    )


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
            early, late = measure(style, args.rounds, Path(workdir))
            rows.append({"style": style, "early_ms": early * 1e3, "late_ms": late * 1e3})
            print(
                f"{style} loop: {early * 1e3:.3f} ms CPU per round at rounds 6-15, "
                f"{late * 1e3:.3f} ms at rounds {args.rounds - WINDOW + 1}-{args.rounds} "
                f"({late / early:.2f}x; the least round of each, measured in turns)"
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
