"""``MemoryTransport``: the syft-flwr transport contract over a :class:`MemoryNetwork`.

It behaves like a mailbox-based transport (requests wait until the recipient serves them,
inboxes and futures outlive a transport instance, expiry is enforced) but every wake-up is a
condition notification, so tests and simulations run at memory speed with no polling.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Mapping
from pathlib import Path
from typing import Any, ClassVar

from syft_flwr.addresses import check_app, check_datasite, check_endpoint
from syft_flwr.errors import BodyTooLargeError, ConfigError, RequestRefusedError, TransportError
from syft_flwr.transport import (
    Body,
    Reply,
    ReplyStatus,
    Request,
    RequestHandler,
    RequestHead,
    Transport,
    TransportCapabilities,
    TransportSettings,
    join_body,
)
from syft_flwr_memory.faults import FaultPlan
from syft_flwr_memory.network import MemoryNetwork, expired_reply

__all__ = ["MemoryTransport"]

logger = logging.getLogger(__name__)


class MemoryTransport(Transport):
    """An in-process transport; transports on one network reach each other by identity.

    Options (``[tool.syft_flwr.memory]``):

    - ``network``: name of the network to join (default ``"default"``); ignored when a
      ``network`` object is passed;
    - ``max_body_size``: largest request or reply body in bytes (default unbounded);
    - ``faults``: a :class:`~syft_flwr_memory.faults.FaultPlan` or its option table
      (``{drop, duplicate, delay, seed}``), installed on the network.

    :param settings: identity (an email) and options.
    :param network: join this network instead of the named one, for isolated tests.
    :raises InvalidAddressError: the identity is not a safe email.
    :raises ConfigError: an option is malformed.
    """

    name: ClassVar[str] = "memory"
    description: ClassVar[str] = (
        "In-process transport for tests, demos and simulation (one Python process)."
    )

    @classmethod
    def local_options(cls, workdir: Path) -> dict[str, Any]:
        """A network named after the run's private ``workdir``, so two local runs in one
        process never deliver to each other's (identically named) datasites."""
        return {"network": f"local-{workdir.name}"}

    def __init__(
        self, settings: TransportSettings, *, network: MemoryNetwork | None = None
    ) -> None:
        super().__init__(settings)
        check_datasite(settings.identity)
        options = settings.options
        self._capabilities = TransportCapabilities(
            notifies=True,
            max_body_size=_max_body_size(options),
            persistent=False,
            in_process_only=True,
            screens_requests=True,
            accepts_frames=True,
        )
        self._network = network if network is not None else MemoryNetwork.named(_name(options))
        plan = _fault_plan(options)
        if plan is not None and self._network.faults != plan:
            # Every transport of a project reads the same options: reseed only on a change.
            self._network.faults = plan
        self._handlers: dict[tuple[str, str], RequestHandler] = {}
        self._apps: set[str] = set()
        # Guarded by the mailbox condition, which run() waits on.
        self._running = False
        self._stop_requested = False
        self._closed = False
        self._mailbox = self._network.attach(self)

    @property
    def capabilities(self) -> TransportCapabilities:
        """Notifying, not persistent, not encrypted; ``max_body_size`` from the options."""
        return self._capabilities

    @property
    def network(self) -> MemoryNetwork:
        """The network this transport is attached to."""
        return self._network

    # -- sending side -----------------------------------------------------------------------

    def send(self, datasite: str, app: str, endpoint: str, body: Body, expires_at: float) -> str:
        """Send ``body`` to ``endpoint`` of ``app`` at ``datasite``; return a new future id.

        A ``bytes`` body is shared, not copied; frames (or a ``bytearray``/``memoryview``)
        are joined into ``bytes`` once, which an in-process queue needs anyway. Delivery is
        asynchronous: it never runs a handler in this thread.

        :raises InvalidAddressError: an address part is unsafe.
        :raises BodyTooLargeError: the body exceeds ``max_body_size``.
        :raises TransportError: the transport is closed.
        :raises ValueError: ``expires_at`` is NaN.
        """
        check_datasite(datasite)
        check_app(app)
        check_endpoint(endpoint)
        payload = join_body(body)
        limit = self._capabilities.max_body_size
        if limit is not None and len(payload) > limit:
            raise BodyTooLargeError(
                f"body of {len(payload)} bytes exceeds the memory transport's "
                f"max_body_size of {limit} bytes"
            )
        if math.isnan(expires_at):
            raise ValueError("expires_at must be a time, not NaN")
        if self._closed:
            raise TransportError(f"memory transport of {self.identity} is closed")
        return self._network.send(self.identity, datasite, app, endpoint, payload, expires_at)

    def poll(self, future_id: str) -> Reply | None:
        """The reply to ``future_id`` (also one sent by an earlier instance of this identity)."""
        return self._network.poll(self.identity, future_id)

    def forget(self, future_id: str) -> None:
        """Drop the future and its ready mark; unknown ids are ignored."""
        self._network.forget(self.identity, future_id)
        self.discard_ready(future_id)

    # -- serving side -----------------------------------------------------------------------

    def serve(self, app: str, endpoint: str, handler: RequestHandler) -> None:
        """Register ``handler`` (replacing any previous one); may be called while running.

        Requests for ``app`` that were waiting in the inbox become deliverable at once.

        :raises InvalidAddressError: ``app`` or ``endpoint`` is unsafe.
        :raises TransportError: the transport is closed.
        """
        check_app(app)
        check_endpoint(endpoint)
        if not callable(handler):
            raise TypeError(f"handler {handler!r} is not callable")
        with self._mailbox.cond:
            if self._closed:
                raise TransportError(f"memory transport of {self.identity} is closed")
            self._handlers[(app, endpoint)] = handler
            self._apps.add(app)
            self._mailbox.cond.notify_all()

    def run(self) -> None:
        """Deliver this datasite's requests to the handlers, one at a time, in arrival order.

        Requests for an app this transport does not serve stay in the inbox. A :meth:`stop`
        that arrives while ``run`` is not running makes the next ``run`` return at once, so a
        stop racing a thread that is about to call ``run`` is never lost. On a closed
        transport ``run`` returns immediately.

        :raises TransportError: ``run`` is already running in another thread.
        """
        cond = self._mailbox.cond
        with cond:
            if self._running:
                raise TransportError(f"{self.identity}: run() is already running")
            self._running = True
        try:
            while True:
                with cond:
                    request = None
                    while not (self._stop_requested or self._closed):
                        request = self._mailbox.take(self._apps)
                        if request is not None:
                            break
                        cond.wait()
                    if request is None:
                        return
                    handler = self._handlers.get((request.app, request.endpoint))
                self._dispatch(request, handler)
        finally:
            with cond:
                self._running = False
                self._stop_requested = False

    def stop(self) -> None:
        """Make :meth:`run` return after the request in hand, if any; idempotent."""
        with self._mailbox.cond:
            self._stop_requested = True
            self._mailbox.cond.notify_all()

    def close(self) -> None:
        """Stop and detach; the inbox and futures stay on the network. Idempotent."""
        with self._mailbox.cond:
            if self._closed:
                return
            self._closed = True
            self._mailbox.cond.notify_all()
        self._network.detach(self)

    # -- internals --------------------------------------------------------------------------

    def _dispatch(self, request: Request, handler: RequestHandler | None) -> None:
        if request.expired():
            reply: Reply | None = expired_reply(request.id)
        elif handler is None:
            reply = Reply(
                request.id,
                ReplyStatus.REJECTED,
                detail=f"unknown endpoint {request.endpoint!r} of app {request.app!r} "
                f"at {self.identity}",
            )
        else:
            refusal = self.screen_request(
                RequestHead(
                    request.id,
                    request.sender,
                    request.recipient,
                    request.app,
                    request.endpoint,
                    len(request.body),
                )
            )
            if refusal is not None:
                reply = Reply(request.id, ReplyStatus.REJECTED, detail=refusal)
            else:
                reply = self._call(handler, request)
        if reply is not None:
            self._network.settle(request.sender, request.id, reply)

    def _call(self, handler: RequestHandler, request: Request) -> Reply | None:
        try:
            body = handler(request)
        except RequestRefusedError as exc:
            logger.info(
                "%s: refused request %s from %s: %s", self.identity, request.id, request.sender, exc
            )
            return Reply(request.id, ReplyStatus.REJECTED, detail=str(exc))
        except Exception as exc:
            logger.exception(
                "%s: handler for %s/%s raised on request %s from %s",
                self.identity,
                request.app,
                request.endpoint,
                request.id,
                request.sender,
            )
            detail = f"handler raised {type(exc).__name__}: {exc}"
            return Reply(request.id, ReplyStatus.REJECTED, detail=detail)
        if body is None:
            return None
        try:
            payload = join_body(body)  # a reply may be frames; a mailbox holds one bytes
        except TypeError:
            logger.error(
                "%s: handler for %s/%s returned %s instead of bytes",
                self.identity,
                request.app,
                request.endpoint,
                type(body).__name__,
            )
            detail = f"handler returned {type(body).__name__}, not bytes"
            return Reply(request.id, ReplyStatus.REJECTED, detail=detail)
        limit = self._capabilities.max_body_size
        if limit is not None and len(payload) > limit:
            logger.error(
                "%s: reply of %d bytes to %s exceeds max_body_size %d",
                self.identity,
                len(payload),
                request.id,
                limit,
            )
            detail = f"reply body of {len(payload)} bytes exceeds max_body_size of {limit} bytes"
            return Reply(request.id, ReplyStatus.REJECTED, detail=detail)
        return Reply(request.id, ReplyStatus.OK, body=payload)

    def publish_key_document(self, document: bytes) -> None:
        """Key documents live on the network, like a datasite's public folder."""
        self.network.publish_key_document(self.identity, document)

    def fetch_key_document(self, datasite: str) -> bytes | None:
        """The document ``datasite`` published on this transport's network, if any."""
        return self.network.key_document(datasite)


def _name(options: Mapping[str, Any]) -> str:
    name = options.get("network", "default")
    if not isinstance(name, str) or not name:
        raise ConfigError(f"memory transport option network={name!r} must be a non-empty string")
    return name


def _max_body_size(options: Mapping[str, Any]) -> int | None:
    limit = options.get("max_body_size")
    if limit is None:
        return None
    if isinstance(limit, bool) or not isinstance(limit, int) or limit < 0:
        raise ConfigError(
            f"memory transport option max_body_size={limit!r} must be a non-negative integer"
        )
    return limit


def _fault_plan(options: Mapping[str, Any]) -> FaultPlan | None:
    faults = options.get("faults")
    if faults is None or isinstance(faults, FaultPlan):
        return faults
    if not isinstance(faults, Mapping):
        raise ConfigError(f"memory transport option faults={faults!r} must be a table")
    return FaultPlan.from_options(faults)
