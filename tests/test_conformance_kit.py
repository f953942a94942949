"""The conformance kit itself: it ships in the core wheel, explains what is missing, and fails
on a broken implementation (it is not vacuous)."""

from __future__ import annotations

import inspect
import subprocess
import sys
import time
import zipfile
from pathlib import Path

import pytest

from syft_flwr.testing import hostile_files, protocol, transport_suite
from syft_flwr.testing.budget import BudgetExceeded, budget
from syft_flwr.testing.rules import RULES_COMMAND, rules_text

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
        "helpers",
        "budget",
        "rules",
    ):
        assert f"syft_flwr/testing/{module}.py" in names
    assert "syft_flwr/testing/RULES.md" in names, "the rules page must ship with the kit"
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
        from syft_flwr.grid.gate import RequestGate

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


def test_the_kit_passes_a_transport_that_hands_bodies_as_memoryviews(pytester):
    """``Request.body`` and ``Reply.body`` may be a ``memoryview`` (a large body read into a
    buffer): the kit's own handlers and the core's gate and grid take one as they take bytes
    (the memory transport's own conformance test is the ``bytes`` case)."""
    pytester.makeconftest(
        """
        import dataclasses

        import pytest
        from syft_flwr_memory import MemoryTransport

        @pytest.fixture(autouse=True)
        def views(monkeypatch):
            dispatch, poll = MemoryTransport._dispatch, MemoryTransport.poll

            def dispatch_view(self, request, handler):
                view = dataclasses.replace(request, body=memoryview(bytes(request.body)))
                dispatch(self, view, handler)

            def poll_view(self, future_id):
                reply = poll(self, future_id)
                if reply is None:
                    return None
                return dataclasses.replace(reply, body=memoryview(bytes(reply.body)))

            monkeypatch.setattr(MemoryTransport, "_dispatch", dispatch_view)
            monkeypatch.setattr(MemoryTransport, "poll", poll_view)
        """
    )
    pytester.makepyfile(
        """
        from syft_flwr.testing.transport_suite import BodyTests, DeliveryTests, GridTests

        class TestMemoryViews(DeliveryTests, BodyTests, GridTests):
            transport_name = "memory"
            transport_options = {"max_body_size": 256 * 1024}
        """
    )
    result = pytester.runpytest("-p", "no:cacheprovider")
    outcomes = result.parseoutcomes()
    assert outcomes.get("passed", 0) > 10 and not outcomes.get("failed"), result.stdout.str()


def kit_tests() -> list[str]:
    """``Mixin.test_name`` of every test the kit defines."""
    found = []
    for module in (transport_suite, protocol, hostile_files):
        for name, cls in vars(module).items():
            if inspect.isclass(cls) and cls.__module__ == module.__name__:
                found += [f"{name}.{test}" for test in vars(cls) if test.startswith("test_")]
    return found


def test_every_kit_test_is_stated_in_the_rules():
    rules = rules_text()
    assert len(kit_tests()) > 30
    missing = [test for test in kit_tests() if test not in rules]
    assert not missing, f"state the rule these check in testing/RULES.md: {missing}"


def test_the_rules_print_from_the_installed_package():
    command = [sys.executable, "-m", *RULES_COMMAND.split()[2:]]
    printed = subprocess.run(command, capture_output=True, text=True, timeout=60, check=True)
    assert printed.stdout == rules_text()
    assert printed.stdout.startswith("# The rules a syft-flwr transport must follow")


def test_a_budget_ends_a_blocked_block_with_a_verdict():
    started = time.monotonic()
    with (
        pytest.raises(BudgetExceeded, match=r"the blocked call ran out of its 0\.2 s budget"),
        budget(0.2, "the blocked call"),
    ):
        time.sleep(30)
    assert time.monotonic() - started < 5


def test_a_hanging_transport_call_fails_within_the_test_budget(pytester):
    pytester.makeconftest(
        """
        import time
        import pytest
        from syft_flwr_memory import MemoryTransport

        @pytest.fixture(autouse=True)
        def hanging_poll(monkeypatch):
            monkeypatch.setattr(MemoryTransport, "poll", lambda self, future_id: time.sleep(60))
        """
    )
    pytester.makepyfile(
        """
        from syft_flwr.testing.transport_suite import DeliveryTests

        class TestMemory(DeliveryTests):
            transport_name = "memory"
            test_budget = 1.0
        """
    )
    started = time.monotonic()
    result = pytester.runpytest("-p", "no:cacheprovider", "-k", "request_reaches_handler")
    assert time.monotonic() - started < 30, "the budget did not end the test"
    result.assert_outcomes(failed=1)
    result.stdout.fnmatch_lines(["*ran out of its 1 s budget*"])


def test_a_lost_stop_signal_is_a_verdict_in_bounded_time(pytester):
    pytester.makeconftest(
        """
        import pytest
        from syft_flwr.grid.syft_grid import SyftGrid

        @pytest.fixture(autouse=True)
        def lost_stop_signal(monkeypatch):
            monkeypatch.setattr(SyftGrid, "send_stop", lambda self, datasite, **kwargs: None)
        """
    )
    pytester.makepyfile(
        """
        from syft_flwr.testing.protocol import ProtocolMachineTests

        class TestMemory(ProtocolMachineTests):
            transport_name = "memory"
            timeout = 1.0
            protocol_examples = 2
            protocol_steps = 3
        """
    )
    started = time.monotonic()
    result = pytester.runpytest("-p", "no:cacheprovider")
    assert time.monotonic() - started < 60, "a lost stop signal must not cost minutes"
    result.assert_outcomes(failed=1)
    result.stdout.fnmatch_lines(
        ["*the stop signal never reached site*Transport.send/serve lost it*"]
    )


def test_a_transport_that_answers_a_crash_with_silence_is_named(pytester):
    pytester.makeconftest(
        """
        import pytest
        from syft_flwr_memory import MemoryTransport

        @pytest.fixture(autouse=True)
        def silent_on_faults(monkeypatch):
            call = MemoryTransport._call

            def swallow(self, handler, request):
                def guarded(request):
                    try:
                        return handler(request)
                    except RuntimeError:
                        return None

                return call(self, guarded, request)

            monkeypatch.setattr(MemoryTransport, "_call", swallow)
        """
    )
    pytester.makepyfile(
        """
        from syft_flwr.testing.protocol import ProtocolMachineTests

        class TestMemory(ProtocolMachineTests):
            transport_name = "memory"
            timeout = 1.0
        """
    )
    result = pytester.runpytest("-p", "no:cacheprovider")
    result.assert_outcomes(failed=1)
    result.stdout.fnmatch_lines(["*Transport.run/poll*crash*no reply reached the grid*"])
