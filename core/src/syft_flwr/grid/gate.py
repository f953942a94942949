"""The checks every request a datasite serves must pass, whatever endpoint it came to.

A datasite serves more than one endpoint on its transport (Flower messages and aux requests),
and each must be protected the same way, in this order:

1. **who is asking**: the sender the transport established must be one the
   :class:`~syft_flwr.authorization.SenderPolicy` trusts; a stranger is refused before a byte of
   its body is opened. Checked once: by the transport through :meth:`RequestGate.screen` when
   it declares ``screens_requests`` and this gate is its screen (:meth:`RequestGate.install`),
   else here;
2. a request delivered twice is answered once (by its request id, remembered here unless the
   transport declares ``delivers_once``); the same message arriving again under a new request
   id (a server that sent it again after a crash) is answered with the reply already given,
   without running the ``ClientApp`` again, and a sealed envelope is accepted once (the
   channel's persistent replay store);
3. a sealed request must open (authentic, sealed by that same sender, addressed here, within
   its authenticated validity window, not a replay) before anything is decoded, and a
   plaintext one is refused when encryption is on;
4. a message addressed to another node is refused;
5. a request or message that expired while it was opened and decoded is dropped (the one
   time-of-use check before work; a transport never delivers an expired request, see the
   table in :mod:`syft_flwr.transport`).

:class:`RequestGate` does all of that in one place, so the Flower path and the aux path cannot
drift apart, and seals the reply to the request's sender in the scheme the request came in.

A refusal raises :class:`~syft_flwr.errors.RequestRefusedError` (a stranger:
:class:`~syft_flwr.errors.UnauthorizedSenderError`), which every transport answers with a
``REJECTED`` reply carrying the reason, so the sender learns why instead of timing out; a
duplicate or an expired request is dropped without an answer (``None``). Every decision goes to
the datasite's audit trail (:mod:`syft_flwr.audit`); a stranger is logged at WARNING once per
sender and run, then at DEBUG, so a flood cannot flood the log.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import OrderedDict
from dataclasses import dataclass, replace

from flwr.app import Message

from syft_flwr.audit import ACCEPTED, DROPPED, REFUSED, AuditRecord, AuditTrail
from syft_flwr.authorization import SenderPolicy
from syft_flwr.crypto.channel import SecureChannel
from syft_flwr.crypto.compat import is_compat_payload
from syft_flwr.crypto.errors import (
    CryptoError,
    IdentityChangedError,
    MissingKeyError,
    NotOurKeyError,
    UnknownKeyError,
)
from syft_flwr.errors import RequestRefusedError, UnauthorizedSenderError, WireFormatError
from syft_flwr.node_ids import node_id_for, node_ids_of, normalise_email
from syft_flwr.transport import (
    Body,
    ReceivedData,
    Request,
    RequestHead,
    Transport,
    join_body,
    outgoing_body,
)
from syft_flwr.wire import decode_message, encode_message, encode_message_frames

__all__ = [
    "KEY_RETRY_INTERVAL",
    "KEY_RETRY_WINDOW",
    "UNOPENABLE",
    "Admitted",
    "RequestGate",
    "key_retry_window",
]

logger = logging.getLogger(__name__)

SEEN_CAPACITY = 4096
"""How many request and message ids are remembered for duplicate detection (oldest go first)."""
REPLY_CACHE_BYTES = 256 * 1024 * 1024
"""How many bytes of array data the replies kept for a message's second delivery may hold;
the oldest go first, and each is kept only until its request expires."""
WARNED_CAPACITY = 1024
"""How many (sender, run) pairs are remembered as warned about (a flood of new senders is
logged at DEBUG past it)."""
KEY_RETRY_WINDOW = 10.0
"""Longest wait, in seconds, for a sender's key document to become readable (at least; a
transport that declares a delivery latency gets four times that, see :class:`RequestGate`)."""
KEY_RETRY_INTERVAL = 0.2
UNOPENABLE = "cannot open the request"
"""How a refusal for a request that did not open begins: its sender reads the refuser's key
document again and sends once more (:class:`~syft_flwr.grid.syft_grid.SyftGrid`)."""


def key_retry_window(transport: Transport) -> float:
    """How long a sender's key document may lag behind its request over ``transport``: at
    least :data:`KEY_RETRY_WINDOW`, and four deliveries (two hops each way) on a slow sync."""
    return max(KEY_RETRY_WINDOW, 4 * transport.capabilities.delivery_latency)


@dataclass(frozen=True)
class Admitted:
    """A request that passed every check, with its decoded message.

    :param request: the transport's request (``sender`` is the transport-established one).
    :param message: the Flower message inside it.
    :param envelope_id: id of the sealed envelope it came in (``b""``: plaintext or compat),
        which the reply must answer.
    :param sealed: it was sealed, so its sender is also cryptographically authenticated.
    :param answered: the reply this datasite already gave to this very message (it came
        again under a new request id): answer with it, do not run the app again.
    """

    request: Request
    message: Message
    envelope_id: bytes
    sealed: bool = False
    answered: Message | None = None

    def still_fresh(self) -> bool:
        """Whether neither the request nor the message has expired since it was admitted.

        Opening and decoding take time, so :meth:`RequestGate.admit` checks this last, and a
        wait that holds an admitted request (an owner's approval) checks it again.
        """
        metadata = self.message.metadata
        return not self.request.expired() and time.time() < metadata.created_at + metadata.ttl


class RequestGate:
    """Admits requests for one datasite and seals its replies.

    One gate may guard several endpoints: its memory of seen ids is shared, so a message
    replayed to another endpoint is refused as well. Thread-safe.

    :param identity: the email of the datasite being served (its node id is derived from it).
    :param channel: open requests and seal replies with it; ``None`` serves plaintext.
    :param policy: who may ask (a datasite: its trusted aggregators; a server: its datasites).
    :param audit: where every decision is recorded; ``None`` records nothing.
    :param key_retry_window: how long a sender's key document may lag behind its request.
    """

    def __init__(
        self,
        identity: str,
        channel: SecureChannel | None = None,
        *,
        policy: SenderPolicy,
        audit: AuditTrail | None = None,
        key_retry_window: float = KEY_RETRY_WINDOW,
    ) -> None:
        self.identity = identity
        self.key_retry_window = key_retry_window
        self.node_id = node_id_for(identity)
        self.node_ids = node_ids_of(identity)
        """Every id a message for this datasite may carry (a syft-flwr 0.5.x server's too)."""
        self.channel = channel
        self.policy = policy
        self.audit = audit
        self.serving_run: int | None = None
        """The run being served, set by the runner; refusals are logged once per it."""
        self._seen: OrderedDict[str, float] = OrderedDict()
        self._given: OrderedDict[tuple[str, str], tuple[float, int, Message]] = OrderedDict()
        self._warned: OrderedDict[tuple[str, int | None], None] = OrderedDict()
        self._lock = threading.Lock()
        self._transport: Transport | None = None

    def install(self, transport: Transport) -> None:
        """Make this gate ``transport``'s request screen, so a transport that screens refuses
        strangers before reading their bodies and :meth:`admit` need not ask the policy again."""
        transport.set_request_screen(self.screen)
        self._transport = transport

    def _delivered_once(self) -> bool:
        """Whether the transport guarantees each request id reaches a handler at most once."""
        transport = self._transport
        return transport is not None and transport.capabilities.delivers_once

    def _screened(self) -> bool:
        """Whether the transport applied this gate's screen to every request it hands over."""
        transport = self._transport
        return (
            transport is not None
            and transport.capabilities.screens_requests
            and transport.request_screen == self.screen
        )

    # -- who is asking ----------------------------------------------------------------------

    def screen(self, head: RequestHead) -> str | None:
        """A :data:`~syft_flwr.transport.RequestScreen`: refuse a stranger before reading.

        Install it with :meth:`install`.
        """
        reason = self.policy.refusal(head.sender)
        if reason is not None:
            self._refused_stranger(head.sender, head.id, head.endpoint, head.size, reason)
        return reason

    def _refused_stranger(
        self, sender: str, request_id: str, endpoint: str, size: int | None, reason: str
    ) -> None:
        key = (normalise_email(sender), self.serving_run)
        with self._lock:
            first = key not in self._warned
            if first:
                self._warned[key] = None
                if len(self._warned) > WARNED_CAPACITY:
                    self._warned.popitem(last=False)
        logger.log(
            logging.WARNING if first else logging.DEBUG,
            "%s refuses request %s from %s: %s%s",
            self.identity,
            request_id,
            sender,
            reason,
            " (further refusals of this sender are logged at DEBUG)" if first else "",
        )
        self._record(sender, endpoint, request_id, REFUSED, reason, size=size)

    # -- admission --------------------------------------------------------------------------

    def admit(self, request: Request) -> Admitted | None:
        """The request's message if it passes every check; ``None`` for a silent drop.

        :raises UnauthorizedSenderError: the sender is not trusted.
        :raises RequestRefusedError: it cannot be opened, is malformed or is misaddressed.
        """
        reason = None if self._screened() else self.policy.refusal(request.sender)
        if reason is not None:
            self._refused_stranger(
                request.sender, request.id, request.endpoint, len(request.body), reason
            )
            raise UnauthorizedSenderError(reason)
        if not self._delivered_once() and self._remember(
            f"request:{request.id}", request.expires_at
        ):
            logger.info("ignoring duplicate delivery of request %s", request.id)
            self._drop(request, "a duplicate delivery of this request")
            return None
        try:
            body, envelope_id = self._open(request)
        except (CryptoError, WireFormatError) as exc:
            logger.warning(
                "rejecting sealed request %s from %s: %s", request.id, request.sender, exc
            )
            reason = f"{UNOPENABLE} ({type(exc).__name__}): {exc}"
            raise self._refuse(request, reason) from exc
        try:
            message = decode_message(body)
        except WireFormatError as exc:
            logger.warning(
                "refusing malformed request %s from %s: %s", request.id, request.sender, exc
            )
            raise self._refuse(request, f"malformed request: {exc}") from exc
        sealed = self.channel is not None
        admitted = Admitted(request, message, envelope_id, sealed)
        # syft-flwr 0.5.x sends every message with an empty id: then the request id (checked
        # above) and, sealed, the envelope's own replay check are what make a delivery unique.
        message_id = message.metadata.message_id
        if message_id and self._remember(f"message:{message_id}", request.expires_at):
            given = self._given_reply(request.sender, message.metadata.message_id)
            if given is None:
                logger.info("ignoring a second delivery of message %s", message.metadata.message_id)
                self.record(admitted, DROPPED, "a second delivery of this message")
                return None
            logger.info(
                "answering a second delivery of message %s with the reply already given",
                message.metadata.message_id,
            )
            return replace(admitted, answered=given)
        if message.metadata.dst_node_id not in self.node_ids:
            logger.warning(
                "refusing request %s: addressed to node %s, this is node %s (%s)",
                request.id,
                message.metadata.dst_node_id,
                self.node_id,
                self.identity,
            )
            reason = (
                f"addressed to node {message.metadata.dst_node_id}, but {self.identity} is "
                f"node {self.node_id}"
            )
            self.record(admitted, REFUSED, reason)
            raise RequestRefusedError(reason)
        if not admitted.still_fresh():
            # opening (a key document one sync late) and decoding take time
            logger.warning("dropping request %s: it expired before it was served", request.id)
            self.record(admitted, DROPPED, "expired before it was served")
            return None
        return admitted

    def answer_again(self, admitted: Admitted) -> Body | None:
        """Answer a message's second delivery with the reply it already got (recorded)."""
        assert admitted.answered is not None
        self.record(
            admitted,
            ACCEPTED,
            "a second delivery of this message: answered with the reply already given, "
            "the app did not run again",
        )
        return self.seal_reply(admitted, admitted.answered)

    def accept(self, admitted: Admitted) -> None:
        """Record that ``admitted`` is handed on (to the app, a handler, or obeyed as a stop)."""
        self.record(admitted, ACCEPTED)

    def record(self, admitted: Admitted, outcome: str, reason: str = "") -> None:
        """Write one audit line about an opened request."""
        request, metadata = admitted.request, admitted.message.metadata
        self._record(
            request.sender,
            request.endpoint,
            request.id,
            outcome,
            reason,
            size=len(request.body),
            run_id=metadata.run_id,
            message_type=metadata.message_type,
            group_id=metadata.group_id,
        )

    def _drop(self, request: Request, reason: str) -> None:
        self._record(
            request.sender, request.endpoint, request.id, DROPPED, reason, size=len(request.body)
        )

    def _refuse(self, request: Request, reason: str) -> RequestRefusedError:
        self._record(
            request.sender, request.endpoint, request.id, REFUSED, reason, size=len(request.body)
        )
        return RequestRefusedError(f"{self.identity} refuses request {request.id}: {reason}")

    def _record(
        self,
        sender: str,
        endpoint: str,
        request_id: str,
        outcome: str,
        reason: str,
        *,
        size: int | None = None,
        run_id: int | None = None,
        message_type: str | None = None,
        group_id: str | None = None,
    ) -> None:
        if self.audit is None:
            return
        self.audit.record(
            AuditRecord(
                datasite=self.identity,
                sender=sender,
                endpoint=endpoint,
                request_id=request_id,
                outcome=outcome,
                reason=reason,
                run_id=run_id,
                message_type=message_type,
                group_id=group_id,
                body_size=size,
            )
        )

    def _given_reply(self, sender: str, message_id: str) -> Message | None:
        key = (normalise_email(sender), message_id)
        with self._lock:
            kept = self._given.get(key)
        return None if kept is None or kept[0] <= time.time() else kept[2]

    def _keep_reply(self, admitted: Admitted, reply: Message) -> None:
        """Keep ``reply`` for a second delivery of the message, within :data:`REPLY_CACHE_BYTES`."""
        message_id = admitted.message.metadata.message_id
        size = _array_bytes(reply)
        if not message_id or size > REPLY_CACHE_BYTES:
            return
        key = (normalise_email(admitted.request.sender), message_id)
        now = time.time()
        with self._lock:
            self._given[key] = (admitted.request.expires_at, size, reply)
            held = sum(entry[1] for entry in self._given.values())
            for old, (expires, old_size, _) in list(self._given.items()):
                if expires > now and held <= REPLY_CACHE_BYTES:
                    break
                del self._given[old]
                held -= old_size

    def seal_reply(self, admitted: Admitted, reply: Message) -> Body | None:
        """The reply's body, sealed to the request's sender as the answer to its envelope.

        ``None`` (logged) when it cannot be sealed: a reply is never sent in plaintext
        instead. A reply that is sent is kept for a second delivery of the same message.
        Plaintext goes as the codec's frames to the transport this gate is installed on when
        it takes frames (:func:`~syft_flwr.transport.outgoing_body`), so a model is not joined.
        """
        body = self._seal(admitted, reply)
        if body is not None:
            self._keep_reply(admitted, reply)
        return body

    def _seal(self, admitted: Admitted, reply: Message) -> Body | None:
        request = admitted.request
        if self.channel is None:
            frames = encode_message_frames(reply)
            return (
                join_body(frames)
                if self._transport is None
                else outgoing_body(self._transport, frames)
            )
        try:
            if not admitted.envelope_id:
                return self.channel.seal_compat(request.sender, encode_message(reply))
            sealed, _ = self.channel.seal_frames(
                request.sender,
                request.app,
                request.endpoint,
                encode_message_frames(reply),
                request.expires_at,
                reply_to=admitted.envelope_id,
            )
        except (CryptoError, WireFormatError) as exc:
            logger.error("cannot seal the reply to %s, not sending it: %s", request.sender, exc)
            return None
        return (
            join_body(sealed) if self._transport is None else outgoing_body(self._transport, sealed)
        )

    def _open(self, request: Request) -> tuple[ReceivedData | tuple[bytes, ...], bytes]:
        """The envelope in a request and the sealed envelope's id (``b""``: plain or compat).

        The sender's key document can reach this datasite after the sender's first request,
        or one sync cycle late (synced folders deliver files in any order, smaller ones first),
        so a missing, unknown or changed sender key is retried, reading the document again
        each time, for a short, bounded time before the request is refused.
        """
        deadline = min(time.time() + self.key_retry_window, request.expires_at)
        while True:
            try:
                return self._open_once(request)
            except NotOurKeyError:
                raise  # sealed to a key we do not hold: only the sender can fix that
            except (MissingKeyError, UnknownKeyError, IdentityChangedError):
                if time.time() + KEY_RETRY_INTERVAL >= deadline:
                    raise
                assert self.channel is not None
                self.channel.forget_peer(request.sender)
                time.sleep(KEY_RETRY_INTERVAL)

    def _open_once(self, request: Request) -> tuple[ReceivedData | tuple[bytes, ...], bytes]:
        if self.channel is None:
            return request.body, b""
        if is_compat_payload(request.body):
            envelope = self.channel.open_compat(
                request.body, sender=request.sender, expires_at=request.expires_at
            )
            return envelope, b""
        opened = self.channel.open(
            request.body, sender=request.sender, app=request.app, endpoint=request.endpoint
        )
        return opened.frames, opened.header.message_id

    def _remember(self, key: str, expires_at: float) -> bool:
        """Whether ``key`` was seen before; remembers it until ``expires_at`` otherwise."""
        now = time.time()
        with self._lock:
            while self._seen:
                oldest, oldest_expiry = next(iter(self._seen.items()))
                if oldest_expiry > now and len(self._seen) < SEEN_CAPACITY:
                    break
                del self._seen[oldest]
            if key in self._seen:
                return True
            self._seen[key] = expires_at
            return False


def _array_bytes(message: Message) -> int:
    """The bytes of array data a message holds (what keeping it costs)."""
    if not message.has_content():
        return 0
    return sum(
        len(array.data)
        for record in message.content.array_records.values()
        for array in record.values()
    )
