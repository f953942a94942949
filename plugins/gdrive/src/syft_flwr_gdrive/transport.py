"""``GDriveTransport``: the syft-flwr transport contract over Google Drive v3.

Sending writes ``<id>.request`` into our outbox to the peer; the peer's answer appears as
``<id>.response`` in its outbox to us, which Drive shows us because the peer shared it. One
background poller lists every inbox endpoint folder in one query per poll (see
:mod:`~syft_flwr_gdrive.folders` and :mod:`~syft_flwr_gdrive.schedule`), downloads replies to
our futures, and queues requests for :meth:`GDriveTransport.run`, which calls the handlers and
uploads their answers. The poller only runs while something is expected: futures are pending
or the serving loop runs.

Cleanup follows Drive's rule that only an owner can delete: we delete our own requests once
their reply arrived (or they expired after being forgotten), and our own responses once the
request they answer has disappeared from two consecutive listings (the sender took the reply),
or expired. Leftovers of an earlier process are swept at start-up with one indexed query.

Nothing is lost under back-pressure: every call retries with bounded backoff (see
:mod:`~syft_flwr_gdrive.retry`), creates are idempotent, and a poll that fails is repeated.

Everything listed is someone else's: an object named like a message in an inbox is only taken
for one once :mod:`~syft_flwr_gdrive.listing` checked it (a file with content, owned by the peer,
with a size and appProperties as we write them); anything else is ignored with one warning
(:mod:`~syft_flwr_gdrive.ignored`) and never settles a future, so the real reply is still
collected. A request is screened (:meth:`~syft_flwr.transport.Transport.screen_request`, with the
owner as sender) and its listed size checked against ``max_body_size`` before it is downloaded;
a reply larger than that is not a reply; and no download reads past the listed size.
"""

from __future__ import annotations

import logging
import math
import threading
import time
import uuid
from collections import deque
from collections.abc import Collection
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

from syft_flwr.addresses import check_app, check_datasite, check_endpoint
from syft_flwr.errors import (
    BodyTooLargeError,
    RequestRefusedError,
    SyftFlwrError,
    TransportError,
)
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
    body_frames,
    body_size,
)
from syft_flwr_gdrive import bodies, keydocs, local
from syft_flwr_gdrive.api import DriveApi
from syft_flwr_gdrive.auth import load_credentials
from syft_flwr_gdrive.errors import CredentialsError, DriveContentError
from syft_flwr_gdrive.folders import Endpoint, FolderTree
from syft_flwr_gdrive.ignored import IgnoredFiles
from syft_flwr_gdrive.layout import (
    FOLDER_MIME,
    KIND_REQUEST,
    KIND_RESPONSE,
    MARKER,
    PAIR_PREFIX,
    PROP_DETAIL,
    PROP_EXPIRES,
    PROP_STATUS,
    QUERY_UNSAFE,
    message_name,
    quote,
)
from syft_flwr_gdrive.listing import Foreign, MessageFile, classify, expiry
from syft_flwr_gdrive.options import WIRE_SYFT_FLWR_P2P, GDriveOptions
from syft_flwr_gdrive.retry import Retrier, RetryPolicy
from syft_flwr_gdrive.schedule import PollSchedule, PollStats
from syft_flwr_gdrive.service import DriveService

__all__ = ["GDriveTransport"]

logger = logging.getLogger(__name__)

_MAX_PARENTS_PER_QUERY = 50
"""Parent clauses per list query; beyond that a poll makes more than one request."""
_ABSENT_POLLS = 2
"""Listings in a row a request must be missing from before we delete our response to it."""
_DETAIL_BYTES = 124 - len(PROP_DETAIL)
"""An appProperties entry holds at most 124 bytes of key plus value (UTF-8)."""
_MAX_DETAIL = 4096
"""Longest refusal reason kept from a peer's reply."""
_CLOSE_TIMEOUT = 10.0


@dataclass
class _Future:
    peer: str
    app: str
    endpoint: str
    expires_at: float
    file_id: str
    reply: Reply | None = None
    fetching: bool = False


@dataclass
class _Seen:
    """An inbox request we know of: queued, handled, or skipped."""

    expires_at: float
    response_id: str | None = None
    absent: int = 0


@dataclass(frozen=True)
class _Delivery:
    key: tuple[str, str, str, str]
    file_id: str
    size: int
    created_at: float
    expires_at: float


@dataclass
class _Cycle:
    """What one poll learnt (filled while holding the lock, acted on without it)."""

    present: set[tuple[str, str, str, str]] = field(default_factory=set)
    replies: list[MessageFile] = field(default_factory=list)
    progress: bool = False


class GDriveTransport(Transport):
    """Google Drive transport (syft-flwr's "p2p" Drive layout), polling.

    Runs encrypt end to end by default (key documents: :mod:`~syft_flwr_gdrive.keydocs`); the
    ``syft-flwr-p2p`` wire carries no encryption, so it needs
    ``SYFT_FLWR_ENCRYPTION_ENABLED=false`` and refuses to publish keys otherwise.

    :param settings: identity (an email), the ``[tool.syft_flwr.gdrive]`` table and the poll
        interval (see :class:`~syft_flwr_gdrive.options.GDriveOptions` and the README).
    :raises InvalidAddressError: the identity is not a safe email.
    :raises ConfigError: an option is malformed or no credentials are configured.
    """

    encrypt_by_default: ClassVar[bool] = True

    name: ClassVar[str] = "gdrive"
    description: ClassVar[str] = (
        "Google Drive v3 (syft-flwr's p2p folder layout), polling; for Colab-style users."
    )

    @classmethod
    def local_options(cls, workdir: Path) -> dict[str, Any]:
        """A fake Drive on 127.0.0.1 for this run, one account per participant
        (:mod:`~syft_flwr_gdrive.local`)."""
        return local.local_options(workdir)

    def __init__(self, settings: TransportSettings) -> None:
        super().__init__(settings)
        check_datasite(settings.identity, forbid=QUERY_UNSAFE)
        self.options = GDriveOptions.from_settings(settings)
        options = self.options
        self._retrier = Retrier(
            RetryPolicy(options.retry_attempts, options.retry_base_delay, options.retry_max_delay),
            settings.identity,
        )
        service = DriveService(load_credentials(options), options.api_root, options.http_timeout)
        self.api = DriveApi(
            service,
            self._retrier,
            resumable_threshold=options.resumable_threshold,
            chunk_size=options.chunk_size,
            download_chunk_size=options.download_chunk_size,
        )
        self.folders = FolderTree(
            self.api,
            settings.identity,
            root_name=options.root_folder_name,
            root_id=options.root_folder_id,
            share_role=options.share_role,
            discovery_interval=options.discovery_interval,
        )
        self._capabilities = TransportCapabilities(
            notifies=False,
            max_body_size=options.max_body_size,
            persistent=False,
            screens_requests=True,
            accepts_frames=True,
            # Not accepts_streams: a resumable upload re-sends a chunk after a failed request,
            # and a one-pass sealed body cannot be read twice; the core joins it first.
        )
        self.stats = PollStats()
        self._schedule = PollSchedule(options.poll_interval, options.max_poll_interval)
        self._cond = threading.Condition()
        self._futures: dict[str, _Future] = {}
        self._handlers: dict[tuple[str, str], RequestHandler] = {}
        self._seen: dict[tuple[str, str, str, str], _Seen] = {}
        self._queue: deque[_Delivery] = deque()
        self._doomed: list[tuple[float, str]] = []
        self._ignored = IgnoredFiles(settings.identity)
        self._running = False
        self._stop_requested = False
        self._closed = False
        self._poller: threading.Thread | None = None
        self._verified = False
        self._verify_lock = threading.Lock()

    @property
    def capabilities(self) -> TransportCapabilities:
        """Polling (Drive cannot notify), not persistent, not encrypted by the transport (the
        core encrypts); requests are screened before their body is downloaded."""
        return self._capabilities

    # -- sending side -------------------------------------------------------------------------

    def send(self, datasite: str, app: str, endpoint: str, body: Body, expires_at: float) -> str:
        """Upload ``body`` as a request into our outbox to ``datasite``; return the future id.

        Frames are streamed into the upload (never joined whole); with
        ``wire = "syft-flwr-p2p"`` an envelope is converted to Flower protobuf first.

        Creates (and shares) the outbox folders on the first message to a peer.

        :raises InvalidAddressError: an address part is unsafe.
        :raises BodyTooLargeError: the body exceeds ``max_body_size``.
        :raises TransportError: the transport is closed, or Drive failed for good.
        """
        check_datasite(datasite, forbid=QUERY_UNSAFE)
        check_app(app)
        check_endpoint(endpoint)
        if math.isnan(expires_at):
            raise ValueError("expires_at must be a time, not NaN")
        limit = self._capabilities.max_body_size
        size = body_size(body)
        if limit is not None and size > limit:
            raise BodyTooLargeError(
                f"body of {size} bytes exceeds the gdrive transport's max_body_size "
                f"of {limit} bytes"
            )
        if self._closed:
            raise TransportError(f"gdrive transport of {self.identity} is closed")
        self._verify_identity()
        payload = bodies.to_protobuf(body) if self.options.wire == WIRE_SYFT_FLWR_P2P else body
        future_id = str(uuid.uuid4())
        folder = self.folders.outbox(datasite, app, endpoint)
        file_id = self.api.upload(
            message_name(future_id, KIND_REQUEST),
            folder,
            payload,
            {MARKER[0]: MARKER[1], PROP_EXPIRES: repr(expires_at)},
            f"sending a request to {datasite}",
        )
        with self._cond:
            self._futures[future_id] = _Future(datasite, app, endpoint, expires_at, file_id)
            self._schedule.poke()
            self._cond.notify_all()
        self._start_poller()
        return future_id

    def poll(self, future_id: str) -> Reply | None:
        """The reply to ``future_id`` if the poller has fetched it (no API call); ``EXPIRED``
        once ``expires_at`` passed without one (a later answer is then ignored)."""
        with self._cond:
            return self._reply_locked(future_id)

    def _reply_locked(self, future_id: str) -> Reply | None:
        future = self._futures.get(future_id)
        if future is None:
            return None
        if future.reply is None and time.time() >= future.expires_at:
            return Reply(
                future_id, ReplyStatus.EXPIRED, detail="no reply before the request expired"
            )
        return future.reply

    def forget(self, future_id: str) -> None:
        """Drop the future; our request file is deleted by the poller once it is answered or
        expired (an unanswered one stays until then, so a stop signal is still delivered)."""
        with self._cond:
            future = self._futures.pop(future_id, None)
            if future is not None:
                not_before = 0.0 if future.reply is not None else future.expires_at
                self._doomed.append((not_before, future.file_id))
                self._cond.notify_all()
        self.discard_ready(future_id)

    def wait_ready(self, future_ids: Collection[str], timeout: float) -> set[str]:
        """Block until one of ``future_ids`` has a reply (or expired), or ``timeout`` passes.

        Woken by the poller the moment it has fetched a reply, so waiting adds no latency on
        top of Drive's.
        """
        wanted = set(future_ids)
        deadline = time.monotonic() + max(0.0, timeout)
        with self._cond:
            while True:
                hits = {fid for fid in wanted if self._reply_locked(fid) is not None}
                remaining = deadline - time.monotonic()
                if hits or remaining <= 0:
                    return hits
                expiries = [self._futures[f].expires_at for f in wanted if f in self._futures]
                if expiries:
                    remaining = min(remaining, max(0.0, min(expiries) - time.time()) + 0.001)
                self._cond.wait(remaining)

    # -- serving side -------------------------------------------------------------------------

    def serve(self, app: str, endpoint: str, handler: RequestHandler) -> None:
        """Register ``handler`` for requests to ``app``/``endpoint`` from any peer."""
        check_app(app)
        check_endpoint(endpoint)
        if not callable(handler):
            raise TypeError(f"handler {handler!r} is not callable")
        with self._cond:
            if self._closed:
                raise TransportError(f"gdrive transport of {self.identity} is closed")
            self._handlers[(app, endpoint)] = handler
            self._schedule.poke(immediately=True)
            self._cond.notify_all()

    def run(self) -> None:
        """Deliver requests to the handlers, oldest first, until :meth:`stop`.

        A :meth:`stop` that arrives before ``run`` makes it return at once, so a stop racing a
        thread about to call ``run`` is never lost.

        :raises TransportError: ``run`` is already running in another thread.
        """
        with self._cond:
            if self._running:
                raise TransportError(f"{self.identity}: run() is already running")
            if self._closed:
                return
            self._running = True
            self._schedule.poke(immediately=True)
            self._cond.notify_all()
        try:
            self._verify_identity()
            self._start_poller()
            while True:
                with self._cond:
                    while not (self._queue or self._stop_requested or self._closed):
                        self._cond.wait()
                    if self._stop_requested or self._closed:
                        return
                    delivery = self._queue.popleft()
                self._deliver(delivery)
        finally:
            with self._cond:
                self._running = False
                self._stop_requested = False

    def stop(self) -> None:
        """Make :meth:`run` return after the request in hand; idempotent."""
        with self._cond:
            self._stop_requested = True
            self._cond.notify_all()

    def close(self) -> None:
        """Stop, delete our answered requests, end the poller. Idempotent.

        Unanswered requests stay on Drive until they expire, so messages sent just before
        closing (the stop signal) still reach their recipients.
        """
        with self._cond:
            if self._closed:
                return
            self._closed = True
            self._stop_requested = True
            self._cond.notify_all()
            poller = self._poller
        if poller is not None:
            poller.join(_CLOSE_TIMEOUT)
        self._delete_due()

    # -- the poller ---------------------------------------------------------------------------

    def _start_poller(self) -> None:
        with self._cond:
            if self._poller is not None or self._closed:
                return
            self._poller = threading.Thread(
                target=self._poll_loop, name=f"gdrive-poller-{self.identity}", daemon=True
            )
            self._poller.start()

    def _awaited_locked(self) -> set[Endpoint]:
        """Inbox endpoints where answers to our live, unanswered futures will appear."""
        now = time.time()
        return {
            Endpoint(f.peer, f.app, f.endpoint)
            for f in self._futures.values()
            if f.reply is None and f.expires_at > now
        }

    def _active_locked(self) -> bool:
        return bool(self._awaited_locked()) or (self._running and bool(self._handlers))

    def _poll_loop(self) -> None:
        try:
            self._sweep_leftovers()
        except Exception:  # a failed sweep only leaves garbage behind
            logger.exception("%s: unexpected error while sweeping old messages", self.identity)
        while True:
            with self._cond:
                while not self._closed:
                    now = time.monotonic()
                    due_deletions = any(t <= time.time() for t, _ in self._doomed)
                    if due_deletions or (
                        self._active_locked() and self._schedule.wait_time(now) == 0
                    ):
                        break
                    self._cond.wait(
                        self._schedule.wait_time(now) if self._active_locked() else None
                    )
                if self._closed:
                    return
                poll_now = self._active_locked()
            try:
                self._delete_due()
                if poll_now:
                    self._poll_once()
            except Exception:  # the poller must outlive any surprise, or waiters would hang
                logger.exception("%s: unexpected error while polling Drive", self.identity)
                with self._cond:
                    self._schedule.failed()

    def _poll_once(self) -> None:
        with self._cond:
            served = set(self._handlers) if self._running else set()
            awaited = self._awaited_locked()
        leaves, partial, discover = self.folders.frontier(served, awaited)
        try:
            files, complete, requests = self._list(list(leaves) + partial, discover)
        except SyftFlwrError as exc:
            logger.warning("%s: polling Drive failed, will retry: %s", self.identity, exc)
            with self._cond:
                self._schedule.failed()
            return
        if requests:
            self.stats.polls += 1
            self.stats.list_requests += requests
            self.stats.folders_listed += len(leaves) + len(partial) + int(discover)
        discovered = self.folders.learn(files)
        cycle = self._sort(files, leaves, served)
        for message in cycle.replies:
            self._fetch_reply(message)
        if complete:
            self._reconcile(cycle.present)
        with self._cond:
            self._schedule.polled(bool(awaited) or cycle.progress or discovered > 0)
            self._cond.notify_all()

    def _list(self, folders: list[str], discover: bool) -> tuple[list[dict[str, Any]], bool, int]:
        clauses = [f"{quote(folder)} in parents" for folder in folders]
        groups = [
            clauses[i : i + _MAX_PARENTS_PER_QUERY]
            for i in range(0, len(clauses), _MAX_PARENTS_PER_QUERY)
        ] or [[]]
        if discover:
            groups[-1] = [
                *groups[-1],
                f"(mimeType = '{FOLDER_MIME}' and name contains {quote(PAIR_PREFIX.rstrip('_'))})",
            ]
        files: list[dict[str, Any]] = []
        complete = True
        requests = 0
        for group in groups:
            if not group:
                continue
            listing = self.api.search(
                f"trashed = false and ({' or '.join(group)})", "listing the inboxes"
            )
            files.extend(listing.files)
            complete = complete and listing.complete
            requests += listing.requests
        return files, complete, requests

    def _sort(
        self, files: list[dict[str, Any]], leaves: dict[str, Endpoint], served: set[tuple[str, str]]
    ) -> _Cycle:
        """Match listed message files to futures and handlers; ignore foreign objects."""
        cycle = _Cycle()
        now = time.time()
        with self._cond:
            for file in sorted(files, key=lambda f: str(f.get("createdTime", ""))):
                seen = classify(file, leaves)
                if seen is None or seen.file_id in self._ignored:
                    continue
                if isinstance(seen, Foreign):
                    where = f"{seen.name!r} in the inbox from {seen.endpoint.peer}"
                    self._ignored.ignore(seen.file_id, where, seen.reason)
                elif seen.kind == KIND_RESPONSE:
                    self._match_reply_locked(seen, cycle, now)
                elif (seen.endpoint.app, seen.endpoint.endpoint) in served:
                    self._queue_request_locked(seen, cycle, now)
            if cycle.progress:
                self._cond.notify_all()
        cycle.progress = cycle.progress or bool(cycle.replies)
        return cycle

    def _match_reply_locked(self, message: MessageFile, cycle: _Cycle, now: float) -> None:
        """Fetch ``message`` if it answers a live future of ours, from where it was sent to."""
        future = self._futures.get(message.message_id)
        origin = message.endpoint
        if (
            future is None
            or future.reply is not None
            or future.expires_at <= now  # a late answer is ignored: it EXPIRED
            or future.fetching
            or (future.peer.lower(), future.app, future.endpoint)
            != (origin.peer.lower(), origin.app, origin.endpoint)
        ):
            return
        limit = self._capabilities.max_body_size
        if limit is not None and message.size > limit:
            self._ignored.ignore(
                message.file_id,
                f"a reply to {message.message_id} from {origin.peer}",
                f"it is {message.size} bytes, over max_body_size={limit}",
            )
            return
        future.fetching = True
        cycle.replies.append(message)

    def _queue_request_locked(self, message: MessageFile, cycle: _Cycle, now: float) -> None:
        """Queue a request not seen before for :meth:`run` (unless it already expired)."""
        origin = message.endpoint
        key = (origin.peer, origin.app, origin.endpoint, message.message_id)
        cycle.present.add(key)
        if key in self._seen:
            return
        self._seen[key] = _Seen(message.expires_at)
        if message.expires_at <= now:
            logger.info("%s: skipping expired request %s", self.identity, message.message_id)
            return
        self._queue.append(
            _Delivery(key, message.file_id, message.size, message.created_at, message.expires_at)
        )
        cycle.progress = True

    def _fetch_reply(self, message: MessageFile) -> None:
        """Download and read one reply candidate; whatever happens, the future is free again
        for the next candidate (a candidate that raised would otherwise hold it forever, and
        the real reply behind it would never be fetched)."""
        future_id = message.message_id
        what = f"fetching the reply to {future_id}"
        reply = None
        try:
            raw = self.api.download(message.file_id, message.size, what)
            reply = None if raw is None else self._read_reply(message, raw)
        except DriveContentError as exc:
            self._ignored.ignore(message.file_id, f"a reply to {future_id}", str(exc))
        except SyftFlwrError as exc:
            logger.warning("%s: %s failed, will retry: %s", self.identity, what, exc)
        except Exception as exc:  # a defect here must not wedge the future
            logger.exception("%s: %s failed unexpectedly", self.identity, what)
            self._ignored.ignore(message.file_id, f"a reply to {future_id}", repr(exc))
        finally:
            with self._cond:
                future = self._futures.get(future_id)
                if future is not None:
                    future.fetching = False
                    if reply is not None and time.time() < future.expires_at:
                        future.reply = reply
                        self._cond.notify_all()
                    else:
                        future = None
        if future is not None:
            self.reply_arrived(future_id)

    def _read_reply(self, message: MessageFile, raw: bytes) -> Reply | None:
        """The reply ``raw`` holds, ``None`` if it is a body that is not what it claims."""
        future_id = message.message_id
        if message.rejected:
            detail = raw.decode("utf-8", "replace") if raw else message.detail
            return Reply(future_id, ReplyStatus.REJECTED, detail=_printable(detail))
        problem = bodies.defect(raw)
        if problem is not None:
            self._ignored.ignore(message.file_id, f"a reply to {future_id}", problem)
            return None
        incoming = bodies.from_drive(raw)
        if incoming.error is not None:
            return Reply(future_id, ReplyStatus.REJECTED, detail=_printable(incoming.error))
        return Reply(future_id, ReplyStatus.OK, body=incoming.body)

    def _reconcile(self, present: set[tuple[str, str, str, str]]) -> None:
        """Forget requests the sender removed; delete our responses to them."""
        now = time.time()
        with self._cond:
            served = set(self._handlers)
            for key, seen in list(self._seen.items()):
                if (key[1], key[2]) not in served:
                    continue
                if key in present:
                    seen.absent = 0
                    continue
                seen.absent += 1
                if seen.absent >= _ABSENT_POLLS or seen.expires_at <= now:
                    del self._seen[key]
                    if seen.response_id is not None:
                        self._doomed.append((0.0, seen.response_id))
            for seen in self._seen.values():
                if seen.response_id is not None and seen.expires_at <= now:
                    self._doomed.append((0.0, seen.response_id))
                    seen.response_id = None

    def _delete_due(self) -> None:
        now = time.time()
        with self._cond:
            due = [file_id for not_before, file_id in self._doomed if not_before <= now]
            self._doomed = [(t, f) for t, f in self._doomed if t > now]
        for file_id in due:
            try:
                self.api.delete(file_id, "deleting a delivered message")
            except SyftFlwrError as exc:
                logger.warning("%s: could not delete %s: %s", self.identity, file_id, exc)

    def _sweep_leftovers(self) -> None:
        """Delete expired messages an earlier process of this account left behind."""
        query = (
            f"'me' in owners and trashed = false and appProperties has "
            f"{{ key={quote(MARKER[0])} and value={quote(MARKER[1])} }}"
        )
        try:
            files = self.api.search(query, "looking for expired messages").files
        except SyftFlwrError as exc:
            logger.warning("%s: could not sweep old messages: %s", self.identity, exc)
            return
        now = time.time()
        with self._cond:
            live = {f.file_id for f in self._futures.values()}
            live |= {s.response_id for s in self._seen.values() if s.response_id}
            self._doomed.extend(
                (0.0, f["id"])
                for f in files
                if expiry(f.get("appProperties")) <= now and f["id"] not in live
            )

    # -- delivering requests --------------------------------------------------------------------

    def _deliver(self, delivery: _Delivery) -> None:
        peer, app, endpoint, request_id = delivery.key
        if time.time() >= delivery.expires_at:  # it waited behind a long handler call
            logger.info("%s: skipping expired request %s", self.identity, request_id)
            return
        refusal = self._screened(delivery)
        if refusal is None:
            refusal = self._oversized(delivery)
        if refusal is not None:
            self._respond(delivery, ReplyStatus.REJECTED, b"", refusal)
            return
        what = f"fetching request {request_id} from {peer}"
        try:
            raw = self.api.download(delivery.file_id, delivery.size, what)
        except DriveContentError as exc:
            self._ignored.ignore(delivery.file_id, f"request {request_id} from {peer}", str(exc))
            return
        except SyftFlwrError as exc:
            logger.error("%s: %s failed: %s", self.identity, what, exc)
            self._unsee(delivery.key)
            return
        if raw is None:  # the sender withdrew it
            return
        incoming = bodies.from_drive(raw)
        request = Request(
            id=request_id,
            sender=peer,
            recipient=self.identity,
            app=app,
            endpoint=endpoint,
            body=incoming.body,
            created_at=delivery.created_at,
            expires_at=delivery.expires_at,
        )
        with self._cond:
            handler = self._handlers.get((app, endpoint))
        if handler is None:
            return
        status, answer, detail = self._call(handler, request)
        if status is None:
            return
        if incoming.protobuf and status is ReplyStatus.OK:
            answer = bodies.to_protobuf(answer)
        self._respond(delivery, status, answer, detail)

    def _screened(self, delivery: _Delivery) -> str | None:
        """The screen's reason to refuse a request, asked before its body is downloaded.

        The sender is the peer whose pair folder the file is in, which
        :func:`~syft_flwr_gdrive.listing.classify` checked is also the file's owner. The
        screen logs its own decisions; one that fails refuses (a broken policy admits nobody).
        """
        peer, app, endpoint, request_id = delivery.key
        head = RequestHead(request_id, peer, self.identity, app, endpoint, delivery.size)
        try:
            reason = self.screen_request(head)
        except Exception as exc:
            logger.exception("%s: the request screen raised on %s", self.identity, request_id)
            return f"the request screen raised {type(exc).__name__}: {exc}"
        if reason is not None:
            logger.debug("%s: screened out request %s from %s", self.identity, request_id, peer)
        return reason

    def _oversized(self, delivery: _Delivery) -> str | None:
        """Why a request is too large to download, judged by its listed size."""
        limit = self._capabilities.max_body_size
        if limit is None or delivery.size <= limit:
            return None
        peer, _, _, request_id = delivery.key
        reason = (
            f"request body of {delivery.size} bytes exceeds the gdrive transport's "
            f"max_body_size of {limit} bytes"
        )
        logger.info("%s: refusing request %s from %s: %s", self.identity, request_id, peer, reason)
        return reason

    def _unsee(self, key: tuple[str, str, str, str]) -> None:
        with self._cond:
            self._seen.pop(key, None)

    def _call(
        self, handler: RequestHandler, request: Request
    ) -> tuple[ReplyStatus | None, Body, str]:
        try:
            body = handler(request)
        except RequestRefusedError as exc:  # an outcome, not a fault: no traceback
            logger.info(
                "%s: refused request %s from %s: %s",
                self.identity,
                request.id,
                request.sender,
                exc,
            )
            return ReplyStatus.REJECTED, b"", str(exc)
        except Exception as exc:
            logger.exception(
                "%s: handler for %s/%s raised on request %s from %s",
                self.identity,
                request.app,
                request.endpoint,
                request.id,
                request.sender,
            )
            return ReplyStatus.REJECTED, b"", f"handler raised {type(exc).__name__}: {exc}"
        if body is None:
            return None, b"", ""
        try:
            frames = tuple(body_frames(body))  # streamed into the upload, never joined whole
        except TypeError:
            detail = f"handler returned {type(body).__name__}, not bytes"
            logger.error("%s: %s", self.identity, detail)
            return ReplyStatus.REJECTED, b"", detail
        return ReplyStatus.OK, frames, ""

    def _respond(self, delivery: _Delivery, status: ReplyStatus, body: Body, detail: str) -> None:
        peer, app, endpoint, request_id = delivery.key
        properties = {MARKER[0]: MARKER[1], PROP_EXPIRES: repr(delivery.expires_at)}
        if status is ReplyStatus.REJECTED:
            properties[PROP_STATUS] = status.value
            properties[PROP_DETAIL] = _clip_utf8(detail, _DETAIL_BYTES)
            body = detail.encode("utf-8")
        what = f"answering request {request_id} from {peer}"
        try:
            folder = self.folders.outbox(peer, app, endpoint)
            response_id = self.api.upload(
                message_name(request_id, KIND_RESPONSE), folder, body, properties, what
            )
        except SyftFlwrError as exc:
            logger.error("%s: %s failed: %s", self.identity, what, exc)
            return
        with self._cond:
            seen = self._seen.get(delivery.key)
            if seen is not None:
                seen.response_id = response_id
            else:  # the request vanished while we worked on it
                self._doomed.append((0.0, response_id))
            self._schedule.poke()

    # -- identity -------------------------------------------------------------------------------

    def _verify_identity(self) -> None:
        """Check once that the credentials belong to the identity we write folder names for."""
        with self._verify_lock:
            if self._verified:
                return
            owner = self.api.account_email()
            if owner.lower() != self.identity.lower():
                raise CredentialsError(
                    f"the Google credentials belong to {owner}, but this process acts as "
                    f"{self.identity}: use {self.identity}'s credentials or set the identity "
                    f"(SYFTBOX_EMAIL / [tool.syft_flwr.gdrive] email) to {owner}"
                )
            self._verified = True

    def publish_key_document(self, document: bytes) -> None:
        """Publish into our pair folders (see :mod:`~syft_flwr_gdrive.keydocs`).

        :raises ConfigError: the transport speaks syft-flwr 0.5's wire, which carries no
            encryption: encryption must then be turned off explicitly.
        """
        keydocs.publish(self, document)

    def fetch_key_document(self, datasite: str) -> bytes | None:
        """``datasite``'s document from its pair folder to us, ``None`` if none is there yet."""
        return keydocs.fetch(self, datasite)


def _clip_utf8(text: str, limit: int) -> str:
    """The longest start of ``text`` whose UTF-8 form fits in ``limit`` bytes."""
    return text.encode("utf-8")[:limit].decode("utf-8", "ignore")


def _printable(text: str) -> str:
    """A peer's reason, safe for a log line: bounded, control characters replaced."""
    return "".join(ch if ch.isprintable() else "\ufffd" for ch in text[:_MAX_DETAIL])
