"""A stateful protocol test: ``SyftGrid`` + client runners + a transport, in random orders.

Hypothesis drives a :class:`~hypothesis.stateful.RuleBasedStateMachine` through random
interleavings of *push*, *pull*, *deliver* (with the client's answer chosen per request:
reply, drop, garbage on the wire, duplicate, or delay, which reorders), *expire* and
*restart*, and checks after every step:

- a reply is delivered at most once, and to the request it answers;
- nothing reaches the app after its expiry, and no message reaches the app twice;
- every message ends in a reply or an error reply by its deadline;
- the stop signal reaches every live datasite (checked at teardown).

The client side is real (a :class:`~syft_flwr.fl_orchestrator.client_runner.ClientRunner`
serving a Flower ``ClientApp``), but each request waits at a *gate* in front of the runner
until the machine decides what the datasite does with it. Because decisions are made on
requests that really arrived, no step depends on timing luck; waits are bounded.
"""

from __future__ import annotations

import queue
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import ClassVar

from flwr.app import ConfigRecord, Context, Message, Metadata, RecordDict
from flwr.clientapp import ClientApp
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    RuleBasedStateMachine,
    invariant,
    precondition,
    rule,
    run_state_machine_as_test,
)

from syft_flwr.errors import WireFormatError
from syft_flwr.fl_orchestrator.client_runner import ClientRunner
from syft_flwr.fl_orchestrator.syft_grid import SERVER_NODE_ID, SyftGrid
from syft_flwr.message_factory import message_with_metadata
from syft_flwr.testing.fixtures import APP, MakeTransport, TransportFixtures
from syft_flwr.testing.local import empty_context
from syft_flwr.transport import Body, Request, Transport
from syft_flwr.wire import decode_message

__all__ = ["ACTIONS", "ProtocolMachineTests", "build_protocol_machine", "instruction"]

ACTIONS = ("reply", "drop", "garbage", "duplicate", "delay")
"""What a datasite may do with a request that reached it."""

GARBAGE = b"\x00this is not an envelope"
RELEASE_MARGIN = 0.05
"""A request this close to its expiry is dropped rather than released to the app."""
APP_LATENESS_TOLERANCE = 0.25
"""How late after its deadline a request may reach the gate (or a message the app) that the
transport (or the runner) let through in time: the thread can be descheduled in between on a
loaded machine. A transport delivering expired requests is late by far more."""


def instruction(
    grid: SyftGrid, node_id: int, message_type: str, *, ttl: float | None = None
) -> Message:
    """An instruction message for ``node_id`` (no process-global Flower identity needed)."""
    metadata = Metadata(
        run_id=grid.run.run_id,
        message_id="",
        src_node_id=SERVER_NODE_ID,
        dst_node_id=node_id,
        reply_to_message_id="",
        group_id="protocol",
        created_at=time.time(),
        ttl=ttl if ttl is not None else 3600.0,
        message_type=message_type,
    )
    return message_with_metadata(metadata, content=RecordDict())


@dataclass
class _Arrival:
    request: Request
    arrived_at: float = field(default_factory=time.time)
    decided: threading.Event = field(default_factory=threading.Event)
    action: str = "reply"


class _Gate:
    """Holds each request in front of the runner until the machine decides its fate."""

    def __init__(self, runner: ClientRunner, timeout: float) -> None:
        self.runner = runner
        self.timeout = timeout
        self.arrivals: queue.Queue[_Arrival] = queue.Queue()
        self.auto = False
        self._lock = threading.Lock()

    def handle(self, request: Request) -> Body | None:
        with self._lock:  # so an arrival cannot slip in after release_all() drained the queue
            auto = self.auto
            arrival = _Arrival(request)
            if not auto:
                self.arrivals.put(arrival)
        if auto:
            return self.runner.handle(request)
        if not arrival.decided.wait(self.timeout):
            return None
        if arrival.action == "reply":
            return self.runner.handle(request)
        if arrival.action == "garbage":
            return GARBAGE
        return None

    def release_all(self) -> None:
        """Answer everything waiting and everything that comes from now on."""
        with self._lock:
            self.auto = True
        while True:
            try:
                arrival = self.arrivals.get_nowait()
            except queue.Empty:
                return
            arrival.action = "reply"
            arrival.decided.set()


@dataclass
class _Datasite:
    transport: Transport
    runner: ClientRunner
    gate: _Gate
    thread: threading.Thread
    held: list[_Arrival] = field(default_factory=list)
    app_calls: dict[str, int] = field(default_factory=dict)


@dataclass
class _Sent:
    datasite: int
    deadline: float
    finished: bool = False
    arrived: bool = False


def build_protocol_machine(
    make_transport: MakeTransport,
    identity: Callable[[str], str],
    *,
    timeout: float,
    ttl: float,
    datasites: int = 2,
) -> type[RuleBasedStateMachine]:
    """A state machine class bound to a transport factory (for ``run_state_machine_as_test``)."""

    class GridProtocolMachine(RuleBasedStateMachine):
        def __init__(self) -> None:
            super().__init__()
            self.violations: list[str] = []
            self.sent: dict[str, _Sent] = {}
            self.short_deadlines: list[float] = []
            server_identity = identity("server")
            self.sites = [
                self._start_site(identity(f"site{i}"), server_identity) for i in range(datasites)
            ]
            server = make_transport(server_identity)
            self.grid = SyftGrid(  # plaintext, as the runners: the machine tests the transport
                APP,
                [s.transport.identity for s in self.sites],
                server,
                msg_timeout=timeout,
                channel=None,
            )
            self.grid.set_run(4242)
            self.nodes = self.grid.get_node_ids()

        # -- set-up -----------------------------------------------------------------

        def _start_site(self, email: str, server: str) -> _Datasite:
            transport = make_transport(email)
            calls: dict[str, int] = {}
            runner = ClientRunner(
                self._app(calls), empty_context(), transport, APP, trusted_aggregators=[server]
            )
            gate = _Gate(runner, timeout)
            transport.serve(APP, "messages", gate.handle)
            thread = threading.Thread(target=transport.run, daemon=True)
            thread.start()
            return _Datasite(transport, runner, gate, thread, app_calls=calls)

        def _app(self, calls: dict[str, int]) -> ClientApp:
            app = ClientApp()

            @app.query()
            def query(message: Message, context: Context) -> Message:
                message_id = message.metadata.message_id
                calls[message_id] = calls.get(message_id, 0) + 1
                deadline = message.metadata.created_at + message.metadata.ttl
                # The runner checks the deadline right before calling the app; allow for the
                # thread being descheduled between that check and this line.
                if time.time() > deadline + APP_LATENESS_TOLERANCE:
                    self.violations.append(f"message {message_id} reached the app after expiry")
                content = RecordDict({"echo": ConfigRecord({"id": message_id})})
                return Message(content, reply_to=message)

            return app

        # -- rules ------------------------------------------------------------------

        @rule(site=st.integers(0, datasites - 1), short=st.booleans())
        def push(self, site: int, short: bool) -> None:
            message = instruction(
                self.grid, self.nodes[site], "query", ttl=ttl if short else timeout
            )
            (message_id,) = self.grid.push_messages([message])
            self.sent[message_id] = _Sent(site, time.time() + message.metadata.ttl)
            if short:
                self.short_deadlines.append(self.sent[message_id].deadline)

        @rule(
            site=st.integers(0, datasites - 1),
            action=st.sampled_from(ACTIONS),
            pick=st.integers(0, 7),
        )
        def deliver(self, site: int, action: str, pick: int) -> None:
            datasite = self.sites[site]
            self._take_arrivals(datasite, wait=not datasite.held and self._live_to(site))
            if not datasite.held or action == "delay":
                return
            arrival = datasite.held.pop(pick % len(datasite.held))
            if arrival.request.expired(time.time() + RELEASE_MARGIN):
                arrival.action = "drop"
            elif action == "duplicate":
                self.grid.transport.send(
                    datasite.transport.identity,
                    APP,
                    "messages",
                    arrival.request.body,
                    arrival.request.expires_at,
                )
                arrival.action = "reply"
            else:
                arrival.action = action
            arrival.decided.set()

        def _live_to(self, site: int) -> bool:
            """Whether a message to ``site`` is still on its way (so an arrival must come)."""
            now = time.time()
            return any(
                s.datasite == site and not (s.finished or s.arrived) and s.deadline > now
                for s in self.sent.values()
            )

        def _take_arrivals(self, datasite: _Datasite, *, wait: bool) -> None:
            deadline = time.monotonic() + (min(timeout, ttl * 2) if wait else 0.0)
            while True:
                remaining = deadline - time.monotonic()
                try:
                    arrival = (
                        datasite.gate.arrivals.get(timeout=max(remaining, 0.0))
                        if remaining > 0
                        else datasite.gate.arrivals.get_nowait()
                    )
                except queue.Empty:
                    return
                if arrival.arrived_at > arrival.request.expires_at + APP_LATENESS_TOLERANCE:
                    self.violations.append(f"request {arrival.request.id} delivered after expiry")
                self._mark_arrived(arrival.request)
                datasite.held.append(arrival)
                deadline = time.monotonic()  # got one: take only what is already there

        def _mark_arrived(self, request: Request) -> None:
            try:
                message_id = decode_message(request.body).metadata.message_id
            except WireFormatError:
                return
            if message_id in self.sent:
                self.sent[message_id].arrived = True

        @rule()
        def pull(self) -> None:
            pending = [mid for mid, sent in self.sent.items() if not sent.finished]
            pulled_at = time.time()
            for reply in self.grid.pull_messages(pending):
                self._account(reply)
            for message_id, sent in self.sent.items():
                if not sent.finished and sent.deadline <= pulled_at:
                    self.violations.append(f"message {message_id} unanswered after its deadline")

        @precondition(lambda self: bool(self.short_deadlines))
        @rule()
        def expire(self) -> None:
            """Let the oldest short-TTL message run out, then pull.

            Enabled by the rules run so far only (a short message was pushed since), never by
            the clock or by what arrived: a precondition hypothesis cannot replay exactly
            makes it report the machine as flaky instead of checking it.
            """
            deadline = self.short_deadlines.pop(0)
            time.sleep(max(0.0, deadline - time.time()) + 0.01)
            self.pull()

        @rule(site=st.integers(0, datasites - 1))
        def restart(self, site: int) -> None:
            datasite = self.sites[site]
            datasite.transport.stop()
            while datasite.thread.is_alive():
                self._take_arrivals(datasite, wait=False)
                for arrival in datasite.held:
                    arrival.action = "drop" if arrival.request.expired() else "reply"
                    arrival.decided.set()
                datasite.held.clear()
                datasite.thread.join(0.05)
            datasite.thread = threading.Thread(target=datasite.transport.run, daemon=True)
            datasite.thread.start()

        def _account(self, reply: Message) -> None:
            answered = reply.metadata.reply_to_message_id
            sent = self.sent.get(answered)
            if sent is None:
                self.violations.append(f"reply to unknown message {answered!r}")
            elif sent.finished:
                self.violations.append(f"second reply to message {answered}")
            else:
                sent.finished = True
                if reply.has_content() and reply.content["echo"]["id"] != answered:
                    self.violations.append(f"reply for {answered} carries another echo")

        # -- invariants -------------------------------------------------------------

        @invariant()
        def no_violation(self) -> None:
            assert not self.violations, self.violations

        @invariant()
        def app_called_at_most_once_per_message(self) -> None:
            for datasite in self.sites:
                repeated = {mid: n for mid, n in datasite.app_calls.items() if n > 1}
                assert not repeated, f"messages reached the app twice: {repeated}"

        def teardown(self) -> None:
            try:
                for datasite in self.sites:
                    for arrival in datasite.held:
                        arrival.action = "reply"
                        arrival.decided.set()
                    datasite.gate.release_all()
                reached = self.grid.send_stop_signal(reason="protocol test over")
                assert sorted(reached) == sorted(self.grid.datasites)
                for datasite in self.sites:
                    datasite.thread.join(timeout + ttl)
                    assert not datasite.thread.is_alive(), "a live datasite missed the stop signal"
                    assert datasite.runner.stop_reason == "protocol test over"
            finally:
                for datasite in self.sites:
                    datasite.transport.close()
                self.grid.transport.close()

    return GridProtocolMachine


class ProtocolMachineTests(TransportFixtures):
    """Runs the protocol state machine with a fixed, deterministic example budget.

    :cvar protocol_examples: how many random programs hypothesis runs.
    :cvar protocol_steps: how many steps each program has at most.
    :cvar protocol_ttl: the short TTL used for messages meant to expire (raise it for
        transports with slow delivery).
    """

    protocol_examples: ClassVar[int] = 40
    protocol_steps: ClassVar[int] = 25
    protocol_ttl: ClassVar[float] = 0.3

    def test_protocol_state_machine(self, make_transport: MakeTransport) -> None:
        machine = build_protocol_machine(
            make_transport, self.identity, timeout=self.timeout, ttl=self.protocol_ttl
        )
        run_state_machine_as_test(
            machine,
            settings=settings(
                max_examples=self.protocol_examples,
                stateful_step_count=self.protocol_steps,
                deadline=None,
                derandomize=True,
                database=None,
                suppress_health_check=list(HealthCheck),
            ),
        )
