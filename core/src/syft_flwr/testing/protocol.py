"""A stateful protocol test: ``SyftGrid`` + client runners + a transport, in random orders.

Hypothesis drives a :class:`~hypothesis.stateful.RuleBasedStateMachine` through random
programs of *push* (to a datasite, with what that datasite will do with the message),
*pull*, *settle*, *expire* and *restart*, and checks after every step:

- a reply is delivered at most once, and to the request it answers;
- a served message is answered, a refused one comes back refused with its reason, a
  crashing handler is answered as a refusal, an unanswered one ends in an expiry;
- no request reaches its handler after its expiry, no message reaches the app twice;
- at teardown, the stop signal reaches every datasite and ``run()`` returns.

**Deterministic by construction.** What a datasite does with a message (the *action*) is
drawn with the push and travels inside the message, so the datasite's gate decides on arrival
without waiting for the machine. No rule has a precondition and no draw depends on what has
arrived or on the clock: the enabled rules and every draw are functions of the rules run so
far. Time only bounds waits; a wait that runs out is a verdict naming the transport method
responsible. (Hypothesis replays a failing program to shrink and report it; a machine whose
steps depend on arrival times makes that replay differ, which hypothesis reports as
``Flaky``/``FlakyStrategyDefinition`` instead of the violation.)

The client side is real (a :class:`~syft_flwr.client.runner.ClientRunner`
serving a Flower ``ClientApp``); a gate in front of it applies the message's action.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import ClassVar

import pytest
from flwr.app import ConfigRecord, Context, Message, Metadata, RecordDict
from flwr.clientapp import ClientApp
from flwr.common.constant import ErrorCode
from hypothesis import HealthCheck, Phase, settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    RuleBasedStateMachine,
    invariant,
    rule,
    run_state_machine_as_test,
)

from syft_flwr.client.runner import ClientRunner
from syft_flwr.errors import RequestRefusedError, WireFormatError
from syft_flwr.grid.syft_grid import SERVER_NODE_ID, SyftGrid
from syft_flwr.message_factory import message_with_metadata
from syft_flwr.testing.fixtures import APP, ENDPOINT, MakeTransport, TransportFixtures
from syft_flwr.testing.local import empty_context
from syft_flwr.testing.rules import RULES_COMMAND
from syft_flwr.transport import Body, ReplyStatus, Request, Transport
from syft_flwr.wire import decode_message, encode_message

__all__ = [
    "ACTIONS",
    "ANSWERED",
    "UNANSWERED",
    "ProtocolMachineTests",
    "build_protocol_machine",
    "instruction",
]

ANSWERED = ("reply", "duplicate", "refuse", "crash")
"""Actions that end in an answer: the app's reply (``duplicate``: the grid also sends a copy
of the message, which must be answered with the same reply and not reach the app again), a
refusal (``RequestRefusedError``: ``REJECTED`` with its message), a handler fault (an
exception: ``REJECTED``). Such messages get a TTL far beyond the test."""

UNANSWERED = ("ignore", "garbage")
"""Actions that leave a message unanswered (no reply, or bytes that are no envelope): such a
message is pushed with the short TTL and must end in an expiry."""

ACTIONS = ANSWERED + UNANSWERED
"""What a datasite may do with a request that reached it."""

ACTION_RECORD = "syft_flwr_kit"
"""The content record carrying a message's action to the datasite's gate."""

GARBAGE = b"\x00this is not an envelope"
REFUSAL = "the kit's datasite refuses"
LONG_TTL = 3600.0


def instruction(
    grid: SyftGrid,
    node_id: int,
    message_type: str,
    *,
    ttl: float | None = None,
    content: RecordDict | None = None,
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
        ttl=ttl if ttl is not None else LONG_TTL,
        message_type=message_type,
    )
    return message_with_metadata(metadata, content=content or RecordDict())


def _action_of(request: Request) -> tuple[str, str] | None:
    """``(message_id, action)`` of a machine's message; ``None`` for anything else."""
    try:
        message = decode_message(request.body)
    except WireFormatError:
        return None
    if not message.has_content() or ACTION_RECORD not in message.content:
        return None
    return message.metadata.message_id, str(message.content[ACTION_RECORD]["action"])


class _Gate:
    """Applies each message's action in front of the runner; never waits for the machine."""

    def __init__(self, runner: ClientRunner, site: str, lateness: float) -> None:
        self.runner = runner
        self.site = site
        self.lateness = lateness
        self.arrivals: dict[str, int] = {}
        self.late: list[str] = []
        self._lock = threading.Lock()

    def handle(self, request: Request) -> Body | None:
        seen = _action_of(request)
        if seen is None:  # the stop signal, or a foreign request: the runner decides
            return self.runner.handle(request)
        message_id, action = seen
        with self._lock:
            self.arrivals[message_id] = self.arrivals.get(message_id, 0) + 1
            late = time.time() - request.expires_at
            if late > self.lateness:
                self.late.append(
                    f"Transport.run: request {request.id} (message {message_id}) reached the "
                    f"handler of {self.site} {late:.2f} s after its expiry"
                )
        if action == "ignore":
            return None
        if action == "garbage":
            return GARBAGE
        if action == "refuse":
            raise RequestRefusedError(f"{REFUSAL} message {message_id}")
        if action == "crash":
            raise RuntimeError(f"the kit's handler crashes on message {message_id}")
        return self.runner.handle(request)


@dataclass
class _Datasite:
    transport: Transport
    runner: ClientRunner
    gate: _Gate
    thread: threading.Thread
    app_calls: dict[str, int] = field(default_factory=dict)


@dataclass
class _Sent:
    site: int
    action: str
    deadline: float
    copy_future: str | None = None
    outcome: Message | None = None


def build_protocol_machine(
    make_transport: MakeTransport,
    identity: Callable[[str], str],
    *,
    timeout: float,
    ttl: float,
    datasites: int = 2,
    lateness: float = 1.0,
    poll_interval: float = 0.01,
) -> type[RuleBasedStateMachine]:
    """A state machine class bound to a transport factory (for ``run_state_machine_as_test``).

    :param timeout: bound of every wait; running out of it is a violation.
    :param ttl: the short TTL of messages meant to expire.
    :param lateness: how long after its expiry a request may still reach a handler (the
        transport checked it in time, then the thread was descheduled); a transport handing
        out expired requests is late by far more.
    """

    class GridProtocolMachine(RuleBasedStateMachine):
        def __init__(self) -> None:
            super().__init__()
            self.violations: list[str] = []
            self.sent: dict[str, _Sent] = {}
            self.to_expire: list[str] = []
            self.sites: list[_Datasite] = []
            server = make_transport(identity("server"))
            try:
                for i in range(datasites):
                    self.sites.append(self._start_site(identity(f"site{i}"), server.identity))
            except BaseException:
                server.close()
                raise
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
                _counting_app(calls), empty_context(), transport, APP, trusted_aggregators=[server]
            )
            gate = _Gate(runner, email, lateness)
            transport.serve(APP, ENDPOINT, gate.handle)
            thread = threading.Thread(target=transport.run, daemon=True, name=f"run {email}")
            thread.start()
            return _Datasite(transport, runner, gate, thread, app_calls=calls)

        # -- rules ------------------------------------------------------------------

        @rule(site=st.integers(0, datasites - 1), action=st.sampled_from(ACTIONS))
        def push(self, site: int, action: str) -> None:
            short = action in UNANSWERED
            content = RecordDict({ACTION_RECORD: ConfigRecord({"action": action})})
            message = instruction(
                self.grid, self.nodes[site], "query", ttl=ttl if short else None, content=content
            )
            (message_id,) = self.grid.push_messages([message])
            metadata = message.metadata
            sent = _Sent(site, action, metadata.created_at + metadata.ttl)
            self.sent[message_id] = sent
            if short:
                self.to_expire.append(message_id)
            if action == "duplicate":  # what a server resending after a crash does
                sent.copy_future = self.grid.transport.send(
                    self.sites[site].transport.identity,
                    APP,
                    ENDPOINT,
                    encode_message(message),
                    sent.deadline,
                )

        @rule()
        def pull(self) -> None:
            pending = [mid for mid, sent in self.sent.items() if sent.outcome is None]
            for reply in self.grid.pull_messages(pending):
                self._account(reply)

        @rule()
        def settle(self) -> None:
            """Wait (bounded) until every answered message has its reply."""
            self._wait_for(
                [m for m, s in self.sent.items() if s.action in ANSWERED and s.outcome is None],
                time.monotonic() + timeout,
            )

        @rule()
        def expire(self) -> None:
            """Let the oldest message meant to expire run out, then wait for its error reply."""
            if not self.to_expire:
                self.pull()
                return
            message_id = self.to_expire.pop(0)
            time.sleep(max(0.0, self.sent[message_id].deadline - time.time()))
            self._wait_for([message_id], time.monotonic() + timeout)

        @rule(site=st.integers(0, datasites - 1))
        def restart(self, site: int) -> None:
            datasite = self.sites[site]
            datasite.transport.stop()
            datasite.thread.join(timeout)
            if datasite.thread.is_alive():
                raise AssertionError(
                    f"Transport.stop: run() of {datasite.transport.identity} did not return "
                    f"within {timeout} s"
                )
            datasite.thread = threading.Thread(
                target=datasite.transport.run, daemon=True, name=datasite.thread.name
            )
            datasite.thread.start()

        # -- accounting -------------------------------------------------------------

        def _wait_for(self, message_ids: list[str], give_up_at: float) -> None:
            while True:
                self.pull()
                missing = [m for m in message_ids if self.sent[m].outcome is None]
                if not missing:
                    return
                if time.monotonic() >= give_up_at:
                    self.violations.extend(self._lost(m) for m in missing)
                    return
                time.sleep(poll_interval)

        def _lost(self, message_id: str) -> str:
            sent = self.sent[message_id]
            datasite = self.sites[sent.site]
            where = datasite.transport.identity
            if sent.action in UNANSWERED:
                return (
                    f"SyftGrid.pull_messages: message {message_id} to {where} ({sent.action}) "
                    f"had no error reply {timeout} s after its expiry"
                )
            if not datasite.gate.arrivals.get(message_id):
                return (
                    f"Transport.send/run: message {message_id} ({sent.action}) never reached "
                    f"the handler of {where} within {timeout} s"
                )
            return (
                f"Transport.run/poll: {where} handled message {message_id} ({sent.action}) but "
                f"no reply reached the grid within {timeout} s"
            )

        def _account(self, reply: Message) -> None:
            answered = reply.metadata.reply_to_message_id
            sent = self.sent.get(answered)
            if sent is None:
                self.violations.append(f"Transport.poll: a reply to unknown message {answered!r}")
                return
            if sent.outcome is not None:
                self.violations.append(f"Transport.poll: a second reply to message {answered}")
                return
            sent.outcome = reply
            problem = _judge(sent.action, answered, reply)
            if problem:
                self.violations.append(problem)

        # -- invariants -------------------------------------------------------------

        @invariant()
        def no_violation(self) -> None:
            late = [line for site in self.sites for line in site.gate.late]
            assert not (self.violations or late), "\n".join(
                [*self.violations, *late, f"(the rules: {RULES_COMMAND})"]
            )

        @invariant()
        def app_called_at_most_once_per_message(self) -> None:
            for datasite in self.sites:
                repeated = {mid: n for mid, n in datasite.app_calls.items() if n > 1}
                assert not repeated, (
                    f"ClientRunner.handle: messages reached the app of "
                    f"{datasite.transport.identity} more than once: {repeated}"
                )

        def teardown(self) -> None:
            try:
                if not self.violations:
                    self._finish()
                self.no_violation()
            finally:
                for datasite in self.sites:
                    datasite.transport.close()
                self.grid.transport.close()

        def _finish(self) -> None:
            """Everything ends: replies in, expiries seen, the stop signal stops every site."""
            self.settle()
            while self.to_expire:
                self.expire()
            self._check_copies()
            reason = "protocol test over"
            reached = set(self.grid.send_stop_signal(reason=reason))
            for datasite in self.sites:
                where = datasite.transport.identity
                if where not in reached:
                    self.violations.append(
                        f"Transport.send: the stop signal for {where} could not be sent"
                    )
                    continue
                datasite.thread.join(timeout)
                if datasite.thread.is_alive() or datasite.runner.stop_reason != reason:
                    self.violations.append(
                        f"the stop signal never reached {where}: Transport.send/serve lost it "
                        f"(run() still running {timeout} s after it was sent)"
                    )

        def _check_copies(self) -> None:
            for message_id, sent in self.sent.items():
                if sent.copy_future is None:
                    continue
                transport = self.grid.transport
                give_up_at = time.monotonic() + timeout
                while (copy := transport.poll(sent.copy_future)) is None:
                    if time.monotonic() >= give_up_at:
                        break
                    transport.wait_ready([sent.copy_future], poll_interval * 10)
                if copy is None or copy.status is not ReplyStatus.OK:
                    self.violations.append(
                        f"Transport.run: the second delivery of message {message_id} was not "
                        f"answered with its reply (got {copy})"
                    )
                elif decode_message(copy.body).metadata.reply_to_message_id != message_id:
                    self.violations.append(
                        f"Transport.poll: the copy of message {message_id} got another reply"
                    )
                transport.forget(sent.copy_future)

    return GridProtocolMachine


def _judge(action: str, message_id: str, reply: Message) -> str | None:
    """What is wrong with ``reply`` as the end of a message the datasite met with ``action``."""
    error = reply.error if reply.has_error() else None
    if action in ("reply", "duplicate"):
        if error is not None:
            return (
                f"Transport.run/poll: message {message_id} was answered by the app but ended "
                f"in error {error.code}: {error.reason}"
            )
        echo = reply.content["echo"]["id"] if "echo" in reply.content else None
        if echo != message_id:
            return (
                f"Transport.poll: the reply to message {message_id} carries the answer to "
                f"{echo!r}: replies reached the wrong future"
            )
        return None
    if action == "refuse":
        if (
            error is None
            or error.code != ErrorCode.NODE_UNAVAILABLE
            or REFUSAL not in (error.reason or "")
        ):
            return (
                f"Transport.serve: message {message_id} raised RequestRefusedError in the "
                f"handler; it must come back REJECTED with the error's message, got {error}"
            )
        return None
    if action == "crash":
        if error is None or error.code != ErrorCode.NODE_UNAVAILABLE:
            return (
                f"Transport.serve: the handler raised on message {message_id}; the transport "
                f"must answer REJECTED, got {error if error else 'a reply'}"
            )
        return None
    if error is None or error.code != ErrorCode.MESSAGE_UNAVAILABLE:
        return (
            f"Transport.poll: message {message_id} was never answered ({action}) but ended in "
            f"{error if error else 'a reply'} instead of an expiry"
        )
    return None


def _counting_app(calls: dict[str, int]) -> ClientApp:
    app = ClientApp()

    @app.query()
    def query(message: Message, context: Context) -> Message:
        message_id = message.metadata.message_id
        calls[message_id] = calls.get(message_id, 0) + 1
        content = RecordDict({"echo": ConfigRecord({"id": message_id})})
        return Message(content, reply_to=message)

    return app


class ProtocolMachineTests(TransportFixtures):
    """Runs the protocol state machine with a fixed, deterministic example budget.

    :cvar protocol_examples: how many random programs hypothesis runs.
    :cvar protocol_steps: how many steps each program has at most.
    :cvar protocol_ttl: the short TTL of messages meant to expire (raise it for transports
        with slow delivery).
    :cvar protocol_lateness: how late after its expiry a request may reach a handler.
    :cvar protocol_budget: seconds the whole test may take (a verdict, not a hang, beyond).

    Programs are derandomized (the same on every run) unless pytest is given
    ``--hypothesis-seed=N``: then seed ``N`` picks them, which is how
    ``scripts/kit_soak.py`` runs many different programs. A failing program is reported as
    found, without shrinking (a shrink replays it many times over, with real waits).
    """

    protocol_examples: ClassVar[int] = 25
    protocol_steps: ClassVar[int] = 20
    protocol_ttl: ClassVar[float] = 0.15
    protocol_lateness: ClassVar[float] = 1.0
    protocol_budget: ClassVar[float] = 120.0

    @pytest.mark.syft_flwr_budget("protocol_budget")
    def test_protocol_state_machine(
        self, make_transport: MakeTransport, request: pytest.FixtureRequest
    ) -> None:
        machine = build_protocol_machine(
            make_transport,
            self.identity,
            timeout=self.timeout,
            ttl=self.protocol_ttl,
            lateness=self.protocol_lateness,
            poll_interval=min(self.poll_interval, 0.02),
        )
        seeded = request.config.getoption("hypothesis_seed", None) is not None
        run_state_machine_as_test(
            machine,
            settings=settings(
                max_examples=self.protocol_examples,
                stateful_step_count=self.protocol_steps,
                deadline=None,
                derandomize=not seeded,
                database=None,
                phases=(Phase.explicit, Phase.reuse, Phase.generate),
                suppress_health_check=list(HealthCheck),
                report_multiple_bugs=False,
            ),
        )
