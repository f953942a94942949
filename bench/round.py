"""Seconds per FL round, every party its own process, against the real syft-flwr 0.5.3.

The harness of issue 16: Flower's ``FedAvg`` on the tiny logistic regression of
``examples/quickstart-numpy``, 2 clients, 3 rounds, one local SyftBox folder, every party its
own process with its own SyftBox client config (``syft-flwr run`` for ours; the real
``syft-flwr==0.5.3`` with ``flwr==1.25.0`` from its own virtual environment for the baseline;
see :mod:`syft_flwr_syftbox.testing.federation`). Each side runs at its defaults (no poll
interval or timeout changed).

The baseline's server is the real 0.5.3 and its datasites are ours: 0.5.3 datasites under a
0.5.3 server fail on their own (syft-event reads a request syft-rpc is still writing, answers
``400 Error loading request`` and the server drops that datasite; see
``plugins/syftbox/tests/test_syft_flwr_05.py``). A 0.5.3 round is its server's polling (a pull
every 3 s), and our datasites answer faster than its own would, so this favours the baseline.

Seconds per round are what each server's strategy loop logs for all its rounds (Flower's
``Strategy.start`` in 0.5.3, our resumable copy of that loop; both time the rounds alone) over
the number of rounds, the median of ``--repeat`` runs.

In the same run: the floor, the syftbox transport's median 1 KiB round trip (``bench/rtt.py``'s
measurement) times the exchanges of a round (train and evaluate: 2), and the CPU an idle
serving client of ours spends (read from ``/proc``) while it waits for the server.

Prints ours and the baseline per encryption mode, ours next to the floor, and the idle CPU; the
headline (last line) is how many times fewer seconds per encrypted round ours takes than
syft-flwr 0.5.3. Target: our encrypted round <= 0.02 s, >= 300x.

    python bench/round.py [--repeat 3] [--modes on off] [--json PATH] [--smoke]

``--smoke``: one run per side, encrypted only.
"""

from __future__ import annotations

import argparse
import os
import statistics
import tempfile
import time
from pathlib import Path

from figures import add_options, report
from rtt import ours as transport_round_trips

from syft_flwr_syftbox.testing.federation import ProcessFederation, strategy_seconds
from syft_flwr_syftbox.testing.syft_flwr_05 import syft_flwr_05_venv

EXAMPLE = Path(__file__).resolve().parents[1] / "examples" / "quickstart-numpy"
AGGREGATOR = "aggregator@openmined.org"
DATASITES = ("do1@openmined.org", "do2@openmined.org")
ROUNDS = 3
EXCHANGES_PER_ROUND = 2
CLOCK_TICKS = os.sysconf("SC_CLK_TCK")


def cpu_seconds(pid: int) -> float:
    """User + system CPU seconds of process ``pid`` so far (Linux ``/proc``)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / CLOCK_TICKS


def one_run(root: Path, *, legacy: bool, encrypted: bool, idle: float = 0.0) -> tuple[float, float]:
    """Seconds per round of one federation (a 0.5.3 server if ``legacy``), and (``idle`` > 0)
    the CPU seconds one serving client spent over ``idle`` seconds before the server started."""
    venv = syft_flwr_05_venv() if legacy else None
    with ProcessFederation(
        root, EXAMPLE, AGGREGATOR, DATASITES, encrypted=encrypted, legacy_venv=venv
    ) as federation:
        clients = [federation.start(email, legacy=False) for email in DATASITES]
        idle_cpu = 0.0
        if idle > 0:
            time.sleep(1.0)  # start-up work done
            before = cpu_seconds(clients[0].process.pid)
            time.sleep(idle)
            idle_cpu = cpu_seconds(clients[0].process.pid) - before
        server = federation.start(AGGREGATOR, legacy=legacy)
        federation.finish()
        return strategy_seconds(server.output()) / ROUNDS, idle_cpu


def median_run(root: Path, repeat: int, *, legacy: bool, encrypted: bool) -> float:
    return statistics.median(
        one_run(
            root / f"{'legacy' if legacy else 'ours'}-{encrypted}-{index}",
            legacy=legacy,
            encrypted=encrypted,
        )[0]
        for index in range(repeat)
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=3, help="runs per side and mode (median)")
    parser.add_argument("--modes", nargs="+", choices=["on", "off"], default=["on", "off"])
    parser.add_argument("--pings", type=int, default=200, help="transport round trips (floor)")
    parser.add_argument("--idle", type=float, default=5.0, help="seconds of idle client CPU")
    add_options(parser)
    args = parser.parse_args()
    if args.smoke:
        args.repeat, args.modes, args.pings, args.idle = 1, ["on"], 20, 1.0
    rows = []
    with tempfile.TemporaryDirectory(prefix="syft-flwr-round-") as workdir:
        root = Path(workdir)
        floor_dir = root / "floor" / "SyftBox"
        (floor_dir / "datasites").mkdir(parents=True)
        rtt = statistics.median(transport_round_trips(floor_dir, args.pings))
        _, idle_cpu = one_run(root / "idle", legacy=False, encrypted=True, idle=args.idle)
        for mode in args.modes:
            encrypted = mode == "on"
            ours = median_run(root, args.repeat, legacy=False, encrypted=encrypted)
            theirs = median_run(root, args.repeat, legacy=True, encrypted=encrypted)
            rows.append(
                {"encryption": mode, "ours_s": ours, "baseline_s": theirs, "ratio": theirs / ours}
            )
    floor = rtt * EXCHANGES_PER_ROUND
    for row in rows:
        print(
            f"encryption {row['encryption']:3s}: syft-flwr 0.5.3 {row['baseline_s']:.2f} s/round "
            f"(baseline), ours {row['ours_s']:.3f} s/round ({row['ratio']:.1f}x fewer)"
        )
    print(
        f"floor: transport round trip {rtt * 1e3:.2f} ms x {EXCHANGES_PER_ROUND} exchanges = "
        f"{floor * 1e3:.1f} ms/round; ours encrypted {rows[0]['ours_s'] * 1e3:.1f} ms/round = "
        f"{rows[0]['ours_s'] / floor:.1f}x the floor"
    )
    print(
        f"idle serving client over {args.idle:.0f} s: {idle_cpu * 1e3:.0f} ms CPU "
        f"({idle_cpu / args.idle * 100:.2f}% of one core)"
    )
    headline = rows[0]
    rows.append({"floor_s": floor, "rtt_s": rtt, "idle_cpu_s": idle_cpu, "idle_s": args.idle})
    report(
        args,
        "round",
        f"s/round, encryption {headline['encryption']}, vs syft-flwr 0.5.3: "
        f"{headline['ratio']:.1f}x fewer (ours {headline['ours_s']:.3f} s; target <= 0.02 s, "
        ">= 300x)",
        ratio=headline["ratio"],
        better="higher",
        ours=headline["ours_s"],
        baseline=headline["baseline_s"],
        unit="s/round",
        ours_label=f"FedAvg round, every party a process, encryption {headline['encryption']}",
        baseline_label="the real syft-flwr 0.5.3 server",
        rows=rows,
    )


if __name__ == "__main__":
    main()
