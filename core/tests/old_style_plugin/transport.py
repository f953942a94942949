"""A small in-process transport, as a plugin of the first release would ship it.

The class does not describe itself (no ``name``, no ``local_options``, no key-document
methods): the plugin module registers a factory by name and answers the deprecated hooks.
Participants meet in a :class:`Medium` named by the ``medium`` option.
"""

from __future__ import annotations

import itertools
import threading
import time
import uuid
from collections import deque
from dataclasses import dataclass, field
from typing import ClassVar

from syft_flwr.errors import RequestRefusedError
from syft_flwr.transport import (
    Reply,
    ReplyStatus,
    Request,
    RequestHandler,
    Transport,
    TransportCapabilities,
    TransportSettings,
)


@dataclass
class _Future:
    sender: str
    expires_at: float
    reply: Reply | None = None


@dataclass
class Medium:
    """What the participants of one local run share: queued requests, futures, key documents."""

    lock: threading.Condition = field(default_factory=threading.Condition)
    queues: dict[str, deque[Request]] = field(default_factory=dict)
    futures: dict[str, _Future] = field(default_factory=dict)
    documents: dict[str, bytes] = field(default_factory=dict)

    _named: ClassVar[dict[str, Medium]] = {}
    _named_lock: ClassVar[threading.Lock] = threading.Lock()

    @classmethod
    def named(cls, name: str) -> Medium:
        with cls._named_lock:
            return cls._named.setdefault(name, cls())


class OldStyleTransport(Transport):
    """An in-process transport registered the deprecated way."""

    _ids = itertools.count()

    def __init__(self, settings: TransportSettings) -> None:
        super().__init__(settings)
        self.medium = Medium.named(str(settings.options["medium"]))
        self._handlers: dict[tuple[str, str], RequestHandler] = {}
        self._stop = threading.Event()

    @property
    def capabilities(self) -> TransportCapabilities:
        return TransportCapabilities(notifies=False)

    def send(self, datasite: str, app: str, endpoint: str, body: bytes, expires_at: float) -> str:
        future_id = uuid.uuid4().hex
        request = Request(
            future_id, self.identity, datasite, app, endpoint, body, time.time(), expires_at
        )
        with self.medium.lock:
            self.medium.futures[future_id] = _Future(self.identity, expires_at)
            self.medium.queues.setdefault(datasite, deque()).append(request)
            self.medium.lock.notify_all()
        return future_id

    def poll(self, future_id: str) -> Reply | None:
        with self.medium.lock:
            future = self.medium.futures.get(future_id)
            if future is None or future.sender != self.identity:
                return None
            if future.reply is None and time.time() >= future.expires_at:
                future.reply = Reply(future_id, ReplyStatus.EXPIRED)
            return future.reply

    def forget(self, future_id: str) -> None:
        with self.medium.lock:
            future = self.medium.futures.get(future_id)
            if future is not None and future.sender == self.identity:
                del self.medium.futures[future_id]

    def serve(self, app: str, endpoint: str, handler: RequestHandler) -> None:
        self._handlers[(app, endpoint)] = handler

    def run(self) -> None:
        while not self._stop.is_set():
            request = self._next_request()
            if request is not None:
                self._handle(request)
        self._stop.clear()

    def _next_request(self) -> Request | None:
        with self.medium.lock:
            queue = self.medium.queues.get(self.identity)
            if not queue:
                self.medium.lock.wait(self.settings.poll_interval)
                return None
            return queue.popleft()

    def _handle(self, request: Request) -> None:
        handler = self._handlers.get((request.app, request.endpoint))
        if handler is None or request.expired():
            return
        try:
            body = handler(request)
        except RequestRefusedError as exc:
            self._answer(Reply(request.id, ReplyStatus.REJECTED, detail=str(exc)))
            return
        except Exception as exc:  # a handler fault is answered, as the contract says
            self._answer(Reply(request.id, ReplyStatus.REJECTED, detail=repr(exc)))
            return
        if body is not None:
            self._answer(Reply(request.id, ReplyStatus.OK, body))

    def _answer(self, reply: Reply) -> None:
        with self.medium.lock:
            future = self.medium.futures.get(reply.future_id)
            if future is not None and future.reply is None:
                future.reply = reply

    def stop(self) -> None:
        self._stop.set()
        with self.medium.lock:
            self.medium.lock.notify_all()
