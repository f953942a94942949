"""The conformance kit itself: it ships in the core wheel, explains what is missing, and fails
on a broken implementation (it is not vacuous)."""

from __future__ import annotations

import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]

pytestmark = pytest.mark.slow


def test_kit_ships_in_the_core_wheel(tmp_path):
    subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "wheel",
            "--quiet",
            "--no-deps",
            "--no-build-isolation",
            "--wheel-dir",
            str(tmp_path),
            str(ROOT / "core"),
        ],
        check=True,
        timeout=300,
        capture_output=True,
    )
    (wheel,) = tmp_path.glob("syft_flwr_core-*.whl")
    names = set(zipfile.ZipFile(wheel).namelist())
    for module in (
        "fixtures",
        "transport_suite",
        "protocol",
        "strategies",
        "local",
        "pytest_plugin",
    ):
        assert f"syft_flwr/testing/{module}.py" in names
    assert "syft_flwr/scaffold/template/transport.py.tmpl" in names
    entry_points = next(n for n in names if n.endswith("entry_points.txt"))
    text = zipfile.ZipFile(wheel).read(entry_points).decode()
    assert "[pytest11]" in text and "syft_flwr.testing.pytest_plugin" in text


def test_missing_transport_name_says_what_to_provide(pytester):
    pytester.makepyfile(
        """
        from syft_flwr.testing.transport_suite import DeliveryTests

        class TestUnconfigured(DeliveryTests):
            pass
        """
    )
    result = pytester.runpytest("-p", "no:cacheprovider", "-k", "request_reaches_handler")
    result.assert_outcomes(errors=1)
    result.stdout.fnmatch_lines(['*set `transport_name = "<your transport>"`*'])


def test_kit_catches_a_runner_that_lets_duplicates_through(pytester):
    pytester.makeconftest(
        """
        import pytest
        from syft_flwr.inbound import RequestGate

        @pytest.fixture(autouse=True)
        def forgetful_runner(monkeypatch):
            monkeypatch.setattr(RequestGate, "_remember", lambda self, key, expires_at: False)
        """
    )
    pytester.makepyfile(
        """
        from syft_flwr.testing.transport_suite import GridTests

        class TestMemory(GridTests):
            transport_name = "memory"
        """
    )
    result = pytester.runpytest("-p", "no:cacheprovider", "-k", "test_duplicate_delivery_reaches")
    result.assert_outcomes(failed=1)
