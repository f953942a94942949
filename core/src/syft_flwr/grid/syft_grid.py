"""``SyftGrid``: a Flower ``Grid`` whose messages travel over a syft-flwr transport.

Datasites are addressed by email; their node ids are derived from the email
(:mod:`syft_flwr.node_ids`) so that server and clients agree without a registry. A message
is encoded with the wire codec when it is pushed (strategies share one ``RecordDict``
between the messages of a round, so it must be serialised before the strategy mutates it)
and handed to the transport with an expiry of ``created_at + ttl``.

A datasite that cannot open a message (it refuses it: a key document one sync cycle late on
either side) makes the grid read that datasite's key document again and, within the message's
TTL, seal and send it once more (up to :data:`MAX_RESENDS` times); a datasite that refuses or
does not answer has its document read again before the next message. Only when the TTL runs
out is the message reported as failed, naming the refusal ("ds2 cannot open our messages").

The grid never waits past a message's TTL: once it runs out without an answer, the grid
answers in the client's place with an error reply (``ErrorCode.MESSAGE_UNAVAILABLE``), so
a Flower strategy counts a failure instead of hanging. All methods are thread-safe, since
legacy strategies call ``send_and_receive`` from a thread pool.

Replies are accepted only from the datasite each message went to, and only as the answer to
that very message: a reply that does not open as that datasite's answer to the message's
envelope, does not decode, or answers another message or run is *foreign* (an old reply
replayed into the reply slot, bytes a sync client left half-written, ...). A foreign reply is
logged once and ignored; the message keeps waiting for its real reply until its TTL, and the
expiry error then names what was ignored. Only an explicit refusal from the datasite
(``REJECTED``) ends a message early.

With a :class:`~syft_flwr.crypto.SecureChannel`, every encoded message is sealed to its
datasite before the transport sees it, and every reply must open as that datasite's answer to
that very envelope; a reply that does not becomes an error reply, never a plaintext fallback.
A datasite that publishes only a syft-crypto key document gets syft-flwr 0.5.x's weaker
``X3DH-SyftBox`` payloads instead, and must answer in kind.

The server engine plugs in through one port (:class:`~syft_flwr.grid.port.GridPort`): the
round in progress, a journal (the messages of the round in progress survive a server crash; a
resumed round claims them instead of sending again), a liveness tracker (a datasite already
lost when a message goes out is waited for only the tracker's grace period, so a dead client
does not stall every round, and one that comes back within it rejoins), and what the grid saw
(its lifecycle events, each datasite's answers). The grid knows nothing else of the engine.

With a journal, crash safety shapes three details. Message ids are derived from the run, the
round, the datasite, the message's kind and its place among its kind, so a message sent again
after a crash that came before it was journaled carries the same id, and the datasite answers
it with the reply it already gave instead of running the ``ClientApp`` twice. A collected reply
is journaled before it is recorded as seen in the replay store, so a restart in between opens
it again instead of refusing it as a replay. And a fault of the medium or the journal is
remembered (:attr:`SyftGrid.fault`): the round it happened in is not committed.
"""

from __future__ import annotations

import contextlib
import hashlib
import heapq
import logging
import threading
import time
import uuid
from collections import Counter
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, replace
from typing import Any

import pluggy
from flwr.app import Error, Message, Metadata, RecordDict
from flwr.common.constant import ErrorCode
from flwr.serverapp import Grid
from flwr.supercore.run import Run
from flwr.supercore.task_identity import TaskIdentity

from syft_flwr.config import DEFAULT_MSG_TIMEOUT, RuntimeSettings
from syft_flwr.crypto.channel import ReplayMark, SecureChannel
from syft_flwr.crypto.errors import CryptoError, ReplayError
from syft_flwr.crypto.policy import open_channel
from syft_flwr.errors import (
    GridError,
    MediumError,
    SyftFlwrError,
    WireFormatError,
    WorkspaceIOError,
)
from syft_flwr.events import (
    ExchangeFinished,
    ExchangeStarted,
    LifecycleEvent,
    MessagePushed,
    ReplyPulled,
    StopSignalSent,
    TransferProgress,
)
from syft_flwr.grid.gate import UNOPENABLE
from syft_flwr.grid.port import GridPort, Journal, JournalEntry, Liveness
from syft_flwr.kill_points import kill_point
from syft_flwr.message_factory import message_with_metadata
from syft_flwr.node_ids import node_table
from syft_flwr.plugins import fire_event
from syft_flwr.stop_signal import STOP_GROUP_ID, SYSTEM_MESSAGE_TYPE, build_stop_content
from syft_flwr.transport import (
    Body,
    ReceivedData,
    Reply,
    ReplyStatus,
    Transport,
    body_size,
    held_body,
    join_body,
    outgoing_body,
)
from syft_flwr.wire import decode_message, encode_message, encode_message_frames

__all__ = ["APP_PREFIX", "DEFAULT_ENDPOINT", "SERVER_NODE_ID", "SyftGrid"]

logger = logging.getLogger(__name__)

SERVER_NODE_ID = 1
APP_PREFIX = "flwr/"
"""Flower apps live under ``flwr/<app_name>`` on every transport (as in syft-flwr 0.5.x)."""
DEFAULT_ENDPOINT = "messages"
FROM_POLICY: Any = object()
"""``channel=`` default: open the channel the project's encryption policy asks for."""
DEFAULT_STOP_TTL = 60.0
MAX_RESENDS = 3
"""How often a message a datasite could not open is sealed and sent again (within its TTL)."""
RESEND_AFTER = 2.0
"""Seconds after a refusal when a message is sent again even if the datasite's key document
looks unchanged (the datasite may have lacked *our* document); two deliveries over a slow
sync (:attr:`~syft_flwr.transport.TransportCapabilities.delivery_latency`) if longer."""


@dataclass(frozen=True)
class _Pending:
    """What the grid remembers about a message in flight (not its content)."""

    future_id: str
    datasite: str
    metadata: Metadata
    expires_at: float
    envelope_id: bytes = b""
    stored: Message | None = None
    """The reply, when a resumed round claimed a message collected before the crash."""
    claimed: bool = False
    """Sent before a crash and taken over from the journal (its reply may be there already)."""
    give_up_at: float = float("inf")
    """When to stop waiting: set for a datasite already lost when the message went out."""
    frames: tuple[bytes | memoryview, ...] = ()
    """The encoded message (references, not copies), kept to seal it again for a resend."""
    sealed_to: bytes = b""
    """The id of the datasite's key it was sealed to."""
    resends: int = 0


@dataclass(frozen=True)
class _Refusal:
    """A datasite could not open a message: sent again once its key document is fresh."""

    detail: str
    at: float


class _Waiting:
    """The messages one ``send_and_receive`` still waits for, kept so that a wake-up costs
    what it delivers, not the size of the round (a round of 1,000 datasites wakes up to 1,000
    times): the future of each message and back, the set of futures handed to
    :meth:`~syft_flwr.transport.Transport.wait_ready` (updated, never rebuilt), and the
    deadlines in a heap. Used by one thread only."""

    def __init__(self, pending: Mapping[str, _Pending], message_ids: Iterable[str]) -> None:
        self.future_of: dict[str, str] = {}
        self.message_of: dict[str, str] = {}
        self.futures: set[str] = set()
        self._deadlines: list[tuple[float, str]] = []
        for message_id in message_ids:
            entry = pending.get(message_id)
            if entry is not None:
                self.move(message_id, entry.future_id)
                self._deadlines.append((min(entry.expires_at, entry.give_up_at), message_id))
        heapq.heapify(self._deadlines)

    def __bool__(self) -> bool:
        return bool(self.future_of)

    def __contains__(self, message_id: object) -> bool:
        return message_id in self.future_of

    def move(self, message_id: str, future_id: str) -> None:
        """Wait for ``message_id`` on ``future_id`` (its first future, or a new one after a
        resend: a message keeps its deadline)."""
        self.drop(message_id)
        self.future_of[message_id] = future_id
        self.message_of[future_id] = message_id
        self.futures.add(future_id)

    def drop(self, message_id: str) -> None:
        """Stop waiting for ``message_id`` (its heap entry goes when it comes up)."""
        future_id = self.future_of.pop(message_id, None)
        if future_id is not None:
            del self.message_of[future_id]
            self.futures.discard(future_id)

    def due(self, now: float) -> list[str]:
        """The messages still waited for whose deadline is ``now`` or earlier."""
        due = []
        while self._deadlines and self._deadlines[0][0] <= now:
            message_id = heapq.heappop(self._deadlines)[1]
            if message_id in self.future_of:
                due.append(message_id)
        return due

    def all(self) -> list[str]:
        """Every message still waited for (the call's timeout passed)."""
        return list(self.future_of)

    def next_deadline(self) -> float:
        """The earliest deadline of a message still waited for (``inf`` if none)."""
        while self._deadlines and self._deadlines[0][1] not in self.future_of:
            heapq.heappop(self._deadlines)
        return self._deadlines[0][0] if self._deadlines else float("inf")


class SyftGrid(Grid):
    """A Flower ``Grid`` routing messages to datasites through a :class:`Transport`.

    :param app_name: the application path on the transport, e.g. ``"flwr/diabetes"``.
    :param datasites: the datasite emails taking part.
    :param client: the transport to send through (named ``client`` as in the reference API).
    :param endpoint: the endpoint clients serve.
    :param msg_timeout: longest wait for replies when ``send_and_receive`` gets no timeout.
    :param plugin_manager: where lifecycle hooks go; the process-wide manager by default.
    :param channel: seal messages and open replies with it; ``None`` sends plaintext. By
        default the channel is opened from the encryption policy (``SYFT_FLWR_ENCRYPTION_ENABLED``,
        else the transport's default), exactly as ``syftbox_flwr_server`` opens it, so the
        reference API's ``SyftGrid(app_name=..., datasites=..., client=...)`` seals on an
        encrypted project and never sends plaintext unasked.
    :param reports_rounds: fire :class:`~syft_flwr.events.ExchangeFinished` after each
        ``send_and_receive``;
        off for grids that carry something other than strategy rounds (aux requests).
    :param port: the party driving this grid (the server engine), which numbers the rounds,
        journals and tracks liveness, and observes what the grid does; ``None`` for a grid
        that only routes.
    :raises GridError: a datasite is listed twice or two datasites share a node id.
    """

    def __init__(
        self,
        app_name: str,
        datasites: Sequence[str],
        client: Transport,
        *,
        endpoint: str = DEFAULT_ENDPOINT,
        msg_timeout: float = DEFAULT_MSG_TIMEOUT,
        plugin_manager: pluggy.PluginManager | None = None,
        channel: SecureChannel | None = FROM_POLICY,
        reports_rounds: bool = True,
        port: GridPort | None = None,
    ) -> None:
        if not datasites:
            raise GridError("SyftGrid needs at least one datasite")
        self.app_name = app_name
        self.endpoint = endpoint
        self.transport = client
        self.msg_timeout = msg_timeout
        self._nodes = node_table(datasites)
        self._node_of = {email: node_id for node_id, email in self._nodes.items()}
        self._run: Run | None = None
        self._pending: dict[str, _Pending] = {}
        self._by_future: dict[str, str] = {}
        self._ignored: dict[str, str] = {}
        """Message id -> why the reply now at its future was ignored (foreign)."""
        self._refused: dict[str, _Refusal] = {}
        """Message id -> the refusal of a datasite that could not open it (to send again)."""
        self.answered: set[str] = set()
        """Datasites that answered a message (with a result or their ClientApp's error)."""
        self.refusals: dict[str, str] = {}
        """Datasite -> the last reason it gave for refusing a message."""
        self._kinds: Counter[tuple[int, str, str, str]] = Counter()
        self.fault: SyftFlwrError | None = None
        """The first fault of the medium or the journal; the engine does not commit a round
        in which one happened (legacy strategies swallow exceptions of single messages)."""
        self._lock = threading.Lock()
        self._plugins = plugin_manager
        self._owns_channel = channel is FROM_POLICY
        if channel is FROM_POLICY:
            channel = open_channel(client, RuntimeSettings.from_env(), plugin_manager)
        self.channel = channel
        self.reports_rounds = reports_rounds
        self.port = port

    @property
    def engine(self) -> GridPort | None:
        """The party driving this grid: the server engine under ``syftbox_flwr_server``, for
        ``ServerApp``s that want its services (aux requests, resources, clients)."""
        return self.port

    @property
    def epoch(self) -> int:
        """The round in progress, as the port counts it (0 without one)."""
        return 0 if self.port is None else self.port.epoch

    @property
    def journal(self) -> Journal | None:
        """The port's journal of the round in progress, if the run persists."""
        return None if self.port is None else self.port.journal

    @property
    def liveness(self) -> Liveness | None:
        """The port's liveness tracker, if any."""
        return None if self.port is None else self.port.liveness

    # -- run and nodes ------------------------------------------------------------------

    def close(self) -> None:
        """Release the channel this grid opened itself (one passed in stays the caller's)."""
        if self._owns_channel and self.channel is not None:
            self.channel.close()

    def set_run(self, run: Run | int) -> None:
        """Set the run; accepts a Flower ``Run`` or a bare run id (as the reference API does)."""
        if isinstance(run, bool) or not isinstance(run, (Run, int)):
            raise GridError(f"set_run needs a flwr Run or an int run id, got {type(run).__name__}")
        self._run = Run.create_empty(run) if isinstance(run, int) else run
        claim_task_identity(self._run.run_id)

    @property
    def run(self) -> Run:
        """The current run."""
        if self._run is None:
            raise GridError("SyftGrid has no run: call set_run(run_id) first")
        return Run(**vars(self._run))

    @property
    def datasites(self) -> list[str]:
        """The datasite emails, in configuration order."""
        return list(self._nodes.values())

    def node_id_of(self, datasite: str) -> int:
        """The node id of ``datasite``."""
        try:
            return self._node_of[datasite]
        except KeyError:
            raise GridError(f"{datasite!r} is not a datasite of this grid") from None

    def datasite_of(self, node_id: int) -> str:
        """The email behind ``node_id``."""
        try:
            return self._nodes[node_id]
        except KeyError:
            raise GridError(f"node id {node_id} is not a datasite of this grid") from None

    def retain(self, datasites: Iterable[str]) -> None:
        """Keep only ``datasites`` in the grid (those that started the job).

        :raises GridError: one of them is not a datasite of this grid, or none is left.
        """
        keep = list(datasites)
        for datasite in keep:
            self.node_id_of(datasite)
        if not keep:
            raise GridError("retain() would leave the grid without datasites")
        with self._lock:
            self._nodes = {nid: ds for nid, ds in self._nodes.items() if ds in set(keep)}
            self._node_of = {ds: nid for nid, ds in self._nodes.items()}

    def unreachable_datasites(self) -> dict[str, str]:
        """Datasites that cannot be reached securely (no usable keys), each with the reason.

        Always empty without a channel; the server calls it before a run starts.
        """
        if self.channel is None:
            return {}
        return self.channel.missing_keys(self.datasites)

    def get_node_ids(self) -> list[int]:
        """Node ids of every configured datasite."""
        return list(self._nodes)

    def create_message(
        self,
        content: RecordDict,
        message_type: str,
        dst_node_id: int,
        group_id: str,
        ttl: float | None = None,
    ) -> Message:
        """Build an instruction message (deprecated upstream in favour of ``Message(...)``)."""
        return Message(
            content=content,
            dst_node_id=dst_node_id,
            message_type=message_type,
            group_id=group_id,
            ttl=ttl,
        )

    # -- pushing and pulling ------------------------------------------------------------

    def push_messages(self, messages: Iterable[Message]) -> list[str]:
        """Encode and send each message; return their new message ids.

        :raises GridError: a message is not an instruction or targets an unknown node.
        """
        run_id = self.run.run_id
        ids: list[str] = []
        for message in messages:
            ids.append(self._push_one(message, run_id))
        return ids

    def _push_one(self, message: Message, run_id: int) -> str:
        metadata = message.metadata
        if metadata.reply_to_message_id:
            raise GridError("push_messages got a reply; only instruction messages can be pushed")
        datasite = self.datasite_of(metadata.dst_node_id)
        if metadata.ttl <= 0:
            raise GridError(f"message to {datasite} has a non-positive ttl {metadata.ttl}")
        message_id = self._new_message_id(run_id, datasite, metadata)
        metadata.__dict__["_message_id"] = message_id  # Metadata has no public setter
        if metadata.run_id != run_id:
            metadata.__dict__["_run_id"] = run_id
        if metadata.src_node_id != SERVER_NODE_ID:
            metadata.__dict__["_src_node_id"] = SERVER_NODE_ID
        claimed = self._claim(datasite, metadata)
        if claimed is not None:
            pending = self._adopt(claimed, datasite, metadata)
            message_id = claimed.message_id
        else:
            pending = self._send(datasite, message, metadata)
        if self.liveness is not None:
            if self.liveness.is_lost(datasite):
                pending = replace(pending, give_up_at=time.time() + self.liveness.lost_after)
            self.liveness.sent(datasite)
        with self._lock:
            self._pending[message_id] = pending
            self._by_future[pending.future_id] = message_id
        self._notify(
            MessagePushed(
                run_id=run_id,
                message_id=message_id,
                datasite=datasite,
                message_type=metadata.message_type,
                group_id=metadata.group_id,
            )
        )
        return message_id

    def _new_message_id(self, run_id: int, datasite: str, metadata: Metadata) -> str:
        """A fresh random id; with a journal, the same id for the same message after a restart."""
        if self.journal is None:
            return uuid.uuid4().hex
        kind = (self.epoch, datasite, metadata.message_type, metadata.group_id)
        with self._lock:
            self._kinds[kind] += 1
            place = self._kinds[kind]
        seed = f"{run_id}|{self.app_name}|{self.endpoint}|{'|'.join(map(str, kind))}|{place}"
        return hashlib.sha256(seed.encode()).hexdigest()[:32]

    def _send(self, datasite: str, message: Message, metadata: Metadata) -> _Pending:
        expires_at = metadata.created_at + metadata.ttl
        frames = tuple(encode_message_frames(message))
        body, envelope_id = self._seal(datasite, frames, expires_at)
        with self._faults():
            with self._sending(metadata.message_id, datasite, body):
                future_id = self.transport.send(
                    datasite, self.app_name, self.endpoint, body, expires_at
                )
            kill_point("message.sent")
            if self.journal is not None:
                self.journal.record(
                    JournalEntry(
                        metadata.message_id,
                        self.epoch,
                        datasite,
                        metadata.message_type,
                        metadata.group_id,
                        future_id,
                        metadata.created_at,
                        metadata.ttl,
                        expires_at,
                        envelope_id,
                    )
                )
                kill_point("message.journaled")
        return _Pending(
            future_id,
            datasite,
            metadata,
            expires_at,
            envelope_id,
            frames=frames if self.channel is not None else (),
            sealed_to=self._sealed_to(datasite),
        )

    def _sealed_to(self, datasite: str) -> bytes:
        """The id of ``datasite``'s current key, as this grid's channel last read it."""
        if self.channel is None:
            return b""
        try:
            return self.channel.peer(datasite).current().kid
        except CryptoError:
            return b""

    @contextlib.contextmanager
    def _sending(self, message_id: str, datasite: str, body: Body) -> Iterator[None]:
        """Report a body's bytes around its hand-over to the transport: 0 of its size before,
        all of it once ``send`` returned (nothing in between: the transport does not say)."""
        total = body_size(body)
        self._transferred("send", message_id, datasite, 0, total)
        yield
        self._transferred("send", message_id, datasite, total, total)

    @contextlib.contextmanager
    def _faults(self) -> Iterator[None]:
        """Remember the first fault of the medium or the journal, and let it through."""
        try:
            yield
        except (MediumError, WorkspaceIOError) as exc:
            with self._lock:
                if self.fault is None:
                    self.fault = exc
            raise

    def _claim(self, datasite: str, metadata: Metadata) -> JournalEntry | None:
        if self.journal is None:
            return None
        return self.journal.claim(self.epoch, datasite, metadata.message_type, metadata.group_id)

    def _adopt(self, entry: JournalEntry, datasite: str, metadata: Metadata) -> _Pending:
        """Take over a message sent before a crash instead of sending it again."""
        metadata.__dict__["_message_id"] = entry.message_id
        metadata.__dict__["_created_at"] = entry.created_at
        metadata.__dict__["_ttl"] = entry.ttl
        stored = (
            _with_message_id(self.journal.stored_reply(entry.message_id))
            if (self.journal is not None and entry.collected)
            else None
        )
        logger.info(
            "resuming message %s to %s (%s, group %s) %s",
            entry.message_id,
            datasite,
            entry.message_type,
            entry.group_id,
            "from its stored reply" if stored else "by polling its future",
        )
        return _Pending(
            entry.future_id, datasite, metadata, entry.expires_at, entry.envelope_id, stored, True
        )

    def _seal(
        self, datasite: str, frames: Sequence[bytes | memoryview], expires_at: float
    ) -> tuple[Body, bytes]:
        """The body to send for an encoded message and its envelope id (``b""`` unless sealed
        natively).

        Plaintext goes to the transport as the codec's frames (joined only for a transport that
        cannot take frames, :func:`~syft_flwr.transport.outgoing_body`), and native sealing
        takes the frames too, so the grid never joins a model. Only syft-crypto's scheme, which
        base64-encodes Flower protobuf, needs the message in one piece.
        """
        if self.channel is None:
            return outgoing_body(self.transport, frames), b""
        if not self.channel.speaks_native(datasite):
            return self.channel.seal_compat(datasite, join_body(frames)), b""
        sealed, envelope_id = self.channel.seal_frames(
            datasite, self.app_name, self.endpoint, frames, expires_at
        )
        return outgoing_body(self.transport, sealed), envelope_id

    def _open(
        self, pending: _Pending, body: ReceivedData, marks: list[ReplayMark]
    ) -> bytes | memoryview | tuple[bytes, ...]:
        """The envelope inside a sealed reply, in the scheme the request went out in; its
        replay-store entry goes to ``marks``, recorded once the reply is kept. Plaintext, the
        body is the envelope, held in memory to decode and journal (:func:`held_body`)."""
        if self.channel is None:
            return held_body(body)
        if not pending.envelope_id:
            return self.channel.open_compat(
                body, sender=pending.datasite, expires_at=pending.expires_at, defer=marks
            )
        return self.channel.open(
            body,
            sender=pending.datasite,
            app=self.app_name,
            endpoint=self.endpoint,
            reply_to=pending.envelope_id,
            defer=marks,
        ).frames

    def pull_messages(self, message_ids: Iterable[str]) -> list[Message]:
        """Collect the replies that are there now, without blocking.

        A message whose TTL ran out without an answer yields an error reply
        (``MESSAGE_UNAVAILABLE``). Unknown or already collected ids are ignored.
        """
        now = time.time()
        replies: list[Message] = []
        for message_id in message_ids:
            with self._lock:
                pending = self._pending.get(message_id)
            if pending is None:
                continue
            if pending.stored is not None:
                replies.append(self._finish(message_id, pending.stored))
                continue
            reply = self.transport.poll(pending.future_id)
            marks: list[ReplayMark] = []
            answer = (
                None if reply is None else self._reply_message(message_id, pending, reply, marks)
            )
            if answer is not None:
                kill_point("reply.opened")
                if reply is not None and reply.status is ReplyStatus.OK:
                    size = len(reply.body)
                    self._transferred("receive", message_id, pending.datasite, size, size)
                replies.append(self._finish(message_id, answer[0], marks, answer[1]))
            elif now >= pending.expires_at:
                replies.append(self._finish(message_id, self._expired(pending)))
        return replies

    def send_and_receive(
        self, messages: Iterable[Message], *, timeout: float | None = None
    ) -> list[Message]:
        """Push ``messages`` and wait for every reply, an expiry, or the timeout.

        The wait ends at the earliest of: all replies in, ``timeout`` (or
        ``SYFT_FLWR_MSG_TIMEOUT`` when ``None``) elapsed, every message's TTL passed.
        Messages still unanswered then get an error reply, so the result always holds one
        reply per message.
        """
        messages = list(messages)
        ids = self.push_messages(messages)
        limit = self.msg_timeout if timeout is None else max(0.0, timeout)
        give_up_at = time.time() + limit
        self._report_start(messages, ids, give_up_at)
        # A claimed message's reply may have arrived before this process was watching for it,
        # so no notification will come: collect what is there now (and let the transport adopt
        # the future, so a later reply does notify).
        with self._lock:
            claimed = [mid for mid in ids if mid in self._pending and self._pending[mid].claimed]
            waiting = _Waiting(self._pending, ids)
        replies = self.pull_messages(claimed) if claimed else []
        for message_id in claimed:
            self._settle(waiting, message_id)
        liveness_due = 0.0
        while waiting:
            now = time.time()
            replies.extend(self._expire_due(waiting, now, give_up_at))
            if not waiting:
                break
            if self._send_refused_again(waiting, now):
                continue  # new futures: wait on those
            next_deadline = min(give_up_at, waiting.next_deadline())
            if self.liveness is not None:
                # the tracker scans every datasite: only when one of them can be lost
                if now >= liveness_due:
                    self.liveness.check()
                    liveness_due = now + self.liveness.next_check_in()
                next_deadline = min(next_deadline, liveness_due)
            watched, repoll = self._watch(waiting)
            if repoll or self._has_refused(waiting):
                next_deadline = min(next_deadline, now + self.transport.settings.poll_interval)
            ready = self.transport.wait_ready(watched, max(0.0, next_deadline - now)) | repoll
            for future_id in ready:
                found = waiting.message_of.get(future_id)
                if found is not None:
                    replies.extend(self.pull_messages([found]))
                    self._settle(waiting, found)
        self._report_round(messages, replies)
        return replies

    def _settle(self, waiting: _Waiting, message_id: str) -> None:
        """Bring ``waiting`` up to date for one message: gone once collected, on its new
        future once sent again."""
        with self._lock:
            pending = self._pending.get(message_id)
        if pending is None:
            waiting.drop(message_id)
        elif waiting.future_of.get(message_id) != pending.future_id:
            waiting.move(message_id, pending.future_id)

    def _has_refused(self, waiting: _Waiting) -> bool:
        with self._lock:
            return any(mid in waiting for mid in self._refused)

    def _send_refused_again(self, waiting: _Waiting, now: float) -> bool:
        """Seal and send again the refused messages whose datasite's document changed (or
        whose refusal is :data:`RESEND_AFTER` old): a stale key was the likely cause.

        :return: whether a message was sent again (or given up on): its future changed.
        """
        with self._lock:
            refused = [(mid, refusal) for mid, refusal in self._refused.items() if mid in waiting]
        changed = False
        for message_id, refusal in refused:
            with self._lock:
                pending = self._pending.get(message_id)
            if pending is None:
                waiting.drop(message_id)
                continue
            fresh = self._sealed_to(pending.datasite) != pending.sealed_to
            patience = max(RESEND_AFTER, 2 * self.transport.capabilities.delivery_latency)
            if not fresh and now - refusal.at < patience:
                continue
            changed = True
            try:
                self._resend(message_id, pending)
            except SyftFlwrError as exc:
                logger.warning("cannot send %s to %s again: %s", message_id, pending.datasite, exc)
                with self._lock:
                    self._refused.pop(message_id, None)
                self._finish(message_id, self._cannot_open(pending, f"{refusal.detail}; {exc}"))
            self._settle(waiting, message_id)
        return changed

    def _resend(self, message_id: str, pending: _Pending) -> None:
        """Seal the message again (with the datasite's current key) and send it anew."""
        body, envelope_id = self._seal(pending.datasite, pending.frames, pending.expires_at)
        with self._faults():
            with self._sending(message_id, pending.datasite, body):
                future_id = self.transport.send(
                    pending.datasite, self.app_name, self.endpoint, body, pending.expires_at
                )
            if self.journal is not None:
                metadata = pending.metadata
                self.journal.record(
                    JournalEntry(
                        message_id,
                        self.epoch,
                        pending.datasite,
                        metadata.message_type,
                        metadata.group_id,
                        future_id,
                        metadata.created_at,
                        metadata.ttl,
                        pending.expires_at,
                        envelope_id,
                    )
                )
        resent = replace(
            pending,
            future_id=future_id,
            envelope_id=envelope_id,
            sealed_to=self._sealed_to(pending.datasite),
            resends=pending.resends + 1,
        )
        with self._lock:
            self._refused.pop(message_id, None)
            self._pending[message_id] = resent
            self._by_future.pop(pending.future_id, None)
            self._by_future[future_id] = message_id
        self.transport.forget(pending.future_id)
        logger.info(
            "sent %s to %s again (%d), sealed to its current key",
            message_id,
            pending.datasite,
            resent.resends,
        )

    def _watch(self, waiting: _Waiting) -> tuple[set[str], set[str]]:
        """The futures to wait on, and those to poll again at the poll interval.

        A future whose reply was ignored still holds that reply: a transport that cannot
        notify would report it ready at once, forever, so it is polled at the poll interval
        instead; a notifying transport wakes when the reply is replaced.
        """
        if self.transport.capabilities.notifies:
            return waiting.futures, set()
        with self._lock:
            repoll = {waiting.future_of[mid] for mid in self._ignored if mid in waiting}
        return (waiting.futures - repoll if repoll else waiting.futures), repoll

    def discard(self, message_ids: Iterable[str]) -> None:
        """Stop waiting for the replies to ``message_ids`` (fire and forget).

        The messages still reach their datasites; their replies are dropped by the transport.
        Unknown or already collected ids are ignored.
        """
        for message_id in message_ids:
            with self._lock:
                pending = self._pending.pop(message_id, None)
                self._ignored.pop(message_id, None)
                if pending is not None:
                    self._by_future.pop(pending.future_id, None)
            if pending is not None:
                self.transport.forget(pending.future_id)

    def _expire_due(self, waiting: _Waiting, now: float, give_up_at: float) -> list[Message]:
        """Settle the messages whose deadline passed (all of them once ``give_up_at`` did)."""
        replies: list[Message] = []
        for message_id in waiting.all() if now >= give_up_at else waiting.due(now):
            waiting.drop(message_id)
            with self._lock:
                pending = self._pending.get(message_id)
            if pending is None:
                continue
            if now >= pending.expires_at:
                replies.extend(self.pull_messages([message_id]))
            elif now >= give_up_at:
                late = self.pull_messages([message_id])
                replies.extend(late or [self._finish(message_id, self._timed_out(pending))])
            elif now >= pending.give_up_at:
                late = self.pull_messages([message_id])
                replies.extend(late or [self._finish(message_id, self._lost(pending))])
        return replies

    # -- reply construction -------------------------------------------------------------

    def _finish(
        self,
        message_id: str,
        reply: Message,
        marks: Sequence[ReplayMark] = (),
        envelope: bytes | memoryview | tuple[bytes, ...] | None = None,
    ) -> Message:
        """Hand ``reply`` over: journal it, then record it as seen, then forget its future.

        That order is the one commit point of a collected reply: killed before the journal
        write, the restarted server opens the reply again; after it, it uses the stored one.
        The journal stores ``envelope``, the bytes the reply was decoded from, as they are; only
        a reply the grid made itself (an expiry, a refusal) is encoded for it.
        """
        with self._lock:
            pending = self._pending.pop(message_id, None)
            self._ignored.pop(message_id, None)
            self._refused.pop(message_id, None)
            if pending is not None:
                self._by_future.pop(pending.future_id, None)
        if pending is not None:
            if self.journal is not None and pending.stored is None:
                with self._faults():
                    self.journal.collected(
                        message_id,
                        encode_message(reply) if envelope is None else join_body(envelope),
                    )
                kill_point("reply.journaled")
            self._record_seen(marks)
            self.transport.forget(pending.future_id)
            self._notify(
                ReplyPulled(
                    run_id=self.run.run_id,
                    message_id=message_id,
                    datasite=pending.datasite,
                    error_code=reply.error.code if reply.has_error() else None,
                )
            )
        return reply

    def _record_seen(self, marks: Sequence[ReplayMark]) -> None:
        if self.channel is None or not marks:
            return
        for mark in marks:
            try:
                self.channel.record(mark)
            except ReplayError:
                # recorded by the process that collected it before a crash: the journal,
                # which holds the reply, is what counts
                logger.debug("reply %s was recorded as seen already", mark.message_id.hex())
        kill_point("reply.accepted")

    def _reply_message(
        self, message_id: str, pending: _Pending, reply: Reply, marks: list[ReplayMark]
    ) -> tuple[Message, bytes | memoryview | tuple[bytes, ...] | None] | None:
        """The strategy's reply for a transport reply, with the envelope it was decoded from
        (``None``: the grid made it); ``None`` for a foreign one (ignored)."""
        if reply.status is ReplyStatus.EXPIRED:
            self._forget_keys(pending.datasite)
            return self._expired(pending), None
        if reply.status is ReplyStatus.REJECTED:
            self._forget_keys(pending.datasite)
            with self._lock:
                self.refusals[pending.datasite] = reply.detail
            if self.liveness is not None:
                self.liveness.answered(pending.datasite)
            if UNOPENABLE not in reply.detail or self.channel is None:
                rejected = self._error(
                    pending,
                    ErrorCode.NODE_UNAVAILABLE,
                    f"{pending.datasite} rejected the message: {reply.detail}",
                )
                return rejected, None
            if pending.resends >= MAX_RESENDS or not pending.frames:
                return self._cannot_open(pending, reply.detail), None
            with self._lock:
                if message_id not in self._refused:
                    logger.warning(
                        "%s cannot open message %s (%s); reading its key document again",
                        pending.datasite,
                        message_id,
                        reply.detail,
                    )
                self._refused[message_id] = _Refusal(reply.detail, time.time())
            return None
        try:
            envelope = self._open(pending, reply.body, marks)
            message = decode_message(envelope)
        except (CryptoError, WireFormatError) as exc:
            self._ignore(message_id, pending, f"{type(exc).__name__}: {exc}")
            return None
        problem = self._check_reply(pending, message)
        if problem:
            self._ignore(message_id, pending, problem)
            return None
        if self.liveness is not None:
            self.liveness.answered(pending.datasite)
        with self._lock:
            self.answered.add(pending.datasite)
        if self.port is not None:
            with self._faults():  # the port persists it: a workspace fault is the round's
                self.port.answered(pending.datasite)
        return _with_message_id(message), envelope

    def _forget_keys(self, datasite: str) -> None:
        """A datasite refused or did not answer: read its key document again next time."""
        if self.channel is not None:
            self.channel.forget_peer(datasite)

    def _cannot_open(self, pending: _Pending, detail: str) -> Message:
        return self._error(
            pending,
            ErrorCode.NODE_UNAVAILABLE,
            f"{pending.datasite} cannot open our messages: {detail}",
        )

    def _ignore(self, message_id: str, pending: _Pending, reason: str) -> None:
        """Note a foreign reply (logged once per message); the message keeps waiting."""
        with self._lock:
            first = self._ignored.get(message_id) != reason
            self._ignored[message_id] = reason
        if first:
            logger.warning(
                "ignoring a reply at %s's answer to message %s, still waiting for the real one: %s",
                pending.datasite,
                pending.metadata.message_id,
                reason,
            )

    def _check_reply(self, pending: _Pending, message: Message) -> str | None:
        metadata = message.metadata
        expected_src = self._node_of[pending.datasite]
        if metadata.reply_to_message_id != pending.metadata.message_id:
            return (
                f"reply answers message {metadata.reply_to_message_id!r}, "
                f"expected {pending.metadata.message_id!r}"
            )
        if metadata.src_node_id != expected_src:
            return f"reply claims node {metadata.src_node_id}, expected {expected_src}"
        if metadata.run_id != pending.metadata.run_id:
            return f"reply is for run {metadata.run_id}, expected {pending.metadata.run_id}"
        return None

    def _expired(self, pending: _Pending) -> Message:
        with self._lock:
            ignored = self._ignored.get(pending.metadata.message_id)
            refused = self._refused.pop(pending.metadata.message_id, None)
        if refused is not None:
            return self._cannot_open(pending, refused.detail)
        return self._error(
            pending,
            ErrorCode.MESSAGE_UNAVAILABLE,
            f"no reply from {pending.datasite} within the message TTL "
            f"({pending.metadata.ttl:.1f}s)"
            + (f"; ignored a reply that was not its answer ({ignored})" if ignored else ""),
        )

    def _lost(self, pending: _Pending) -> Message:
        grace = self.liveness.lost_after if self.liveness is not None else 0.0
        return self._error(
            pending,
            ErrorCode.NODE_UNAVAILABLE,
            f"{pending.datasite} is lost and did not come back within {grace:g} s",
        )

    def _timed_out(self, pending: _Pending) -> Message:
        return self._error(
            pending,
            ErrorCode.MESSAGE_UNAVAILABLE,
            f"no reply from {pending.datasite} before the timeout",
        )

    def _error(self, pending: _Pending, code: int, reason: str) -> Message:
        sent = pending.metadata
        now = time.time()
        metadata = Metadata(
            run_id=sent.run_id,
            message_id=uuid.uuid4().hex,
            src_node_id=sent.dst_node_id,
            dst_node_id=SERVER_NODE_ID,
            reply_to_message_id=sent.message_id,
            group_id=sent.group_id,
            created_at=now,
            ttl=max(pending.expires_at - now, 1e-3),
            message_type=sent.message_type,
        )
        return message_with_metadata(metadata, error=Error(code=code, reason=reason))

    # -- stop signal --------------------------------------------------------------------

    def send_stop_signal(
        self,
        group_id: str = STOP_GROUP_ID,
        reason: str = "Server stopped",
        ttl: float = DEFAULT_STOP_TTL,
    ) -> list[str]:
        """Send the stop signal to every datasite; return the datasites it was handed to.

        Sending to one datasite failing does not keep the others from being told.
        """
        delivered: list[str] = []
        for datasite in self.datasites:
            try:
                self.send_stop(datasite, group_id=group_id, reason=reason, ttl=ttl)
            except SyftFlwrError as exc:
                logger.error("could not send the stop signal to %s: %s", datasite, exc)
                continue
            delivered.append(datasite)
        return delivered

    def send_stop(
        self,
        datasite: str,
        *,
        group_id: str = STOP_GROUP_ID,
        reason: str = "Server stopped",
        ttl: float = DEFAULT_STOP_TTL,
    ) -> None:
        """Send the stop signal to ``datasite`` (its answer, if any, is not awaited).

        :raises GridError: ``datasite`` is not a datasite of this grid.
        :raises SyftFlwrError: it could not be sealed or handed to the transport.
        """
        run_id = self.run.run_id
        metadata = Metadata(
            run_id=run_id,
            message_id=uuid.uuid4().hex,
            src_node_id=SERVER_NODE_ID,
            dst_node_id=self.node_id_of(datasite),
            reply_to_message_id="",
            group_id=group_id,
            created_at=time.time(),
            ttl=ttl,
            message_type=SYSTEM_MESSAGE_TYPE,
        )
        message = message_with_metadata(metadata, content=build_stop_content(reason))
        body, _ = self._seal(datasite, encode_message_frames(message), metadata.created_at + ttl)
        future_id = self.transport.send(
            datasite, self.app_name, self.endpoint, body, metadata.created_at + ttl
        )
        self.transport.forget(future_id)
        self._notify(StopSignalSent(run_id=run_id, datasite=datasite, reason=reason))

    # -- hooks --------------------------------------------------------------------------

    def _transferred(
        self, direction: str, message_id: str, datasite: str, done: int, total: int
    ) -> None:
        self._notify(
            TransferProgress(
                run_id=self.run.run_id,
                direction=direction,
                message_id=message_id,
                datasite=datasite,
                done=done,
                total=total,
            )
        )

    def _report_start(self, sent: list[Message], ids: list[str], give_up_at: float) -> None:
        if not sent or not self.reports_rounds:
            return
        with self._lock:
            deadlines = [
                min(pending.expires_at, pending.give_up_at)
                for pending in (self._pending.get(mid) for mid in ids)
                if pending is not None
            ]
        self._notify(
            ExchangeStarted(
                run_id=self.run.run_id,
                group_id=sent[0].metadata.group_id,
                message_type=sent[0].metadata.message_type,
                expected=len(sent),
                deadline=min(give_up_at, max(deadlines, default=give_up_at)),
            )
        )

    def _report_round(self, sent: list[Message], replies: list[Message]) -> None:
        if not sent or not self.reports_rounds:
            return
        failures = sum(1 for reply in replies if reply.has_error())
        self._notify(
            ExchangeFinished(
                run_id=self.run.run_id,
                group_id=sent[0].metadata.group_id,
                replies=len(replies) - failures,
                failures=failures,
            )
        )

    def _notify(self, event: LifecycleEvent) -> None:
        fire_event(event, self._plugins)
        if self.port is not None:
            try:
                self.port.observe(event)
            except Exception:
                logger.exception("the grid's port raised on %s; ignoring it", event.name)


def claim_task_identity(run_id: int, *, force: bool = False) -> None:
    """Make this process Flower's server task of ``run_id``.

    Flower's ``Message(...)`` (and so ``grid.create_message``) reads the run and node ids from
    the process-global ``TaskIdentity``, which Flower's own server sets. On the reference API's
    route (``SyftGrid(...)``, ``set_run``, then messages built by hand) nothing else sets it,
    so ``set_run`` claims it unless something in the process already has (``force``: always).
    """
    try:
        TaskIdentity.run_id  # noqa: B018 - raises while unset
        if not force:
            return
    except RuntimeError:
        pass
    TaskIdentity.run_id = run_id
    TaskIdentity.node_id = SERVER_NODE_ID
    TaskIdentity.task_id = 1


def _with_message_id(message: Message) -> Message:
    """``message`` with a fresh id if it has none (syft-flwr 0.5.x replies carry an empty one);
    applied to a decoded reply and to one read back from the journal alike."""
    if not message.metadata.message_id:
        message.metadata.__dict__["_message_id"] = uuid.uuid4().hex
    return message
