"""What every benchmark shares: ``--smoke`` and ``--json``, and the figures file they write.

Each bench prints its figures with the headline last; with ``--json PATH`` it also writes them
for ``bench/report.py`` (the results page and its plot)::

    {"bench": "rtt", "headline": "<the last line>", "ratio": 14.2, "better": "higher",
     "ours": 2.8, "baseline": 39.7, "unit": "ms", "ours_label": ..., "baseline_label": ...,
     "rows": [...]}

``ratio`` compares ours with the baseline measured in the same run, as the headline states it;
``better`` says which way is good: ``higher`` (x times faster), ``lower`` (x times the
baseline's memory) or ``bound`` (ours over a floor it cannot beat, 1.0 at best). ``--smoke`` runs
the same code on small inputs in seconds, so CI proves every bench still runs and prints its
headline; a smoke figure is not a measurement.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any


def add_options(parser: argparse.ArgumentParser) -> None:
    """Add ``--smoke`` and ``--json`` to a bench's parser."""
    parser.add_argument("--smoke", action="store_true", help="small inputs, seconds (for CI)")
    parser.add_argument("--json", type=Path, metavar="PATH", help="also write the figures here")


def report(
    args: argparse.Namespace,
    bench: str,
    headline: str,
    *,
    ratio: float,
    ours: float,
    baseline: float,
    unit: str,
    ours_label: str,
    baseline_label: str,
    better: str = "higher",
    rows: list[dict[str, Any]] | None = None,
) -> None:
    """Print ``headline`` (the bench's last line) and, with ``--json``, write the figures."""
    if args.json is not None:
        figures = {
            "bench": bench,
            "headline": headline,
            "ratio": ratio,
            "better": better,
            "ours": ours,
            "baseline": baseline,
            "unit": unit,
            "ours_label": ours_label,
            "baseline_label": baseline_label,
            "smoke": bool(args.smoke),
            "rows": rows or [],
        }
        args.json.write_text(json.dumps(figures, indent=2) + "\n", encoding="utf-8")
    print(headline)
