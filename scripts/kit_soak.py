#!/usr/bin/env python3
"""Soak the conformance kit's protocol state machine: N runs in a row per transport.

    .venv/bin/python scripts/kit_soak.py                 # 50 runs on each transport
    .venv/bin/python scripts/kit_soak.py --burn -n 10 memory sqlite

Each run is a fresh pytest process running ``test_protocol_state_machine`` of one transport's
conformance file with ``--hypothesis-seed=<seed>``. What the runs prove depends on the seeds:

- by default run ``i`` uses seed ``base + i``, so every run draws *different* programs: N
  runs of ``protocol_examples`` programs each, all passing, show that no program the machine
  can draw fails on a correct transport (the kit finds bugs, not bad luck);
- ``--same-programs`` gives every run the kit's derandomized programs (no seed), so the N
  runs differ only in timing: a failure is then timing-dependent by definition.

``--burn`` starts two CPU-bound processes for the soak's duration (what a loaded CI machine
does to the kit). The script prints ``<transport>: passed k/N in T s`` per transport and
stops at the first failing run, printing its output and exiting 1.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

TARGETS = {
    "memory": "plugins/memory/tests/test_conformance.py::TestMemoryTransport",
    "syftbox": "plugins/syftbox/tests/test_conformance.py::TestSyftBoxTransport",
    "gdrive": "plugins/gdrive/tests/test_conformance.py::TestGDriveTransport",
    "sqlite": "examples/sqlite-transport/tests/test_conformance.py::TestSqliteTransport",
}
SOURCES = ("core/src", "plugins/memory/src", "plugins/syftbox/src", "plugins/gdrive/src")
SOURCES += ("examples/sqlite-transport/src",)
RUN_TIMEOUT = 600.0
"""Upper bound of one run (the kit's own budget ends a stuck run well before)."""

BURNER = "while True: pass"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("transports", nargs="*", help=f"some of {', '.join(TARGETS)} (all)")
    parser.add_argument("-n", "--runs", type=int, default=50, help="runs per transport")
    parser.add_argument("--seed", type=int, default=0, help="seed of the first run")
    parser.add_argument(
        "--same-programs", action="store_true", help="every run replays the derandomized programs"
    )
    parser.add_argument("--burn", action="store_true", help="load the machine with two busy CPUs")
    args = parser.parse_args(argv)
    unknown = sorted(set(args.transports) - set(TARGETS))
    if unknown:
        parser.error(f"unknown transport(s) {', '.join(unknown)}: choose from {', '.join(TARGETS)}")
    environment = {**os.environ, "PYTHONPATH": os.pathsep.join(str(ROOT / s) for s in SOURCES)}
    with burning(2 if args.burn else 0):
        for name in args.transports or list(TARGETS):
            started = time.monotonic()
            for index in range(args.runs):
                seed = None if args.same_programs else args.seed + index
                result = run_once(TARGETS[name], seed, environment)
                if result.returncode != 0:
                    print(f"{name}: run {index + 1}/{args.runs} (seed {seed}) FAILED", flush=True)
                    print(result.stdout, result.stderr, sep="\n", flush=True)
                    return 1
                if (index + 1) % 10 == 0 and index + 1 < args.runs:
                    print(f"{name}: {index + 1}/{args.runs} passed so far", flush=True)
            elapsed = time.monotonic() - started
            print(f"{name}: passed {args.runs}/{args.runs} in {elapsed:.0f} s", flush=True)
    return 0


def run_once(
    target: str, seed: int | None, environment: dict[str, str]
) -> subprocess.CompletedProcess[str]:
    """One fresh pytest process running the protocol machine of ``target``."""
    command = [
        sys.executable,
        "-m",
        "pytest",
        "-q",
        "-p",
        "no:cacheprovider",
        f"{target}::test_protocol_state_machine",
    ]
    if seed is not None:
        command.append(f"--hypothesis-seed={seed}")
    try:
        return subprocess.run(
            command,
            cwd=ROOT,
            env=environment,
            capture_output=True,
            text=True,
            timeout=RUN_TIMEOUT,
            check=False,
        )
    except subprocess.TimeoutExpired as exc:
        output = exc.stdout if isinstance(exc.stdout, str) else ""
        return subprocess.CompletedProcess(command, 124, output, f"no verdict in {RUN_TIMEOUT} s")


@contextmanager
def burning(count: int) -> Iterator[None]:
    """``count`` CPU-bound child processes for the duration of the block."""
    burners = [subprocess.Popen([sys.executable, "-c", BURNER]) for _ in range(count)]
    try:
        yield
    finally:
        for burner in burners:
            burner.kill()
            burner.wait()


if __name__ == "__main__":
    sys.exit(main())
