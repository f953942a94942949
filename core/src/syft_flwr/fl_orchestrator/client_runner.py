"""The client side: serve a Flower ``ClientApp`` on a transport until the stop signal.

Each request is decoded, checked (addressed to this node, not expired, not seen before),
handed to the ``ClientApp``, and its reply encoded back. A ``ClientApp`` exception becomes an
error reply (``CLIENT_APP_RAISED_EXCEPTION``) and serving goes on; the stop signal makes the
runner return cleanly.

With a :class:`~syft_flwr.crypto.SecureChannel`, a request must open (authentic, addressed
here, fresh, not replayed) before anything is decoded, and the reply is sealed to the request's
sender as the answer to that envelope. A request that fails any check gets no reply and never
reaches the ``ClientApp``; a reply that cannot be sealed is not sent. A request in syft-crypto's
``X3DH-SyftBox`` scheme is accepted only from a sender without native keys, and answered in it.
"""

from __future__ import annotations

import logging
import time
import traceback
from collections import OrderedDict

import pluggy
from flwr.app import Context, Error, Message
from flwr.clientapp import ClientApp
from flwr.common.constant import ErrorCode

from syft_flwr.crypto.channel import SecureChannel
from syft_flwr.crypto.compat import is_compat_payload
from syft_flwr.crypto.errors import CryptoError, MissingKeyError, UnknownKeyError
from syft_flwr.errors import WireFormatError
from syft_flwr.node_ids import node_id_for
from syft_flwr.plugins import get_plugin_manager, notify
from syft_flwr.transport import Request, Transport
from syft_flwr.wire import decode_message, encode_message, encode_message_frames

__all__ = ["ClientRunner"]

logger = logging.getLogger(__name__)

_SEEN_CAPACITY = 4096
KEY_RETRY_WINDOW = 10.0
"""Longest wait, in seconds, for a sender's key document to become readable."""
KEY_RETRY_INTERVAL = 0.2


class ClientRunner:
    """Serves one ``ClientApp`` for one datasite over one transport.

    :param client_app: the Flower ``ClientApp`` to call.
    :param context: the node's Flower ``Context`` (its ``node_id`` is set to this datasite's).
    :param transport: the transport, acting as this datasite.
    :param app_name: the application path, e.g. ``"flwr/diabetes"``.
    :param endpoint: the endpoint to serve.
    :param plugin_manager: where hooks go; the process-wide manager by default.
    :param channel: open requests and seal replies with it; ``None`` serves plaintext.
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
    ) -> None:
        self.client_app = client_app
        self.context = context
        self.transport = transport
        self.app_name = app_name
        self.endpoint = endpoint
        self.node_id = node_id_for(transport.identity)
        self.context.node_id = self.node_id
        self.stop_reason: str | None = None
        self.handled = 0
        self._run_id: int | None = None
        self._started_at = time.time()
        self._seen: OrderedDict[str, float] = OrderedDict()
        self._plugins = plugin_manager
        self.channel = channel

    def run(self) -> str | None:
        """Serve until the stop signal (returns its reason) or until the transport stops."""
        self.transport.serve(self.app_name, self.endpoint, self.handle)
        self.transport.run()
        return self.stop_reason

    def handle(self, request: Request) -> bytes | None:
        """Answer one request; ``None`` means no reply (stop signal, duplicate, unusable)."""
        if self._is_duplicate(request):
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
        if self._seen_message(message, request):
            logger.info("ignoring a second delivery of message %s", message.metadata.message_id)
            return None
        if message.metadata.dst_node_id != self.node_id:
            logger.warning(
                "dropping request %s: addressed to node %s, this is node %s (%s)",
                request.id,
                message.metadata.dst_node_id,
                self.node_id,
                self.transport.identity,
            )
            return None
        reason = self._manager().hook.syft_flwr_stop_reason(message=message)
        if reason is not None:
            if self._stale_stop(message):
                return None
            self._stop(reason)
            return None
        if request.expired() or time.time() >= _deadline(message):
            # checked again right before the app: opening and decoding take time
            logger.warning("dropping request %s: it expired before the app saw it", request.id)
            return None
        self._run_id = message.metadata.run_id
        return self._seal_reply(request, envelope_id, self._call_app(message))

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

    def _seal_reply(self, request: Request, envelope_id: bytes, reply: Message) -> bytes | None:
        if self.channel is None:
            return encode_message(reply)
        try:
            if not envelope_id:
                return self.channel.seal_compat(request.sender, encode_message(reply))
            sealed, _ = self.channel.seal(
                request.sender,
                request.app,
                request.endpoint,
                encode_message_frames(reply),
                request.expires_at,
                reply_to=envelope_id,
            )
        except (CryptoError, WireFormatError) as exc:
            logger.error("cannot seal the reply to %s, not sending it: %s", request.sender, exc)
            return None
        return sealed

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

    def _is_duplicate(self, request: Request) -> bool:
        """The same transport request delivered again (a duplicating medium)."""
        return self._remember(f"request:{request.id}", request.expires_at)

    def _seen_message(self, message: Message, request: Request) -> bool:
        """The same Flower message sent again as a new request (a replay or a resend)."""
        return self._remember(f"message:{message.metadata.message_id}", request.expires_at)

    def _remember(self, key: str, expires_at: float) -> bool:
        now = time.time()
        while self._seen:
            oldest, oldest_expiry = next(iter(self._seen.items()))
            if oldest_expiry > now and len(self._seen) < _SEEN_CAPACITY:
                break
            del self._seen[oldest]
        if key in self._seen:
            return True
        self._seen[key] = expires_at
        return False

    def _manager(self) -> pluggy.PluginManager:
        return self._plugins or get_plugin_manager()


def _deadline(message: Message) -> float:
    return message.metadata.created_at + message.metadata.ttl
