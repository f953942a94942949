"""The checks every request a datasite serves must pass, whatever endpoint it came to.

A datasite serves more than one endpoint on its transport (Flower messages and aux requests),
and each must be protected the same way: a request delivered twice or replayed under a new
request id is answered once, an expired request is dropped, a sealed request must open
(authentic, addressed here, fresh) before anything is decoded, and a message addressed to
another node is refused. :class:`RequestGate` does all of that in one place, so the Flower
path and the aux path cannot drift apart, and seals the reply to the request's sender in the
scheme the request came in.

Refusals are logged and yield ``None`` (no reply), because an answer to a request that did
not prove where it came from would tell an attacker something.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import OrderedDict
from dataclasses import dataclass

from flwr.app import Message

from syft_flwr.crypto.channel import SecureChannel
from syft_flwr.crypto.compat import is_compat_payload
from syft_flwr.crypto.errors import CryptoError, MissingKeyError, UnknownKeyError
from syft_flwr.errors import WireFormatError
from syft_flwr.node_ids import node_id_for
from syft_flwr.transport import Request
from syft_flwr.wire import decode_message, encode_message, encode_message_frames

__all__ = ["KEY_RETRY_INTERVAL", "KEY_RETRY_WINDOW", "Admitted", "RequestGate"]

logger = logging.getLogger(__name__)

SEEN_CAPACITY = 4096
"""How many request and message ids are remembered for duplicate detection (oldest go first)."""
KEY_RETRY_WINDOW = 10.0
"""Longest wait, in seconds, for a sender's key document to become readable."""
KEY_RETRY_INTERVAL = 0.2


@dataclass(frozen=True)
class Admitted:
    """A request that passed every check, with its decoded message.

    :param request: the transport's request (``sender`` is the transport-established one).
    :param message: the Flower message inside it.
    :param envelope_id: id of the sealed envelope it came in (``b""``: plaintext or compat),
        which the reply must answer.
    """

    request: Request
    message: Message
    envelope_id: bytes

    def still_fresh(self) -> bool:
        """Whether neither the request nor the message has expired since it was admitted.

        Opening and decoding take time, so a handler checks this right before doing work.
        """
        metadata = self.message.metadata
        return not self.request.expired() and time.time() < metadata.created_at + metadata.ttl


class RequestGate:
    """Admits requests for one datasite and seals its replies.

    One gate may guard several endpoints: its memory of seen ids is shared, so a message
    replayed to another endpoint is refused as well. Thread-safe.

    :param identity: the email of the datasite being served (its node id is derived from it).
    :param channel: open requests and seal replies with it; ``None`` serves plaintext.
    """

    def __init__(self, identity: str, channel: SecureChannel | None = None) -> None:
        self.identity = identity
        self.node_id = node_id_for(identity)
        self.channel = channel
        self._seen: OrderedDict[str, float] = OrderedDict()
        self._lock = threading.Lock()

    def admit(self, request: Request) -> Admitted | None:
        """The request's message if it passes every check, else ``None`` (logged)."""
        if self._remember(f"request:{request.id}", request.expires_at):
            logger.info("ignoring duplicate delivery of request %s", request.id)
            return None
        if request.expired():
            logger.warning("dropping expired request %s from %s", request.id, request.sender)
            return None
        try:
            body, envelope_id = self._open(request)
        except (CryptoError, WireFormatError) as exc:
            logger.warning(
                "rejecting sealed request %s from %s: %s", request.id, request.sender, exc
            )
            return None
        try:
            message = decode_message(body)
        except WireFormatError as exc:
            logger.warning(
                "dropping malformed request %s from %s: %s", request.id, request.sender, exc
            )
            return None
        if self._remember(f"message:{message.metadata.message_id}", request.expires_at):
            logger.info("ignoring a second delivery of message %s", message.metadata.message_id)
            return None
        if message.metadata.dst_node_id != self.node_id:
            logger.warning(
                "dropping request %s: addressed to node %s, this is node %s (%s)",
                request.id,
                message.metadata.dst_node_id,
                self.node_id,
                self.identity,
            )
            return None
        return Admitted(request, message, envelope_id)

    def seal_reply(self, admitted: Admitted, reply: Message) -> bytes | None:
        """The reply's body, sealed to the request's sender as the answer to its envelope.

        ``None`` (logged) when it cannot be sealed: a reply is never sent in plaintext
        instead.
        """
        request = admitted.request
        if self.channel is None:
            return encode_message(reply)
        try:
            if not admitted.envelope_id:
                return self.channel.seal_compat(request.sender, encode_message(reply))
            sealed, _ = self.channel.seal(
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
        return sealed

    def _open(self, request: Request) -> tuple[bytes, bytes]:
        """The envelope in a request and the sealed envelope's id (``b""``: plain or compat).

        The sender's key document can reach this datasite after the sender's first request
        (synced folders deliver files in any order), so a missing or unknown sender key is
        retried for a short, bounded time before the request is rejected.
        """
        deadline = min(time.time() + KEY_RETRY_WINDOW, request.expires_at)
        while True:
            try:
                return self._open_once(request)
            except (MissingKeyError, UnknownKeyError):
                if time.time() + KEY_RETRY_INTERVAL >= deadline:
                    raise
                time.sleep(KEY_RETRY_INTERVAL)

    def _open_once(self, request: Request) -> tuple[bytes, bytes]:
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
        return opened.body, opened.header.message_id

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
