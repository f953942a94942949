"""The client side: serve a Flower ``ClientApp`` on a transport until the stop signal.

Each request is checked by a :class:`~syft_flwr.grid.gate.RequestGate` (from a trusted aggregator,
not seen before, not expired, opens if sealed, addressed to this node), then by the run rules
below, handed to the ``ClientApp``, and its reply sealed back. A ``ClientApp`` exception becomes
an error reply (``CLIENT_APP_RAISED_EXCEPTION``) and serving goes on; the stop signal makes the
runner return cleanly.

Run rules, which only a trusted aggregator can trigger in the first place:

- **a run belongs to the aggregator that first asked for it**: a second trusted aggregator that
  sends messages with the same run id is refused (it cannot take over or end someone else's run);
- **a job start binds the datasite to its run**: messages of any other run are refused until the
  runner stops; without a job start it serves every run of its aggregators, as syft-flwr 0.5.x
  clients do;
- **a stop signal counts only from the aggregator of the run being served**, and only for that
  run (a stop signal sent before this runner started, or for another run, is dropped);
- **owner approval** (``approve = "manual"``, :mod:`syft_flwr.approvals`): a request of a run its
  owner has not decided on waits (up to its TTL) for ``syft-flwr approve``; a denied run is
  refused. Stop signals are never held.

Next to the Flower endpoint the runner serves aux requests
(:data:`~syft_flwr.services.auxiliary.AUX_ENDPOINT`) behind the same gate and the same run rules:
the built-in topics of :mod:`syft_flwr.client.services` (ping, resource check and cancel, job
start) and any handler registered with :meth:`ClientRunner.register_aux_message_handler`. Aux
requests never reach the ``ClientApp``.

With a :class:`~syft_flwr.crypto.SecureChannel`, a request must open (authentic, addressed
here, fresh, not replayed) before anything is decoded, and the reply is sealed to the request's
sender as the answer to that envelope. A refused request is answered with a refusal
(:class:`~syft_flwr.errors.RequestRefusedError`) and never reaches the ``ClientApp``; a reply
that cannot be sealed is not sent. A request in syft-crypto's ``X3DH-SyftBox`` scheme is
accepted only from a sender without native keys, and answered in it. Every decision is written
to the datasite's audit trail.
"""

from __future__ import annotations

import logging
import threading
import time
import traceback
from collections.abc import Sequence
from typing import Any

import pluggy
from flwr.app import Context, Error, Message, RecordDict
from flwr.clientapp import ClientApp
from flwr.common.constant import ErrorCode

from syft_flwr.approvals import ApprovalBook
from syft_flwr.audit import DROPPED, HELD, REFUSED, AuditTrail
from syft_flwr.authorization import SenderPolicy
from syft_flwr.client.services import ClientServices
from syft_flwr.crypto.channel import SecureChannel
from syft_flwr.errors import AuxError, RequestRefusedError, RunDeniedError, SyftFlwrError
from syft_flwr.events import StopSignalReceived
from syft_flwr.grid.gate import Admitted, RequestGate, key_retry_window
from syft_flwr.grid.syft_grid import SyftGrid
from syft_flwr.node_ids import normalise_email
from syft_flwr.plugins import fire_event, get_plugin_manager
from syft_flwr.services.auxiliary import (
    AUX_ENDPOINT,
    DEFAULT_FIRE_AND_FORGET_TTL,
    AuxHandler,
    AuxHandlerRegistry,
    AuxReply,
    AuxSender,
    AuxService,
    parse_aux_request,
)
from syft_flwr.services.resources import (
    DEFAULT_RESERVATION_TTL,
    RESOURCES_CHECK_TOPIC,
    ReservationBook,
    ResourceOffer,
    parse_check_request,
)
from syft_flwr.transport import Body, Request, Transport

__all__ = ["APPROVAL_CHECK_INTERVAL", "ClientRunner"]

logger = logging.getLogger(__name__)

_APP_CALLS = threading.Lock()
"""Held while a ``ClientApp`` runs: datasites served from one interpreter (the demo, the kit's
:class:`~syft_flwr.testing.local.LocalFederation`, tests) call their apps one at a time. Under
the GIL their threads gain no parallelism from overlapping, and neither user apps nor CPython
3.11's parser are safe to run concurrently: NumPy's ``np.load``, which Flower's
``Array.numpy`` calls, parses array headers with ``ast.literal_eval``, and two threads doing
that at once can fail with "AST constructor recursion depth mismatch" (CPython gh-106905), an
error reply for the strategy. A datasite in its own process, the deployed case, never waits."""

APPROVAL_CHECK_INTERVAL = 0.25
"""Seconds between two looks at the owner's decision while a request is held."""


class ClientRunner:
    """Serves one ``ClientApp`` (and the aux endpoint) for one datasite over one transport.

    :param client_app: the Flower ``ClientApp`` to call.
    :param context: the node's Flower ``Context`` (its ``node_id`` is set to this datasite's).
    :param transport: the transport, acting as this datasite.
    :param app_name: the application path, e.g. ``"flwr/diabetes"``.
    :param endpoint: the endpoint to serve.
    :param plugin_manager: where hooks go; the process-wide manager by default.
    :param channel: open requests and seal replies with it; ``None`` serves plaintext.
    :param trusted_aggregators: the only senders this datasite serves (required: a datasite
        never serves whoever writes to it); see :func:`~syft_flwr.authorization.aggregator_policy`.
    :param resources: what this datasite offers to jobs; detected from the machine if ``None``.
    :param aggregator: where this datasite's own aux requests go; the only trusted aggregator
        when there is one, else the aggregator of the run being served.
    :param reservation_ttl: default lifetime of resource reservations, in seconds.
    :param audit: where every decision on a request is recorded; ``None`` records nothing.
    :param approvals: hold each new run until its owner decides (``approve = "manual"``);
        ``None`` serves every run of a trusted aggregator.
    """

    def __init__(
        self,
        client_app: ClientApp,
        context: Context,
        transport: Transport,
        app_name: str,
        endpoint: str = "messages",
        plugin_manager: pluggy.PluginManager | None = None,
        channel: SecureChannel | None = None,
        *,
        trusted_aggregators: Sequence[str] | SenderPolicy,
        resources: ResourceOffer | None = None,
        aggregator: str | None = None,
        reservation_ttl: float = DEFAULT_RESERVATION_TTL,
        audit: AuditTrail | None = None,
        approvals: ApprovalBook | None = None,
    ) -> None:
        self.client_app = client_app
        self.context = context
        self.transport = transport
        self.app_name = app_name
        self.endpoint = endpoint
        policy = (
            trusted_aggregators
            if isinstance(trusted_aggregators, SenderPolicy)
            else SenderPolicy(trusted_aggregators, role="aggregator")
        )
        self.gate = RequestGate(
            transport.identity,
            channel,
            policy=policy,
            audit=audit,
            key_retry_window=key_retry_window(transport),
        )
        self.node_id = self.gate.node_id
        self.context.node_id = self.node_id
        self.stop_reason: str | None = None
        self.handled = 0
        self.approvals = approvals
        self._run_id: int | None = None
        self._run_owners: dict[int, str] = {}
        self._started_at = time.time()
        self._plugins = plugin_manager
        offer = resources if resources is not None else ResourceOffer.from_table({})
        self.services = ClientServices(
            transport.identity,
            ReservationBook(offer, ttl=reservation_ttl),
            on_job_started=self._job_started,
        )
        self.aux_handlers = AuxHandlerRegistry()
        self.services.register(self.aux_handlers)
        self._aux = AuxService(self.aux_handlers, self.gate)
        only = policy.emails[0] if len(policy.emails) == 1 else None
        self._aggregator = aggregator or only
        self._job_holder: str | None = None
        self._senders: dict[str, AuxSender] = {}
        self._lock = threading.Lock()

    @property
    def channel(self) -> SecureChannel | None:
        """The channel requests are opened and replies sealed with (``None``: plaintext)."""
        return self.gate.channel

    def run(self) -> str | None:
        """Serve until the stop signal (returns its reason) or until the transport stops."""
        self.gate.install(self.transport)
        self.transport.serve(self.app_name, self.endpoint, self.handle)
        self.transport.serve(self.app_name, AUX_ENDPOINT, self.handle_aux)
        self.transport.run()
        return self.stop_reason

    def handle(self, request: Request) -> Body | None:
        """Answer one Flower request; ``None`` means no reply (stop signal, duplicate, ...).

        :raises RequestRefusedError: the request is refused (the transport answers so).
        """
        admitted = self.gate.admit(request)
        if admitted is None:
            return None
        if admitted.answered is not None:
            return self.gate.answer_again(admitted)
        message = admitted.message
        reason = self._manager().hook.syft_flwr_stop_reason(message=message)
        if reason is not None:
            stale = self._stale_stop(admitted)
            if stale is not None:
                self.gate.record(admitted, DROPPED, stale)
                return None
            self.gate.accept(admitted)
            self._stop(reason)
            return None
        if not self._may_serve(admitted):
            return None
        with self._lock:
            self._run_id = message.metadata.run_id
        self.gate.serving_run = message.metadata.run_id
        self.gate.accept(admitted)
        return self.gate.seal_reply(admitted, self._call_app(message))

    def handle_aux(self, request: Request) -> Body | None:
        """Answer one aux request (never through the ``ClientApp``); ``None``: no reply.

        :raises RequestRefusedError: the request is refused (the transport answers so).
        """
        admitted = self.gate.admit(request)
        if admitted is not None and admitted.answered is not None:
            return self.gate.answer_again(admitted)
        if admitted is None or not self._may_serve(admitted):
            return None
        self.gate.accept(admitted)
        return self._aux.answer(admitted)

    def _may_serve(self, admitted: Admitted) -> bool:
        """Apply the run rules; ``False`` to drop silently.

        :raises RequestRefusedError: the run belongs to another aggregator, another run holds
            this datasite's job, or the owner denied the run.
        """
        request, metadata = admitted.request, admitted.message.metadata
        run_id = metadata.run_id
        try:
            self._check_owner(run_id, request.sender)
            job = self.services.job_run_id
            if job is not None and run_id != job:
                raise RequestRefusedError(
                    f"{self.transport.identity} serves the job of run {job}, not run {run_id}"
                )
            if not self._approved(admitted):
                return False
        except RequestRefusedError as exc:
            logger.warning("refusing request %s of run %s: %s", request.id, run_id, exc)
            self.gate.record(admitted, REFUSED, str(exc))
            raise
        return True

    def _check_owner(self, run_id: int, sender: str) -> None:
        """Bind ``run_id`` to the first aggregator that asks for it; refuse any other."""
        with self._lock:
            owner = self._run_owners.setdefault(run_id, normalise_email(sender))
        if owner != normalise_email(sender):
            raise RequestRefusedError(f"run {run_id} belongs to aggregator {owner}, not {sender}")

    def _approved(self, admitted: Admitted) -> bool:
        """Whether the owner lets this request's run be served, holding it until they decide.

        ``False`` when it expired while held (dropped, and recorded so).

        :raises RunDeniedError: the owner denied the run.
        """
        if self.approvals is None:
            return True
        request, metadata = admitted.request, admitted.message.metadata
        decision = self.approvals.decision(metadata.run_id)
        if decision is None:
            self._hold(admitted)
            while decision is None and admitted.still_fresh():
                time.sleep(min(APPROVAL_CHECK_INTERVAL, max(request.expires_at - time.time(), 0)))
                decision = self.approvals.decision(metadata.run_id)
        if decision is None:
            logger.info("request %s expired while run %s waited", request.id, metadata.run_id)
            self.gate.record(admitted, DROPPED, "expired while waiting for the owner's approval")
            return False
        if not decision.approved:
            raise RunDeniedError(
                f"the owner of {self.transport.identity} denied run {metadata.run_id}"
            )
        return True

    def _hold(self, admitted: Admitted) -> None:
        request, metadata = admitted.request, admitted.message.metadata
        assert self.approvals is not None
        pending = self.approvals.note_request(
            metadata.run_id,
            request.sender,
            request.app,
            self._describe(admitted),
            resources=_requested_resources(admitted),
        )
        if pending.requests == 1:
            logger.warning(
                "run %s of %s waits for the owner's approval: syft-flwr approve %s (or deny)",
                metadata.run_id,
                request.sender,
                metadata.run_id,
            )
        self.gate.record(admitted, HELD, "waiting for the owner's approval")

    @staticmethod
    def _describe(admitted: Admitted) -> str:
        """``train``, ``evaluate``, or the aux topic of an aux request."""
        message = admitted.message
        if admitted.request.endpoint != AUX_ENDPOINT:
            return message.metadata.message_type
        try:
            return parse_aux_request(message)[0]
        except AuxError:
            return message.metadata.message_type

    # -- aux, as seen from the datasite -----------------------------------------------------

    def register_aux_message_handler(self, topic: str, handler: AuxHandler) -> None:
        """Answer the aggregator's aux requests on ``topic`` with ``handler``.

        :raises AuxError: ``topic`` is not a non-empty string, ``handler`` is not callable,
            or ``topic`` has a handler already (the built-in ``syft_flwr.*`` topics included).
        """
        self.aux_handlers.register(topic, handler)

    @property
    def aggregator(self) -> str | None:
        """Where this datasite's aux requests go: the ``aggregator`` argument (or the only
        trusted aggregator), else the server that started its job, else the aggregator of the
        run it served last."""
        with self._lock:
            served = None if self._run_id is None else self._run_owners.get(self._run_id)
            return self._aggregator or self._job_holder or served

    def send_aux_request(
        self,
        topic: str,
        request: RecordDict,
        timeout: float,
        optional: bool = False,
        secure: bool | None = None,
    ) -> AuxReply:
        """Send ``request`` on ``topic`` to the aggregator and wait up to ``timeout`` seconds.

        :raises AuxError: no aggregator is known yet, or a bad topic, request or timeout.
        """
        aggregator, sender = self._aggregator_sender()
        replies = sender.send_aux_request([aggregator], topic, request, timeout, optional, secure)
        return replies[aggregator]

    def fire_and_forget_aux_request(
        self,
        topic: str,
        request: RecordDict,
        optional: bool = False,
        secure: bool | None = None,
        *,
        ttl: float = DEFAULT_FIRE_AND_FORGET_TTL,
    ) -> AuxReply:
        """Send ``request`` on ``topic`` to the aggregator without waiting for its answer.

        :raises AuxError: no aggregator is known yet, or a bad topic or request.
        """
        aggregator, sender = self._aggregator_sender()
        replies = sender.fire_and_forget_aux_request(
            [aggregator], topic, request, optional, secure, ttl=ttl
        )
        return replies[aggregator]

    def _aggregator_sender(self) -> tuple[str, AuxSender]:
        aggregator = self.aggregator
        if aggregator is None:
            raise AuxError(
                f"{self.transport.identity} does not know its aggregator yet: set aggregator "
                "in [tool.syft_flwr] (or pass aggregator=), or send after its first message"
            )
        with self._lock:
            sender = self._senders.get(aggregator)
            if sender is None:
                grid = SyftGrid(
                    self.app_name,
                    [aggregator],
                    self.transport,
                    endpoint=AUX_ENDPOINT,
                    plugin_manager=self._plugins,
                    channel=self.channel,
                    reports_rounds=False,
                )
                sender = self._senders[aggregator] = AuxSender(grid)
        sender.grid.set_run(self._run_id or 0)
        return aggregator, sender

    def _job_started(self, run_id: int, server: str) -> None:
        """A job start bound this datasite to ``run_id``: stop signals of other runs are stale
        from now on, and ``server`` is the aggregator."""
        with self._lock:
            self._run_id = run_id
            self._run_owners.setdefault(run_id, normalise_email(server))
            self._job_holder = server
        self.gate.serving_run = run_id

    def _stale_stop(self, admitted: Admitted) -> str | None:
        """Why a stop signal does not count, or ``None`` when it does.

        Only the aggregator of the run being served can end it. Stop signals also linger on
        slow media (a Drive file lives until its TTL), so a client restarted soon after a run
        would otherwise obey the previous run's signal.
        """
        metadata, sender = admitted.message.metadata, admitted.request.sender
        with self._lock:
            serving = self._run_id
            owner = None if serving is None else self._run_owners.get(serving)
        if serving is not None and metadata.run_id != serving:
            logger.info(
                "ignoring the stop signal of run %s (serving run %s)", metadata.run_id, serving
            )
            return f"a stop signal of run {metadata.run_id}, but run {serving} is being served"
        if owner is not None and owner != normalise_email(sender):
            logger.warning("ignoring a stop signal of run %s from %s", metadata.run_id, sender)
            return f"run {serving} belongs to aggregator {owner}, not {sender}"
        if serving is None and metadata.created_at < self._started_at:
            logger.info(
                "ignoring a stop signal sent before this client started (run %s)", metadata.run_id
            )
            return "a stop signal sent before this client started"
        return None

    def _call_app(self, message: Message) -> Message:
        self.context.run_id = message.metadata.run_id
        try:
            with _APP_CALLS:
                reply = self.client_app(message, self.context)
        except Exception as exc:
            logger.exception("the ClientApp raised on %s", message.metadata.message_type)
            reason = f"{type(exc).__name__}: {exc}\n{traceback.format_exc()}"
            return Message(
                Error(code=ErrorCode.CLIENT_APP_RAISED_EXCEPTION, reason=reason), reply_to=message
            )
        self.handled += 1
        return reply

    def _stop(self, reason: str) -> None:
        logger.info("%s received the stop signal: %s", self.transport.identity, reason)
        self.stop_reason = reason
        fire_event(
            StopSignalReceived(datasite=self.transport.identity, reason=reason), self._plugins
        )
        self.transport.stop()

    def _manager(self) -> pluggy.PluginManager:
        return self._plugins or get_plugin_manager()


def _requested_resources(admitted: Admitted) -> dict[str, Any] | None:
    """What a held resource check asks for, for the owner's pending list (``None`` otherwise)."""
    if admitted.request.endpoint != AUX_ENDPOINT:
        return None
    try:
        topic, content = parse_aux_request(admitted.message)
        if topic != RESOURCES_CHECK_TOPIC:
            return None
        requirement, _ = parse_check_request(content)
    except SyftFlwrError:
        return None
    return {key: value for key, value in requirement.to_config().items()}
