"""The in-process network: the "wire" that :class:`MemoryTransport` instances share.

A real transport keeps requests and replies somewhere that outlives any one process object: a
synced folder, a Drive. The memory transport's equivalent is a :class:`MemoryNetwork`. It holds

- one :class:`~syft_flwr_memory.mailbox.Mailbox` per datasite (requests waiting for a handler),
- the futures of every sender, keyed by ``(sender identity, future id)``,
- the transports attached right now, to wake the ones waiting for a reply,

so an inbox survives a client's ``stop()``/``run()`` and a new transport instance with the same
identity sees the old one's mailbox and futures. Everything is a dict lookup: routing a
request and matching a reply cost O(1) however many datasites are attached.

Networks are looked up by name (the ``network`` option, ``"default"`` if unset) in a class-level
registry: that registry *is* the plugin's in-process wire, the one piece of global state the
plugin keeps, so that a server and its clients built independently from the same configuration
find each other. Tests that want isolation build ``MemoryNetwork()`` directly and pass it to the
transport, or call :meth:`MemoryNetwork.reset`.
"""

from __future__ import annotations

import logging
import math
import threading
import time
import uuid
from dataclasses import dataclass, field
from functools import partial
from typing import ClassVar

from syft_flwr.errors import TransportError
from syft_flwr.transport import Reply, ReplyStatus, Request, Transport
from syft_flwr_memory.faults import FaultInjector, FaultPlan
from syft_flwr_memory.mailbox import Mailbox
from syft_flwr_memory.scheduler import Scheduler

__all__ = ["MemoryNetwork", "expired_reply"]

logger = logging.getLogger(__name__)


@dataclass
class _Future:
    """What the sender side knows about one request; guarded by the network lock."""

    expires_at: float
    reply: Reply | None = None


@dataclass
class _InFlight:
    """Where a sent request's deliveries sit, for the expiry timer to purge them.

    It holds no body: a timer can be due an hour after the reply, and a round's model
    weights must not stay alive that long. ``keys`` is guarded by ``mailbox.cond``.
    """

    sender: str
    future_id: str
    app: str
    mailbox: Mailbox
    keys: list[int] = field(default_factory=list)


class MemoryNetwork:
    """Connects any number of memory transports inside one process.

    :param name: a label for logs and the timer thread; :meth:`named` sets it to the
        registry name.
    :param faults: a random fault plan for every request sent over this network.
    """

    _registry: ClassVar[dict[str, MemoryNetwork]] = {}
    _registry_lock: ClassVar[threading.Lock] = threading.Lock()

    def __init__(self, name: str = "private", *, faults: FaultPlan | None = None) -> None:
        self.name = name
        self._lock = threading.Lock()
        self._closed = False
        self._mailboxes: dict[str, Mailbox] = {}
        self._futures: dict[str, dict[str, _Future]] = {}
        self._transports: dict[str, set[Transport]] = {}
        self._key_documents: dict[str, bytes] = {}
        self._injector = FaultInjector(faults)
        self._scheduler = Scheduler(name)

    # -- the registry of named networks ----------------------------------------------------

    @classmethod
    def named(cls, name: str = "default") -> MemoryNetwork:
        """The network registered as ``name``, created on first use (or after it was closed)."""
        with cls._registry_lock:
            network = cls._registry.get(name)
            if network is None or network._closed:
                network = cls._registry[name] = cls(name)
            return network

    @classmethod
    def reset(cls, name: str | None = None) -> None:
        """Close and forget the named network (every named network if ``name`` is ``None``).

        Its transports are closed and its inboxes and futures dropped; the next
        :meth:`named` call with that name starts from an empty network.
        """
        with cls._registry_lock:
            if name is None:
                networks = list(cls._registry.values())
                cls._registry.clear()
            else:
                network = cls._registry.pop(name, None)
                networks = [] if network is None else [network]
        for network in networks:
            network.close()

    # -- fault injection -------------------------------------------------------------------

    @property
    def faults(self) -> FaultPlan | None:
        """The random fault plan in force; setting it (or ``None``) reseeds the generator."""
        return self._injector.plan

    @faults.setter
    def faults(self, plan: FaultPlan | None) -> None:
        self._injector.plan = plan

    def drop_next(self, count: int = 1) -> None:
        """Silently drop the next ``count`` requests sent over this network."""
        self._injector.drop_next(count)

    def duplicate_next(self, count: int = 1) -> None:
        """Deliver each of the next ``count`` requests twice, with the same id."""
        self._injector.duplicate_next(count)

    # -- the wire, as the transports use it ------------------------------------------------

    def attach(self, transport: Transport) -> Mailbox:
        """Connect ``transport``; return its datasite's mailbox.

        Replies that arrived for the identity's futures before this instance existed are
        marked ready on it, so ``wait_ready`` of a restarted sender does not miss them.

        :raises TransportError: the network is closed.
        """
        identity = transport.identity
        with self._lock:
            self._check_open()
            self._transports.setdefault(identity, set()).add(transport)
            mailbox = self._mailbox(identity)
            futures = self._futures.get(identity, {})
            ready = [fid for fid, future in futures.items() if future.reply is not None]
        for future_id in ready:
            transport.reply_arrived(future_id)
        return mailbox

    def detach(self, transport: Transport) -> None:
        """Disconnect ``transport``; its mailbox and futures stay for the next instance."""
        with self._lock:
            attached = self._transports.get(transport.identity)
            if attached is not None:
                attached.discard(transport)
                if not attached:
                    del self._transports[transport.identity]

    def send(
        self, sender: str, recipient: str, app: str, endpoint: str, body: bytes, expires_at: float
    ) -> str:
        """Route a request (addresses already validated) and return its new future id.

        ``sender`` is the sending transport's identity: the recipient sees it as
        ``Request.sender`` whatever the body claims. Dropped requests only leave a future
        behind, which expires; delayed ones are delivered by the timer thread. An infinite
        ``expires_at`` never expires.

        :raises TransportError: the network is closed.
        """
        now = time.time()
        future_id = uuid.uuid4().hex
        request = Request(future_id, sender, recipient, app, endpoint, body, now, expires_at)
        with self._lock:
            self._check_open()
            self._futures.setdefault(sender, {})[future_id] = _Future(expires_at)
            flight = _InFlight(sender, future_id, app, self._mailbox(recipient))
        if math.isfinite(expires_at):
            self._scheduler.call_at(expires_at, partial(self._expire, flight))
        fate = self._injector.fate()
        if fate.copies == 0:
            logger.debug("network %s: fault injection dropped request %s", self.name, future_id)
        elif fate.delay > 0:
            self._scheduler.call_at(
                now + fate.delay, partial(self._deliver, flight, request, fate.copies)
            )
        else:
            self._deliver(flight, request, fate.copies)
        return future_id

    def settle(self, sender: str, future_id: str, reply: Reply) -> Reply | None:
        """Store ``reply`` for the future unless it has one already: the first reply wins.

        Wakes the sender's attached transports. Returns the reply now stored, or ``None`` if
        the sender forgot the future (the reply is then dropped).
        """
        with self._lock:
            future = self._futures.get(sender, {}).get(future_id)
            if future is None:
                return None
            if future.reply is not None:
                return future.reply
            future.reply = reply
            listeners = list(self._transports.get(sender, ()))
        for transport in listeners:
            transport.reply_arrived(future_id)
        return reply

    def poll(self, sender: str, future_id: str) -> Reply | None:
        """The reply to ``sender``'s future, ``EXPIRED`` once its time has passed, or ``None``."""
        with self._lock:
            future = self._futures.get(sender, {}).get(future_id)
            if future is None:
                return None
            if future.reply is not None or time.time() < future.expires_at:
                return future.reply
        # The timer has not fired yet (it may lag under load): expire now, and wake waiters.
        return self.settle(sender, future_id, expired_reply(future_id))

    def forget(self, sender: str, future_id: str) -> None:
        """Drop ``sender``'s future. A request still in an inbox is not withdrawn (a stop
        signal is sent and forgotten at once); its reply, if any, will be discarded."""
        with self._lock:
            futures = self._futures.get(sender)
            if futures is not None:
                futures.pop(future_id, None)
                if not futures:
                    del self._futures[sender]

    def publish_key_document(self, datasite: str, document: bytes) -> None:
        """Make ``document`` the public key document of ``datasite`` (replacing any)."""
        with self._lock:
            self._key_documents[datasite] = bytes(document)

    def key_document(self, datasite: str) -> bytes | None:
        """The key document ``datasite`` published, or ``None``."""
        with self._lock:
            return self._key_documents.get(datasite)

    def inbox_size(self, datasite: str) -> int:
        """How many deliveries wait in ``datasite``'s mailbox (expired ones until purged)."""
        with self._lock:
            mailbox = self._mailboxes.get(datasite)
        return 0 if mailbox is None else mailbox.size()

    def close(self) -> None:
        """Close every attached transport and drop all inboxes, futures and timers."""
        with self._lock:
            self._closed = True
            transports = [t for attached in self._transports.values() for t in attached]
            self._transports.clear()
            self._futures.clear()
            self._mailboxes.clear()
        self._scheduler.cancel_all()
        for transport in transports:
            transport.close()

    # -- internals ---------------------------------------------------------------------------

    def _check_open(self) -> None:
        if self._closed:
            raise TransportError(f"memory network {self.name!r} is closed")

    def _mailbox(self, identity: str) -> Mailbox:
        mailbox = self._mailboxes.get(identity)
        if mailbox is None:
            mailbox = self._mailboxes[identity] = Mailbox()
        return mailbox

    def _deliver(self, flight: _InFlight, request: Request, copies: int) -> None:
        if request.expired():
            return  # the expiry timer answers the sender
        mailbox = flight.mailbox
        with mailbox.cond:
            flight.keys.extend(mailbox.put(request, copies))
            mailbox.cond.notify_all()

    def _expire(self, flight: _InFlight) -> None:
        self.settle(flight.sender, flight.future_id, expired_reply(flight.future_id))
        with flight.mailbox.cond:
            flight.mailbox.discard(flight.app, flight.keys)
            flight.keys.clear()


def expired_reply(future_id: str) -> Reply:
    """The reply a sender sees when a request expired unanswered."""
    return Reply(future_id, ReplyStatus.EXPIRED, detail="the request expired before a reply")
