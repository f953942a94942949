"""Every benchmark runs in its smoke mode and ends with its headline ratio (what CI checks).

A smoke run uses small inputs so the suite proves that each bench still works, prints its
figures and writes them for the results page; it asserts nothing about speed (timed
assertions do not belong in a test suite on shared machines). The README lists every bench.
"""

from __future__ import annotations

import json
import math
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
BENCH = ROOT / "bench"
LIBRARIES = {"figures.py", "report.py"}
BENCHES = sorted(path.stem for path in BENCH.glob("*.py") if path.name not in LIBRARIES)
RATIO = re.compile(r"\d+(?:\.\d+)?x")
SMOKE_BUDGET = 900.0
"""Longest a smoke run may take before it counts as hung (they take seconds to a minute)."""


def test_there_are_benches() -> None:
    assert {"round", "rtt", "scale", "throughput"} <= set(BENCHES)


@pytest.mark.parametrize("bench", BENCHES)
def test_the_readme_lists_the_bench(bench: str) -> None:
    assert f"bench/{bench}.py" in (ROOT / "README.md").read_text(encoding="utf-8")


@pytest.mark.slow
@pytest.mark.parametrize("bench", BENCHES)
def test_the_bench_runs_in_smoke_mode_and_ends_with_its_ratio(bench: str, tmp_path: Path) -> None:
    figures = tmp_path / f"{bench}.json"
    try:
        done = subprocess.run(
            [sys.executable, str(BENCH / f"{bench}.py"), "--smoke", "--json", str(figures)],
            cwd=tmp_path,
            capture_output=True,
            text=True,
            timeout=SMOKE_BUDGET,
        )
    except subprocess.TimeoutExpired as exc:
        pytest.fail(f"bench/{bench}.py --smoke ran over {SMOKE_BUDGET:.0f} s: {exc.stdout!r}")
    assert done.returncode == 0, f"bench/{bench}.py --smoke failed:\n{done.stdout}\n{done.stderr}"
    lines = [line for line in done.stdout.splitlines() if line.strip()]
    assert lines and RATIO.search(lines[-1]), f"no ratio on the last line:\n{done.stdout}"
    written = json.loads(figures.read_text(encoding="utf-8"))
    assert written["bench"] == bench and written["smoke"] is True
    assert written["headline"] == lines[-1]
    assert math.isfinite(written["ratio"]) and written["ratio"] > 0
    assert written["better"] in {"higher", "lower", "bound"}


def test_the_report_writes_the_table_and_the_plot_from_figures(tmp_path: Path) -> None:
    figures = tmp_path / "figures"
    figures.mkdir()
    common = {"better": "higher", "unit": "s", "smoke": False, "ours_label": "ours"}
    throughput = {
        **common,
        "bench": "throughput",
        "headline": "wall vs plain copy: 2.1x",
        "ratio": 2.1,
        "better": "lower",
        "ours": 9.0,
        "baseline": 4.3,
        "baseline_label": "copy",
        "rows": [
            {"mib": mib, "ours_s": 0.02 * mib, "copy_s": 0.01 * mib} for mib in (1, 100, 1024)
        ],
    }
    rtt = {**common, "bench": "rtt", "headline": "median: 14.2x lower", "ratio": 14.2,
           "ours": 0.0028, "baseline": 0.04, "baseline_label": "syft-rpc", "rows": []}  # fmt: skip
    for each in (throughput, rtt):
        (figures / f"{each['bench']}.json").write_text(json.dumps(each))
    out = tmp_path / "page"
    done = subprocess.run(
        [sys.executable, str(BENCH / "report.py"), "--from", str(figures), "--out", str(out),
         "--only", "rtt", "throughput"],
        capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    page = (out / "README.md").read_text()
    assert "| [`rtt`](rtt.py) | 2.8 ms: ours | 40.0 ms: syft-rpc | 14.20x" in page
    assert "median: 14.2x lower" in page and "results.png" in page
    assert (out / "results.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_the_report_fails_naming_a_bench_without_figures(tmp_path: Path) -> None:
    done = subprocess.run(
        [sys.executable, str(BENCH / "report.py"), "--from", str(tmp_path), "--out",
         str(tmp_path / "page"), "--only", "rtt"],
        capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert done.returncode == 1
    assert "failed: rtt" in done.stdout
    assert "| [`rtt`](rtt.py) | failed: no figures" in (tmp_path / "page" / "README.md").read_text()
