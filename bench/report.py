"""The results page: run every benchmark, then write ``bench/README.md`` and its plot.

Each bench runs as its own process with ``--json`` (see :mod:`figures`); its figures become
one row of the table (ours, the baseline measured in the same run, the ratio, the bench's own
headline), and the throughput bench's sizes become the plot ``bench/results.png``: seconds to
move a model server -> client -> server, and the throughput, against model size, ours next to
a plain copy of the same bytes. The machine the figures were measured on heads the page: the
ratios are what carries over to another machine, not the absolute times.

    python bench/report.py [--smoke] [--only round rtt ...] [--figures DIR | --from DIR]
                           [--out bench]

``--figures DIR`` keeps each bench's figures as ``DIR/<bench>.json``; ``--from DIR`` reuses
such figures instead of running the benches.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

BENCH = Path(__file__).resolve().parent
LIBRARIES = {"figures", "report"}
RUN_BUDGET = 3600.0
"""Longest one bench may run (the full 1 GiB and 1,000-datasite runs take minutes)."""


def benches() -> list[str]:
    return sorted(path.stem for path in BENCH.glob("*.py") if path.stem not in LIBRARIES)


def run(bench: str, into: Path, smoke: bool) -> dict[str, Any]:
    """Run ``bench`` and return its figures (or why it has none)."""
    target = into / f"{bench}.json"
    command = [sys.executable, str(BENCH / f"{bench}.py"), "--json", str(target)]
    started = time.monotonic()
    try:
        done = subprocess.run(
            command + (["--smoke"] if smoke else []),
            capture_output=True,
            text=True,
            timeout=RUN_BUDGET,
        )
    except subprocess.TimeoutExpired:
        return {"bench": bench, "failed": f"ran over {RUN_BUDGET:.0f} s"}
    took = time.monotonic() - started
    print(f"{bench}: {took:.0f} s, exit {done.returncode}", file=sys.stderr)
    if done.returncode != 0 or not target.is_file():
        tail = (done.stderr or done.stdout).strip().splitlines()[-1:]
        return {"bench": bench, "failed": f"exit {done.returncode}: {' '.join(tail)}"}
    figures: dict[str, Any] = json.loads(target.read_text(encoding="utf-8"))
    return figures


def machine() -> str:
    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    memory = ""
    try:
        kib = int(Path("/proc/meminfo").read_text().split()[1])
        memory = f", {kib / 2**20:.0f} GiB RAM"
    except (OSError, ValueError, IndexError):
        pass
    return (
        f"{cpu}, {os.cpu_count()} cores{memory}; {platform.system()} {platform.release()}; "
        f"Python {platform.python_version()}"
    )


def number(value: float, unit: str) -> str:
    if unit in {"s", "s/round"} and value < 1:
        return f"{value * 1e3:.1f} ms" + ("/round" if unit == "s/round" else "")
    return f"{value:.3g} {unit}" if abs(value) < 1000 else f"{value:,.0f} {unit}"


def table(results: list[dict[str, Any]]) -> list[str]:
    lines = [
        "| bench | ours | baseline (same run) | ratio | headline |",
        "| --- | --- | --- | --- | --- |",
    ]
    for figures in results:
        name = f"[`{figures['bench']}`]({figures['bench']}.py)"
        if "failed" in figures:
            lines.append(f"| {name} | failed: {figures['failed']} | | | |")
            continue
        ours = f"{number(figures['ours'], figures['unit'])}: {figures['ours_label']}"
        baseline = f"{number(figures['baseline'], figures['unit'])}: {figures['baseline_label']}"
        sense = {"higher": "higher is better", "lower": "lower is better"}
        lines.append(
            f"| {name} | {ours} | {baseline} | {figures['ratio']:.2f}x "
            f"({sense.get(figures['better'], '1.0x is the floor')}) | {figures['headline']} |"
        )
    return lines


def plot(throughput: dict[str, Any], round_figures: dict[str, Any] | None, out: Path) -> bool:
    """Write the plot from the throughput bench's sizes; False if there is nothing to plot."""
    rows = [row for row in throughput.get("rows", []) if "mib" in row]
    if not rows:
        return False
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    sizes = [row["mib"] for row in rows]
    ours = [row["ours_s"] for row in rows]
    copy = [row["copy_s"] for row in rows]
    figure, (seconds, speed) = plt.subplots(1, 2, figsize=(11, 4.2))
    seconds.plot(sizes, ours, "o-", label="syft-flwr over SyftBox, encrypted")
    seconds.plot(sizes, copy, "s--", label="plain copy of the same bytes")
    if round_figures is not None and "failed" not in round_figures:
        seconds.axhline(
            round_figures["ours"], color="grey", linestyle=":", label="one FL round, tiny model"
        )
    seconds.set(
        xscale="log",
        yscale="log",
        xlabel="model size (MiB)",
        ylabel="seconds, server -> client -> server",
        title="Time to move a model",
    )
    for times, style, label in ((ours, "o-", "syft-flwr"), (copy, "s--", "copy")):
        rates = [2 * mib / took for mib, took in zip(sizes, times, strict=True)]
        speed.plot(sizes, rates, style, label=label)
    speed.set(xscale="log", xlabel="model size (MiB)", ylabel="MiB/s", title="Throughput")
    for axes in (seconds, speed):
        axes.grid(True, which="both", alpha=0.3)
        axes.legend()
    figure.tight_layout()
    figure.savefig(out, dpi=110)
    plt.close(figure)
    return True


def page(results: list[dict[str, Any]], plotted: bool, smoke: bool) -> str:
    when = time.strftime("%Y-%m-%d")
    lines = [
        "# Benchmark results",
        "",
        "Written by `python bench/report.py` (every bench, then this page and its plot). Every",
        "ratio is measured against a baseline run on the same machine in the same run, so the",
        "ratios carry over to other machines; the absolute figures do not.",
        "",
        f"Measured on {when}: {machine()}.",
    ]
    if smoke:
        lines += ["", "**Smoke run**: small inputs, to check the page; not a measurement."]
    lines += ["", *table(results), ""]
    if plotted:
        lines += ["![time and throughput against model size](results.png)", ""]
    lines += [
        "Each bench's docstring says what it measures and how; run one alone with",
        "`.venv/bin/python bench/<name>.py` (`--smoke` for seconds, `--json PATH` for its",
        "figures).",
        "",
    ]
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--smoke", action="store_true", help="every bench in its smoke mode")
    parser.add_argument("--only", nargs="+", choices=benches(), help="run only these")
    parser.add_argument("--from", dest="source", type=Path, help="reuse DIR/<bench>.json")
    parser.add_argument("--figures", type=Path, help="keep each bench's DIR/<bench>.json")
    parser.add_argument("--out", type=Path, default=BENCH, help="where README.md and the PNG go")
    args = parser.parse_args()
    names = args.only or benches()
    with tempfile.TemporaryDirectory(prefix="syft-flwr-report-") as tmp:
        if args.source is not None:
            results = [
                json.loads((args.source / f"{name}.json").read_text(encoding="utf-8"))
                if (args.source / f"{name}.json").is_file()
                else {"bench": name, "failed": "no figures"}
                for name in names
            ]
        else:
            into = args.figures or Path(tmp)
            into.mkdir(parents=True, exist_ok=True)
            results = [run(name, into, args.smoke) for name in names]
    by_name = {figures["bench"]: figures for figures in results}
    args.out.mkdir(parents=True, exist_ok=True)
    throughput = by_name.get("throughput")
    plotted = (
        throughput is not None
        and "failed" not in throughput
        and plot(throughput, by_name.get("round"), args.out / "results.png")
    )
    (args.out / "README.md").write_text(page(results, plotted, args.smoke), encoding="utf-8")
    failed = [figures["bench"] for figures in results if "failed" in figures]
    print(f"wrote {args.out / 'README.md'}; failed: {', '.join(failed) or 'none'}")
    if failed:
        sys.exit(1)


if __name__ == "__main__":
    main()
