"""Every event syft-flwr fires, as typed classes: the one channel observers listen to.

Modelled on datasette's ``events.py``: each event is a small frozen dataclass with a ``name``;
one hook, ``syft_flwr_event(event)``, receives every event, and the dispatcher
(:func:`syft_flwr.plugins.fire_event`) calls each implementation in isolation, so a raising
observer is logged and skipped instead of hiding the event from the others.

Two kinds of events share the channel:

- :class:`EngineEvent`: what a *run* did, fired by the server engine (``run_started``,
  ``round_finished`` for a committed round, ``message_sent``...), with a JSON-friendly
  ``data`` mapping; these are also the lines of the workspace's ``events.jsonl``.
  Applications may fire their own names through ``ServerEngine.fire_event``.
- the lifecycle events below (:data:`LIFECYCLE_EVENTS`), fired by the grid, the server entry
  point and the client runner whether or not an engine runs. Each has typed fields. For the
  events that had a lifecycle hook before the one channel existed, the dispatcher derives
  that ``syft_flwr_<name>`` hook from the event (:data:`syft_flwr.hookspecs.DERIVED_HOOKS`), so
  plugins written against those hooks keep working without the grid calling them separately;
  newer events (what a progress display needs: :class:`ExchangeStarted`,
  :class:`TransferProgress`) have no hook of their own.

One meaning per name: the grid's per-``send_and_receive`` notification is
:class:`ExchangeFinished` (``exchange_finished``), because ``round_finished`` is the engine's
committed round.

This module is a leaf: it imports nothing from syft-flwr, so any layer may fire events.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field, fields
from time import time as _now
from typing import Any, ClassVar

__all__ = [
    "CLIENT_JOINED",
    "CLIENT_LOST",
    "ENGINE_EVENTS",
    "LIFECYCLE_EVENTS",
    "MESSAGE_FAILED",
    "MESSAGE_RECEIVED",
    "MESSAGE_SENT",
    "ROUND_FINISHED",
    "ROUND_STARTED",
    "RUN_FINISHED",
    "RUN_INTERRUPTED",
    "RUN_RESUMED",
    "RUN_STARTED",
    "STOP_SIGNAL_SENT",
    "EngineEvent",
    "Event",
    "ExchangeFinished",
    "ExchangeStarted",
    "LifecycleEvent",
    "MessagePushed",
    "ReplyPulled",
    "ServerFinished",
    "ServerStarted",
    "StopSignalReceived",
    "StopSignalSent",
    "TransferProgress",
]

RUN_STARTED = "run_started"
RUN_RESUMED = "run_resumed"
RUN_FINISHED = "run_finished"
RUN_INTERRUPTED = "run_interrupted"
ROUND_STARTED = "round_started"
ROUND_FINISHED = "round_finished"
MESSAGE_SENT = "message_sent"
MESSAGE_RECEIVED = "message_received"
MESSAGE_FAILED = "message_failed"
CLIENT_JOINED = "client_joined"
CLIENT_LOST = "client_lost"
STOP_SIGNAL_SENT = "stop_signal_sent"

ENGINE_EVENTS = frozenset(
    {
        RUN_STARTED,
        RUN_RESUMED,
        RUN_FINISHED,
        RUN_INTERRUPTED,
        ROUND_STARTED,
        ROUND_FINISHED,
        MESSAGE_SENT,
        MESSAGE_RECEIVED,
        MESSAGE_FAILED,
        CLIENT_JOINED,
        CLIENT_LOST,
        STOP_SIGNAL_SENT,
    }
)
"""The names the engine records in ``events.jsonl``. All but ``stop_signal_sent`` reach plugins
as :class:`EngineEvent`; that one reaches them once, as the grid's :class:`StopSignalSent`."""


@dataclass(frozen=True)
class EngineEvent:
    """One thing that happened in a run.

    :param name: what happened, e.g. ``"round_finished"`` (a committed round).
    :param run_id: the run it happened in.
    :param time: when, as a Unix timestamp.
    :param data: details, JSON-friendly (names, numbers, strings).
    """

    name: str
    run_id: int
    time: float
    data: Mapping[str, Any] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        """The event as one line of the workspace's ``events.jsonl``."""
        return {"name": self.name, "run_id": self.run_id, "time": self.time, **self.data}


@dataclass(frozen=True, kw_only=True)
class LifecycleEvent:
    """Base of the typed lifecycle events: ``name``, ``run_id`` and ``time`` plus the fields
    of the subclass.

    ``data`` and :meth:`to_json` give them the reading interface of :class:`EngineEvent`, so
    an observer can treat every event alike.

    :param run_id: the run the event belongs to, ``None`` where the firing side does not
        know it (a client receiving the stop signal).
    :param time: when, as a Unix timestamp.
    """

    name: ClassVar[str]
    run_id: int | None = None
    time: float = field(default_factory=_now)

    def fields(self) -> dict[str, Any]:
        """Every field but ``time``: the keyword arguments of the derived lifecycle hook."""
        return {f.name: getattr(self, f.name) for f in fields(self) if f.name != "time"}

    @property
    def data(self) -> Mapping[str, Any]:
        """The fields other than ``run_id``, JSON-friendly (an exception becomes its text)."""
        return {
            key: str(value) if isinstance(value, BaseException) else value
            for key, value in self.fields().items()
            if key != "run_id"
        }

    def to_json(self) -> dict[str, Any]:
        """The event as one JSON object, like :meth:`EngineEvent.to_json`."""
        return {"name": self.name, "run_id": self.run_id, "time": self.time, **self.data}


@dataclass(frozen=True, kw_only=True)
class ServerStarted(LifecycleEvent):
    """A server run is about to start the ``ServerApp``.

    :param app_name: the application name (without the ``flwr/`` prefix).
    :param datasites: the datasites taking part, in configuration order.
    """

    name: ClassVar[str] = "server_started"
    app_name: str
    datasites: list[str]


@dataclass(frozen=True, kw_only=True)
class ServerFinished(LifecycleEvent):
    """A server run ended, before stop signals are sent.

    :param error: the exception that ended the run, or ``None`` on success.
    """

    name: ClassVar[str] = "server_finished"
    error: BaseException | None = None


@dataclass(frozen=True, kw_only=True)
class MessagePushed(LifecycleEvent):
    """The grid handed a message for ``datasite`` to the transport.

    :param message_id: the Flower message id the grid assigned.
    :param datasite: the recipient's email.
    :param message_type: the Flower message type (``train``, ``evaluate``, ``system``...).
    :param group_id: the message's group (the round, for most strategies).
    """

    name: ClassVar[str] = "message_pushed"
    message_id: str
    datasite: str
    message_type: str
    group_id: str


@dataclass(frozen=True, kw_only=True)
class ReplyPulled(LifecycleEvent):
    """The grid produced the reply to ``message_id`` for the strategy.

    :param message_id: the id of the message this reply answers.
    :param datasite: the replying datasite.
    :param error_code: Flower ``ErrorCode`` of an error reply (also for replies the grid
        synthesised on expiry), ``None`` for a successful reply.
    """

    name: ClassVar[str] = "reply_pulled"
    message_id: str
    datasite: str
    error_code: int | None = None


@dataclass(frozen=True, kw_only=True)
class ExchangeStarted(LifecycleEvent):
    """A ``send_and_receive`` call has handed its messages to the transport and starts waiting.

    Fired after the messages went out, so ``deadline`` is the grid's real one: the wait ends
    by then at the latest, whatever the datasites do.

    :param group_id: the group id of the messages sent (the round, for Flower strategies).
    :param message_type: the Flower message type of the first message (``train``...).
    :param expected: how many replies the exchange waits for (one per message).
    :param deadline: when the wait ends at the latest, as a Unix timestamp: the earlier of
        the call's timeout and the last message's TTL (or a lost datasite's grace period).
    """

    name: ClassVar[str] = "exchange_started"
    group_id: str
    message_type: str
    expected: int
    deadline: float


@dataclass(frozen=True, kw_only=True)
class TransferProgress(LifecycleEvent):
    """Bytes of one message body moved between the grid and the transport.

    The grid fires it at the boundaries it sees: before it hands a body to
    ``Transport.send`` (``done == 0``) and when ``send`` returned (``done == total``); and for
    a reply, once its body arrived whole and was accepted (``done == total``: transports hand
    over whole bodies only, a partial file is "no reply yet"). The transport contract has no
    progress callback, so nothing in between is claimed.

    :param direction: ``"send"`` (a message to a datasite) or ``"receive"`` (its reply).
    :param message_id: the message the body belongs to (a reply: the message it answers).
    :param datasite: the datasite on the other end.
    :param done: bytes moved so far.
    :param total: the body's size in bytes.
    """

    name: ClassVar[str] = "transfer_progress"
    direction: str
    message_id: str
    datasite: str
    done: int
    total: int


@dataclass(frozen=True, kw_only=True)
class ExchangeFinished(LifecycleEvent):
    """A ``send_and_receive`` call returned: one exchange of one kind of work is complete.

    Not a committed round (that is the engine's ``round_finished``): a Flower round makes
    several exchanges (train, evaluate), and a grid without an engine has no rounds at all.

    :param group_id: the group id of the messages sent (the round, for Flower strategies).
    :param replies: how many successful replies came back.
    :param failures: how many error replies (including expiries) came back.
    """

    name: ClassVar[str] = "exchange_finished"
    group_id: str
    replies: int
    failures: int


@dataclass(frozen=True, kw_only=True)
class StopSignalSent(LifecycleEvent):
    """The server sent the stop signal to ``datasite``.

    :param datasite: the recipient's email.
    :param reason: the reason carried in the signal.
    """

    name: ClassVar[str] = "stop_signal_sent"
    datasite: str
    reason: str


@dataclass(frozen=True, kw_only=True)
class StopSignalReceived(LifecycleEvent):
    """A client received the stop signal and is about to stop serving.

    :param datasite: the email of the client that stops.
    :param reason: the reason carried in the signal.
    """

    name: ClassVar[str] = "stop_signal_received"
    datasite: str
    reason: str


LIFECYCLE_EVENTS: tuple[type[LifecycleEvent], ...] = (
    ServerStarted,
    ServerFinished,
    TransferProgress,
    MessagePushed,
    ExchangeStarted,
    ReplyPulled,
    ExchangeFinished,
    StopSignalSent,
    StopSignalReceived,
)
"""Every lifecycle event class, in the order a run fires them. Those that predate the one
channel also reach their derived lifecycle hook (:data:`syft_flwr.hookspecs.DERIVED_HOOKS`);
the newer ones (:class:`ExchangeStarted`, :class:`TransferProgress`) reach plugins through
``syft_flwr_event`` only."""

Event = EngineEvent | LifecycleEvent
"""What ``syft_flwr_event`` receives."""
