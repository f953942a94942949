"""Fault injection: drop, duplicate, delay, one-off and from a seeded plan."""

from __future__ import annotations

import threading
import time

import pytest

from syft_flwr.errors import ConfigError
from syft_flwr.transport import ReplyStatus, Request, TransportSettings
from syft_flwr_memory import FaultPlan, MemoryNetwork, MemoryTransport
from syft_flwr_memory.faults import Fate, FaultInjector

APP, EP = "flwr/demo", "messages"

# A timer or run loop that dies in its thread must fail the test, not just warn.
pytestmark = pytest.mark.filterwarnings("error::pytest.PytestUnhandledThreadExceptionWarning")


def test_duplicate_delivers_twice_and_the_first_reply_wins(
    make, network, serving, wait_reply, later
) -> None:
    alice, bob = make("alice@x.org"), make("bob@x.org")
    calls: list[str] = []
    both = threading.Event()

    def handler(request: Request) -> bytes:
        calls.append(request.id)
        if len(calls) == 2:
            both.set()
        return f"call {len(calls)}".encode()

    bob.serve(APP, EP, handler)
    network.duplicate_next()
    with serving(bob):
        future_id = alice.send("bob@x.org", APP, EP, b"", later())
        assert both.wait(5)
        assert wait_reply(alice, future_id).body == b"call 1"
    assert calls == [future_id, future_id]
    assert alice.poll(future_id).body == b"call 1"


def test_drop_leaves_the_sender_with_an_expiry(make, network, serving, wait_reply, later) -> None:
    alice, bob = make("alice@x.org"), make("bob@x.org")
    seen: list[bytes] = []
    bob.serve(APP, EP, lambda request: seen.append(request.body) or b"")
    network.drop_next()
    with serving(bob):
        dropped = alice.send("bob@x.org", APP, EP, b"lost", later(0.2))
        kept = alice.send("bob@x.org", APP, EP, b"kept", later())
        assert wait_reply(alice, kept).status is ReplyStatus.OK
        assert wait_reply(alice, dropped).status is ReplyStatus.EXPIRED
    assert seen == [b"kept"]


def test_delay_defers_delivery_without_blocking_the_sender(
    make, network, serving, wait_reply, later
) -> None:
    alice, bob = make("alice@x.org"), make("bob@x.org")
    delivered_at: list[float] = []
    bob.serve(APP, EP, lambda request: delivered_at.append(time.monotonic()) or b"late")
    network.faults = FaultPlan(delay_seconds=(0.3, 0.3))
    with serving(bob):
        sent_at = time.monotonic()
        future_id = alice.send("bob@x.org", APP, EP, b"", later())
        assert time.monotonic() - sent_at < 0.3, "send() waited for the delay"
        assert wait_reply(alice, future_id).body == b"late"
    assert delivered_at[0] - sent_at >= 0.29


def test_network_built_with_a_plan_applies_it(later) -> None:
    network = MemoryNetwork(faults=FaultPlan(drop_rate=1.0))
    try:
        alice = MemoryTransport(TransportSettings("alice@x.org"), network=network)
        alice.send("bob@x.org", APP, EP, b"", later())
        assert network.inbox_size("bob@x.org") == 0
        network.faults = None
        alice.send("bob@x.org", APP, EP, b"", later())
        assert network.inbox_size("bob@x.org") == 1
    finally:
        network.close()


def test_seeded_plan_repeats_its_fates() -> None:
    plan = FaultPlan(drop_rate=0.3, duplicate_rate=0.3, delay_seconds=(0.0, 1.0), seed=7)
    one, two = FaultInjector(plan), FaultInjector(plan)
    fates = [one.fate() for _ in range(200)]
    assert fates == [two.fate() for _ in range(200)]
    assert {fate.copies for fate in fates} == {0, 1, 2}
    assert all(0.0 <= fate.delay <= 1.0 for fate in fates)


def test_one_off_faults_come_before_the_plan() -> None:
    injector = FaultInjector()
    injector.drop_next(2)
    injector.duplicate_next()
    assert [injector.fate() for _ in range(4)] == [Fate(0), Fate(0), Fate(2), Fate(1)]
    with pytest.raises(ValueError, match="at least 1"):
        injector.drop_next(0)


def test_options_install_the_plan_on_the_network(make, network) -> None:
    options = {"drop": 0.1, "duplicate": 0.2, "delay": [0.0, 0.05], "seed": 1}
    make("alice@x.org", faults=options)
    plan = FaultPlan(0.1, 0.2, (0.0, 0.05), 1)
    assert network.faults == plan
    reference = FaultInjector(plan)
    assert network._injector.fate() == reference.fate()
    make("bob@x.org", faults=options)  # the same plan again must not reseed it
    assert network._injector.fate() == reference.fate()
    assert FaultPlan.from_options({"delay": 0.5}).delay_seconds == (0.5, 0.5)


@pytest.mark.parametrize(
    "options",
    [{"drop": 2}, {"duplicate": -0.1}, {"delay": [0.5, 0.1]}, {"delay": "soon"}, {"lag": 1}],
)
def test_bad_fault_options_raise_config_error(make, options) -> None:
    with pytest.raises(ConfigError):
        make("alice@x.org", faults=options)
