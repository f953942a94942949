"""Aux requests: small side messages between the aggregator and datasites, outside the rounds.

What FLARE calls the aux channel (``send_aux_request``, ``register_aux_message_handler``),
built on what the Flower path already has instead of a second protocol: an aux request is a
Flower ``Message`` sent through a second :class:`~syft_flwr.grid.syft_grid.SyftGrid`
on the same transport and channel, at endpoint :data:`AUX_ENDPOINT`. Sealing, replay checks,
expiry and reply validation therefore come for free, and a datasite serves aux requests with
the same :class:`~syft_flwr.grid.gate.RequestGate` as Flower messages.

Wire form (version 1):

- request: message type ``"system"``, group id ``"aux"``; the content is the caller's
  ``RecordDict`` plus a ``ConfigRecord`` under the reserved key :data:`AUX_HEADER_KEY` holding
  ``{"topic": <topic>, "version": 1}``;
- reply: a Flower reply (``Message(content, reply_to=request)``) carrying the handler's
  ``RecordDict``, or ``Message(Error(code, reason), reply_to=request)`` with one of the codes
  :data:`AUX_ERROR_UNKNOWN_TOPIC`, :data:`AUX_ERROR_HANDLER_FAILED`, :data:`AUX_ERROR_BAD_REQUEST`
  (above 1000, clear of Flower's own ``ErrorCode`` values).

Every outcome reaches the caller as an :class:`AuxReply` keyed by datasite; nothing a target
does (stay silent, raise, be unreachable) raises in the caller or stops the serving loop.
"""

from __future__ import annotations

import enum
import logging
import math
import threading
import time
from collections.abc import Callable, Iterable, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import TYPE_CHECKING

from flwr.app import ConfigRecord, Error, Message, Metadata, RecordDict
from flwr.common.constant import ErrorCode

from syft_flwr.audit import AuditTrail
from syft_flwr.authorization import SenderPolicy
from syft_flwr.errors import AuxError, SyftFlwrError
from syft_flwr.grid.gate import Admitted, RequestGate, key_retry_window
from syft_flwr.message_factory import message_with_metadata
from syft_flwr.node_ids import node_id_for
from syft_flwr.stop_signal import SYSTEM_MESSAGE_TYPE
from syft_flwr.transport import Body, Request, Transport

if TYPE_CHECKING:
    from syft_flwr.crypto.channel import SecureChannel
    from syft_flwr.grid.syft_grid import SyftGrid

__all__ = [
    "AUX_ENDPOINT",
    "AUX_ERROR_BAD_REQUEST",
    "AUX_ERROR_HANDLER_FAILED",
    "AUX_ERROR_UNKNOWN_TOPIC",
    "AUX_GROUP_ID",
    "AUX_HEADER_KEY",
    "AUX_VERSION",
    "DEFAULT_FIRE_AND_FORGET_TTL",
    "AuxHandler",
    "AuxHandlerRegistry",
    "AuxReply",
    "AuxRequest",
    "AuxSender",
    "AuxService",
    "AuxStatus",
    "build_aux_request",
    "parse_aux_request",
    "serve_aux",
]

logger = logging.getLogger(__name__)

AUX_ENDPOINT = "aux"
"""The endpoint aux requests travel to, next to the Flower endpoint ``messages``."""
AUX_GROUP_ID = "aux"
"""Group id of every aux request (message type is ``"system"``)."""
AUX_HEADER_KEY = "syft_flwr.aux"
"""Reserved content key of the aux header; callers' requests must not use it."""
AUX_VERSION = 1
"""Version of the aux wire form, carried in the header."""

AUX_ERROR_UNKNOWN_TOPIC = 1001
"""Error code: the datasite has no handler for the request's topic."""
AUX_ERROR_HANDLER_FAILED = 1002
"""Error code: the handler raised or returned something other than a ``RecordDict``/``None``."""
AUX_ERROR_BAD_REQUEST = 1003
"""Error code: the message is not an aux request of a version this datasite understands."""

DEFAULT_FIRE_AND_FORGET_TTL = 60.0
"""How long, in seconds, a fire-and-forget request may wait for its target to pick it up."""


class AuxStatus(enum.Enum):
    """What became of an aux request at one target."""

    OK = "ok"
    """The target's handler answered; :attr:`AuxReply.content` holds the answer."""
    SENT = "sent"
    """Fire and forget: handed to the transport; no answer is awaited."""
    TIMEOUT = "timeout"
    """No answer within the timeout (the target is silent, slow, or does not serve aux)."""
    UNKNOWN_TOPIC = "unknown-topic"
    """The target has no handler for the topic."""
    HANDLER_FAILED = "handler-failed"
    """The target's handler raised or returned something unusable."""
    REJECTED = "rejected"
    """The transport, the target or the crypto layer refused the request or its reply."""
    UNREACHABLE = "unreachable"
    """Sending failed (no keys, body too large, transport error); nothing reached the target."""


@dataclass(frozen=True)
class AuxReply:
    """One target's outcome of an aux request.

    :param datasite: the target's email.
    :param status: what happened.
    :param content: the handler's answer when ``status`` is ``OK``, else ``None``.
    :param detail: why, when it is not ``OK`` (empty otherwise).
    """

    datasite: str
    status: AuxStatus
    content: RecordDict | None = None
    detail: str = ""

    @property
    def ok(self) -> bool:
        """The request did what was asked: answered (``OK``) or, fire and forget, ``SENT``."""
        return self.status in (AuxStatus.OK, AuxStatus.SENT)


@dataclass(frozen=True)
class AuxRequest:
    """An aux request as a handler sees it.

    :param topic: the topic it was sent under.
    :param sender: the sender's email, as the transport (and channel) established it.
    :param content: the caller's records, without the aux header.
    :param run_id: the run id the sender put on the message.
    :param authenticated: the request was sealed, so ``sender`` is also proven
        cryptographically (not only by the transport); ``False`` on plaintext runs.
    """

    topic: str
    sender: str
    content: RecordDict
    run_id: int
    authenticated: bool = False


AuxHandler = Callable[[AuxRequest], RecordDict | None]
"""Answers one aux request; ``None`` means an empty answer."""


def _check_topic(topic: object) -> str:
    if not isinstance(topic, str):
        raise AuxError(f"an aux topic must be a string, got {type(topic).__name__}")
    if not topic.strip():
        raise AuxError("an aux topic must be a non-empty string")
    return topic


# -- wire form -----------------------------------------------------------------------------


def build_aux_request(
    topic: str, request: RecordDict, *, run_id: int, dst_node_id: int, ttl: float
) -> Message:
    """The aux request message for ``topic``; ``request`` itself is left untouched.

    :raises AuxError: ``topic`` is not a non-empty string, ``request`` is not a
        ``RecordDict`` or uses the reserved key :data:`AUX_HEADER_KEY`.
    """
    _check_request(topic, request)
    content = RecordDict(dict(request.items()))
    content[AUX_HEADER_KEY] = ConfigRecord({"topic": topic, "version": AUX_VERSION})
    metadata = Metadata(
        run_id=run_id,
        message_id="",
        src_node_id=1,  # the grid stamps its own sender id when it pushes
        dst_node_id=dst_node_id,
        reply_to_message_id="",
        group_id=AUX_GROUP_ID,
        created_at=time.time(),
        ttl=ttl,
        message_type=SYSTEM_MESSAGE_TYPE,
    )
    return message_with_metadata(metadata, content=content)


def _check_request(topic: str, request: RecordDict) -> None:
    _check_topic(topic)
    if not isinstance(request, RecordDict):
        raise AuxError(f"an aux request must be a flwr RecordDict, got {type(request).__name__}")
    if AUX_HEADER_KEY in request:
        raise AuxError(f"the key {AUX_HEADER_KEY!r} is reserved for the aux header; rename it")


def parse_aux_request(message: Message) -> tuple[str, RecordDict]:
    """The topic and the caller's records of an aux request message.

    :raises AuxError: it is not an aux request of version :data:`AUX_VERSION`.
    """
    metadata = message.metadata
    if metadata.message_type != SYSTEM_MESSAGE_TYPE or metadata.group_id != AUX_GROUP_ID:
        raise AuxError(
            f"not an aux request: message type {metadata.message_type!r}, "
            f"group {metadata.group_id!r}"
        )
    if not message.has_content():
        raise AuxError("not an aux request: the message carries an error, not content")
    header = message.content.config_records.get(AUX_HEADER_KEY)
    if header is None:
        raise AuxError(f"not an aux request: no {AUX_HEADER_KEY!r} header")
    version = header.get("version")
    if version != AUX_VERSION:
        raise AuxError(f"aux version {version!r} is not supported (this side speaks 1)")
    topic = header.get("topic")
    if not isinstance(topic, str) or not topic.strip():
        raise AuxError("the aux header carries no topic")
    content = RecordDict({k: v for k, v in message.content.items() if k != AUX_HEADER_KEY})
    return topic, content


# -- serving -------------------------------------------------------------------------------


class AuxHandlerRegistry:
    """Which handler answers which topic, and turning a request into its reply.

    Registration follows FLARE: a topic must be a non-empty string, a handler callable, and a
    topic has at most one handler. Thread-safe.
    """

    def __init__(self) -> None:
        self._handlers: dict[str, AuxHandler] = {}
        self._lock = threading.Lock()

    @property
    def topics(self) -> frozenset[str]:
        """The topics with a handler."""
        with self._lock:
            return frozenset(self._handlers)

    def register(self, topic: str, handler: AuxHandler) -> None:
        """Answer requests of ``topic`` with ``handler``.

        :raises AuxError: ``topic`` is not a non-empty string, ``handler`` is not callable,
            or ``topic`` already has a handler (unregister it first).
        """
        _check_topic(topic)
        if not callable(handler):
            raise AuxError(f"the handler for aux topic {topic!r} must be callable, got {handler!r}")
        with self._lock:
            if topic in self._handlers:
                raise AuxError(
                    f"aux topic {topic!r} already has a handler ({self._handlers[topic]!r}); "
                    "unregister it first"
                )
            self._handlers[topic] = handler

    def unregister(self, topic: str) -> None:
        """Stop answering ``topic``.

        :raises AuxError: ``topic`` has no handler (a typo would otherwise pass unnoticed).
        """
        with self._lock:
            if self._handlers.pop(topic, None) is None:
                raise AuxError(f"aux topic {topic!r} has no handler to unregister")

    def dispatch(self, message: Message, sender: str, *, authenticated: bool = False) -> Message:
        """The reply to the aux request ``message`` from ``sender``; never raises.

        An unknown topic, a raising handler or one returning something other than a
        ``RecordDict`` or ``None`` becomes an error reply with an ``AUX_ERROR_*`` code, so the
        caller learns what happened and the serving loop goes on.
        """
        try:
            topic, content = parse_aux_request(message)
        except AuxError as exc:
            logger.warning("refusing a malformed aux request from %s: %s", sender, exc)
            return Message(Error(AUX_ERROR_BAD_REQUEST, str(exc)), reply_to=message)
        with self._lock:
            handler = self._handlers.get(topic)
        if handler is None:
            logger.info("no handler for aux topic %r (from %s)", topic, sender)
            reason = f"no handler for aux topic {topic!r}"
            return Message(Error(AUX_ERROR_UNKNOWN_TOPIC, reason), reply_to=message)
        request = AuxRequest(topic, sender, content, message.metadata.run_id, authenticated)
        try:
            answer = handler(request)
        except Exception as exc:
            logger.exception(
                "the handler of aux topic %r raised on a request from %s", topic, sender
            )
            reason = f"the handler of {topic!r} raised {type(exc).__name__}: {exc}"
            return Message(Error(AUX_ERROR_HANDLER_FAILED, reason), reply_to=message)
        if answer is None:
            answer = RecordDict()
        if not isinstance(answer, RecordDict):
            logger.error(
                "the handler of aux topic %r returned %s, not a RecordDict or None",
                topic,
                type(answer).__name__,
            )
            reason = (
                f"the handler of {topic!r} returned {type(answer).__name__}, "
                "not a RecordDict or None"
            )
            return Message(Error(AUX_ERROR_HANDLER_FAILED, reason), reply_to=message)
        return Message(answer, reply_to=message)


class AuxService:
    """Serves :data:`AUX_ENDPOINT` on a transport: admit, dispatch, seal.

    Its :meth:`handle` is a plain :data:`~syft_flwr.transport.RequestHandler`, so the server
    serves aux with ``transport.serve(app_name, AUX_ENDPOINT, service.handle)`` (or
    :func:`serve_aux`); the client runner hands it the gate of its Flower endpoint, so both
    endpoints share one memory of seen requests.

    :param registry: the topics and their handlers.
    :param gate: the checks requests pass (shared with other endpoints of the same datasite).
    """

    def __init__(self, registry: AuxHandlerRegistry, gate: RequestGate) -> None:
        self.registry = registry
        self.gate = gate

    def handle(self, request: Request) -> Body | None:
        """The sealed reply to one transport request, or ``None`` when it is dropped.

        :raises RequestRefusedError: the gate refuses it (the transport answers so).
        """
        admitted = self.gate.admit(request)
        if admitted is None:
            return None
        if admitted.answered is not None:
            return self.gate.answer_again(admitted)
        self.gate.accept(admitted)
        return self.answer(admitted)

    def answer(self, admitted: Admitted) -> Body | None:
        """Dispatch a request the caller admitted and accepted, and seal the reply."""
        request = admitted.request
        reply = self.registry.dispatch(
            admitted.message, request.sender, authenticated=admitted.sealed
        )
        return self.gate.seal_reply(admitted, reply)


def serve_aux(
    transport: Transport,
    app_name: str,
    registry: AuxHandlerRegistry,
    channel: SecureChannel | None = None,
    *,
    senders: Iterable[str],
    audit: AuditTrail | None = None,
) -> AuxService:
    """Serve ``registry`` at :data:`AUX_ENDPOINT` of ``app_name`` on ``transport``.

    :param senders: who may send aux requests (a server: the datasites of its run).
    :param audit: where decisions on requests are recorded.

    The caller runs ``transport.run()`` (one loop serves every registered endpoint).
    """
    policy = SenderPolicy(senders, role="datasite of this run")
    gate = RequestGate(
        transport.identity,
        channel,
        policy=policy,
        audit=audit,
        key_retry_window=key_retry_window(transport),
    )
    gate.install(transport)
    service = AuxService(registry, gate)
    transport.serve(app_name, AUX_ENDPOINT, service.handle)
    return service


# -- sending -------------------------------------------------------------------------------


class AuxSender:
    """Sends aux requests through a grid whose endpoint is :data:`AUX_ENDPOINT`.

    Build the grid as ``SyftGrid(app_name, datasites, transport, endpoint=AUX_ENDPOINT,
    channel=channel, reports_rounds=False)`` and ``set_run`` it; the sender uses its
    datasites, run id, channel and plugin manager (so ``message_pushed``/``reply_pulled``
    hooks see aux traffic too, with group id ``"aux"``).

    With a channel every request is sealed, whatever ``secure`` says: encryption is never
    downgraded per request. ``secure=True`` without a channel is refused before sending.

    :raises AuxError: the grid serves another endpoint.
    """

    def __init__(self, grid: SyftGrid) -> None:
        if grid.endpoint != AUX_ENDPOINT:
            raise AuxError(
                f"an AuxSender needs a grid with endpoint={AUX_ENDPOINT!r}, "
                f"got {grid.endpoint!r}; build a second SyftGrid for aux requests"
            )
        self.grid = grid

    @property
    def datasites(self) -> list[str]:
        """The datasites requests can go to."""
        return self.grid.datasites

    def send_aux_request(
        self,
        targets: Iterable[str] | None,
        topic: str,
        request: RecordDict,
        timeout: float,
        optional: bool = False,
        secure: bool | None = None,
    ) -> dict[str, AuxReply]:
        """Send ``request`` under ``topic`` to ``targets`` and wait up to ``timeout`` seconds.

        :param targets: datasite emails; ``None`` or empty means every datasite (duplicates
            are sent once).
        :param timeout: seconds to wait, also the requests' TTL, so a target that has not
            answered by then gets a ``TIMEOUT`` reply.
        :param optional: log failures at debug level only (the caller expects some).
        :param secure: ``True`` requires encryption; see the class docstring.
        :return: one :class:`AuxReply` per target, keyed by datasite.
        :raises AuxError: a bad target, topic, request, timeout or ``secure``; raised before
            anything is sent.
        """
        chosen = self._targets(targets)
        return self.send_aux_requests(
            dict.fromkeys(chosen, request), topic, timeout, optional=optional, secure=secure
        )

    def send_aux_requests(
        self,
        requests: Mapping[str, RecordDict],
        topic: str,
        timeout: float,
        *,
        optional: bool = False,
        secure: bool | None = None,
    ) -> dict[str, AuxReply]:
        """Like :meth:`send_aux_request`, with a request of its own for each datasite.

        The requests travel concurrently (one thread per target, each waiting at most
        ``timeout``), so the call returns within about ``timeout`` seconds.

        :raises AuxError: as :meth:`send_aux_request`, before anything is sent.
        """
        if not isinstance(requests, Mapping):
            raise AuxError(
                f"requests must map datasites to RecordDicts, got {type(requests).__name__}"
            )
        timeout = _check_timeout(timeout)
        prepared = self._prepare(requests, topic, timeout, secure)
        if not prepared:
            return {}
        with ThreadPoolExecutor(
            max_workers=len(prepared), thread_name_prefix="syft-flwr-aux"
        ) as pool:
            futures = {
                datasite: pool.submit(self._round_trip, datasite, message, timeout)
                for datasite, message in prepared.items()
            }
            replies = {datasite: future.result() for datasite, future in futures.items()}
        self._log_failures(topic, replies, optional)
        return replies

    def fire_and_forget_aux_request(
        self,
        targets: Iterable[str] | None,
        topic: str,
        request: RecordDict,
        optional: bool = False,
        secure: bool | None = None,
        *,
        ttl: float = DEFAULT_FIRE_AND_FORGET_TTL,
    ) -> dict[str, AuxReply]:
        """Send ``request`` under ``topic`` to ``targets`` without waiting for answers.

        :param ttl: how long the request may wait for its target; answers are dropped.
        :return: ``SENT`` or ``UNREACHABLE`` per target, keyed by datasite.
        :raises AuxError: as :meth:`send_aux_request`, before anything is sent.
        """
        chosen = self._targets(targets)
        ttl = _check_timeout(ttl, "ttl")
        prepared = self._prepare(dict.fromkeys(chosen, request), topic, ttl, secure)
        replies: dict[str, AuxReply] = {}
        for datasite, message in prepared.items():
            try:
                message_ids = self.grid.push_messages([message])
            except SyftFlwrError as exc:
                replies[datasite] = _unreachable(datasite, exc)
                continue
            self.grid.discard(message_ids)
            replies[datasite] = AuxReply(datasite, AuxStatus.SENT)
        self._log_failures(topic, replies, optional)
        return replies

    # -- internals -----------------------------------------------------------------------

    def _targets(self, targets: Iterable[str] | None) -> list[str]:
        """The datasites ``targets`` names, in order and once each; all of them when empty."""
        if targets is None:
            return self.datasites
        if isinstance(targets, str | bytes):
            raise AuxError(f"targets must be a list of datasite emails, not the string {targets!r}")
        chosen = list(dict.fromkeys(self._check_known(targets)))
        return chosen or self.datasites

    def _check_known(self, targets: Iterable[object]) -> list[str]:
        known = set(self.datasites)
        checked: list[str] = []
        for target in targets:
            if not isinstance(target, str):
                raise AuxError(f"an aux target must be a datasite email, got {target!r}")
            if target not in known:
                raise AuxError(
                    f"{target!r} is not a datasite of this run; known: {', '.join(self.datasites)}"
                )
            checked.append(target)
        return checked

    def _prepare(
        self, requests: Mapping[str, RecordDict], topic: str, ttl: float, secure: bool | None
    ) -> dict[str, Message]:
        """Every request message, built and checked before the first one is sent."""
        if secure and self.grid.channel is None:
            raise AuxError(
                "secure=True, but encryption is off for this run; turn it on "
                "(SYFT_FLWR_ENCRYPTION_ENABLED=true) or send without secure=True"
            )
        self._check_known(requests)
        run_id = self.grid.run.run_id
        return {
            datasite: build_aux_request(
                topic, request, run_id=run_id, dst_node_id=node_id_for(datasite), ttl=ttl
            )
            for datasite, request in requests.items()
        }

    def _round_trip(self, datasite: str, message: Message, timeout: float) -> AuxReply:
        try:
            (reply,) = self.grid.send_and_receive([message], timeout=timeout)
        except SyftFlwrError as exc:
            return _unreachable(datasite, exc)
        return _to_aux_reply(datasite, reply)

    def _log_failures(self, topic: str, replies: Mapping[str, AuxReply], optional: bool) -> None:
        level = logging.DEBUG if optional else logging.WARNING
        for reply in replies.values():
            if not reply.ok:
                logger.log(
                    level,
                    "aux request %r to %s: %s (%s)",
                    topic,
                    reply.datasite,
                    reply.status.value,
                    reply.detail,
                )


def _check_timeout(value: object, name: str = "timeout") -> float:
    if (
        isinstance(value, bool)
        or not isinstance(value, int | float)
        or not math.isfinite(value)
        or value <= 0
    ):
        raise AuxError(
            f"an aux {name} must be a positive number of seconds, got {value!r} "
            "(use fire_and_forget_aux_request not to wait)"
        )
    return float(value)


def _unreachable(datasite: str, exc: SyftFlwrError) -> AuxReply:
    return AuxReply(datasite, AuxStatus.UNREACHABLE, detail=f"{type(exc).__name__}: {exc}")


_STATUS_OF_CODE = {
    int(ErrorCode.MESSAGE_UNAVAILABLE): AuxStatus.TIMEOUT,
    AUX_ERROR_UNKNOWN_TOPIC: AuxStatus.UNKNOWN_TOPIC,
    AUX_ERROR_HANDLER_FAILED: AuxStatus.HANDLER_FAILED,
}


def _to_aux_reply(datasite: str, reply: Message) -> AuxReply:
    if not reply.has_error():
        return AuxReply(datasite, AuxStatus.OK, content=reply.content)
    error = reply.error
    status = _STATUS_OF_CODE.get(int(error.code), AuxStatus.REJECTED)
    return AuxReply(datasite, status, detail=error.reason or f"error code {error.code}")
