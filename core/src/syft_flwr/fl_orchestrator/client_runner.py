"""The client side: serve a Flower ``ClientApp`` on a transport until the stop signal.

Each request is checked by a :class:`~syft_flwr.inbound.RequestGate` (not seen before, not
expired, opens if sealed, addressed to this node), handed to the ``ClientApp``, and its reply
sealed back. A ``ClientApp`` exception becomes an error reply (``CLIENT_APP_RAISED_EXCEPTION``)
and serving goes on; the stop signal makes the runner return cleanly.

Next to the Flower endpoint the runner serves aux requests
(:data:`~syft_flwr.engine.aux.AUX_ENDPOINT`) behind the same gate: the built-in topics of
:mod:`syft_flwr.engine.client_services` (ping, resource check and cancel, job start) and any
handler registered with :meth:`ClientRunner.register_aux_message_handler`. Aux requests never
reach the ``ClientApp``. Once a job start binds the datasite to a run, Flower messages of any
other run are dropped; without a job start it serves every run, as syft-flwr 0.5.x clients do.

With a :class:`~syft_flwr.crypto.SecureChannel`, a request must open (authentic, addressed
here, fresh, not replayed) before anything is decoded, and the reply is sealed to the request's
sender as the answer to that envelope. A request that fails any check gets no reply and never
reaches the ``ClientApp``; a reply that cannot be sealed is not sent. A request in syft-crypto's
``X3DH-SyftBox`` scheme is accepted only from a sender without native keys, and answered in it.
"""

from __future__ import annotations

import logging
import threading
import time
import traceback

import pluggy
from flwr.app import Context, Error, Message, RecordDict
from flwr.clientapp import ClientApp
from flwr.common.constant import ErrorCode

from syft_flwr.crypto.channel import SecureChannel
from syft_flwr.engine.aux import (
    AUX_ENDPOINT,
    DEFAULT_FIRE_AND_FORGET_TTL,
    AuxHandler,
    AuxHandlerRegistry,
    AuxReply,
    AuxSender,
    AuxService,
)
from syft_flwr.engine.client_services import ClientServices
from syft_flwr.engine.resources import DEFAULT_RESERVATION_TTL, ReservationBook, ResourceOffer
from syft_flwr.errors import AuxError
from syft_flwr.fl_orchestrator.syft_grid import SyftGrid
from syft_flwr.inbound import RequestGate
from syft_flwr.plugins import get_plugin_manager, notify
from syft_flwr.transport import Request, Transport

__all__ = ["ClientRunner"]

logger = logging.getLogger(__name__)


class ClientRunner:
    """Serves one ``ClientApp`` (and the aux endpoint) for one datasite over one transport.

    :param client_app: the Flower ``ClientApp`` to call.
    :param context: the node's Flower ``Context`` (its ``node_id`` is set to this datasite's).
    :param transport: the transport, acting as this datasite.
    :param app_name: the application path, e.g. ``"flwr/diabetes"``.
    :param endpoint: the endpoint to serve.
    :param plugin_manager: where hooks go; the process-wide manager by default.
    :param channel: open requests and seal replies with it; ``None`` serves plaintext.
    :param resources: what this datasite offers to jobs; detected from the machine if ``None``.
    :param aggregator: the aggregator's email, for aux requests this datasite sends; learnt
        from the messages it serves when ``None``.
    :param reservation_ttl: default lifetime of resource reservations, in seconds.
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
        resources: ResourceOffer | None = None,
        aggregator: str | None = None,
        reservation_ttl: float = DEFAULT_RESERVATION_TTL,
    ) -> None:
        self.client_app = client_app
        self.context = context
        self.transport = transport
        self.app_name = app_name
        self.endpoint = endpoint
        self.gate = RequestGate(transport.identity, channel)
        self.node_id = self.gate.node_id
        self.context.node_id = self.node_id
        self.stop_reason: str | None = None
        self.handled = 0
        self._run_id: int | None = None
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
        self._aggregator = aggregator
        self._job_holder: str | None = None
        self._last_sender: str | None = None
        self._senders: dict[str, AuxSender] = {}
        self._lock = threading.Lock()

    @property
    def channel(self) -> SecureChannel | None:
        """The channel requests are opened and replies sealed with (``None``: plaintext)."""
        return self.gate.channel

    def run(self) -> str | None:
        """Serve until the stop signal (returns its reason) or until the transport stops."""
        self.transport.serve(self.app_name, self.endpoint, self.handle)
        self.transport.serve(self.app_name, AUX_ENDPOINT, self.handle_aux)
        self.transport.run()
        return self.stop_reason

    def handle(self, request: Request) -> bytes | None:
        """Answer one Flower request; ``None`` means no reply (stop signal, duplicate, ...)."""
        admitted = self.gate.admit(request)
        if admitted is None:
            return None
        message = admitted.message
        reason = self._manager().hook.syft_flwr_stop_reason(message=message)
        if reason is not None:
            if self._stale_stop(message):
                return None
            self._stop(reason)
            return None
        if not admitted.still_fresh():
            # checked again right before the app: opening and decoding take time
            logger.warning("dropping request %s: it expired before the app saw it", request.id)
            return None
        job = self.services.job_run_id
        if job is not None and message.metadata.run_id != job:
            logger.warning(
                "dropping request %s of run %s: %s serves the job of run %s",
                request.id,
                message.metadata.run_id,
                self.transport.identity,
                job,
            )
            return None
        self._run_id = message.metadata.run_id
        with self._lock:
            self._last_sender = request.sender
        return self.gate.seal_reply(admitted, self._call_app(message))

    def handle_aux(self, request: Request) -> bytes | None:
        """Answer one aux request (never through the ``ClientApp``); ``None``: no reply."""
        return self._aux.handle(request)

    # -- aux, as seen from the datasite -----------------------------------------------------

    def register_aux_message_handler(self, topic: str, handler: AuxHandler) -> None:
        """Answer the aggregator's aux requests on ``topic`` with ``handler``.

        :raises AuxError: ``topic`` is not a non-empty string, ``handler`` is not callable,
            or ``topic`` has a handler already (the built-in ``syft_flwr.*`` topics included).
        """
        self.aux_handlers.register(topic, handler)

    @property
    def aggregator(self) -> str | None:
        """Where this datasite's aux requests go: the ``aggregator`` argument, else the server
        that started its job, else the sender of the last Flower message it served."""
        with self._lock:
            return self._aggregator or self._job_holder or self._last_sender

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
        self._run_id = run_id
        with self._lock:
            self._job_holder = server

    def _stale_stop(self, message: Message) -> bool:
        """A stop signal of another run: one this client never took part in must not stop it.

        Stop signals linger on slow media (a Drive file lives until its TTL), so a client
        restarted soon after a run would otherwise obey the previous run's signal.
        """
        run_id = message.metadata.run_id
        if self._run_id is not None and run_id != self._run_id:
            logger.info("ignoring the stop signal of run %s (serving run %s)", run_id, self._run_id)
            return True
        if self._run_id is None and message.metadata.created_at < self._started_at:
            logger.info("ignoring a stop signal sent before this client started (run %s)", run_id)
            return True
        return False

    def _call_app(self, message: Message) -> Message:
        self.context.run_id = message.metadata.run_id
        try:
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
        notify(
            "syft_flwr_stop_signal_received",
            self._plugins,
            datasite=self.transport.identity,
            reason=reason,
        )
        self.transport.stop()

    def _manager(self) -> pluggy.PluginManager:
        return self._plugins or get_plugin_manager()
