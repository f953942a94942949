"""``SyftBoxTransport``: the syft-flwr transport contract over a SyftBox datasites folder.

Sending writes ``<id>.request`` into the recipient's app folder under this identity's sender
folder (:mod:`~syft_flwr_syftbox.layout`), atomically (:mod:`~syft_flwr_syftbox.atomic`), and
records the future durably (:mod:`~syft_flwr_syftbox.store`) before the file appears, so a
reply can never outrun its future. The reply is ``<id>.response`` beside it; the folder watcher
(:mod:`~syft_flwr_syftbox.watcher`) reports it and :meth:`Transport.reply_arrived` wakes the
grid at once. Replies are parsed only when polled, so a half-written reply (a non-atomic peer)
just reads as "not yet".

A native body larger than ``part_size`` (a request's or a reply's) is written as part files
first and its ``.request``/``.response`` last, as a manifest listing them
(:mod:`~syft_flwr_syftbox.parts`), so no file exceeds what sync clients carry. A manifest is
read once all its parts are in, of their declared sizes and hashes: until then a request waits
(retried when a part lands, and by the sweep) and a reply polls as "not yet". Parts go with
their message when it is cleaned up; parts whose manifest never came, after ``stale_after``.

Serving reads requests for this datasite in arrival order in :meth:`SyftBoxTransport.run`:
each is parsed, checked against the folder it sits in (the folder is the sender: a file that
claims another sender, id or address is refused and never reaches the handler), recorded as
served before the handler runs (at most once, also across duplicates and restarts), and
answered beside it in the format it came in. Expired requests get an expiry reply instead.

Every wait is event-driven; the only timer is the watcher's sweep (``poll_interval``), which
catches missed events and drives cleanup of stale files and futures every
``cleanup_interval``.

Nothing a peer can place in the folder crashes, blocks or redirects the transport: every path
below the datasites folder is reached through :mod:`~syft_flwr_syftbox.safe_fs` (no symlink
followed, no folder written through a symlink, only regular files opened, FIFOs never waited
on), and each hostile object is skipped and reported once. Before a byte of a request is read,
its head (the sender folder and the file's size) goes through :meth:`Transport.screen_request`
and the size limit, so a refused or oversized file is answered without being read. An object
at a reply slot that is not the expected reply (a folder, a symlink, a replayed reply to
another request) is ignored by the sender, which keeps waiting, and replaced by the real reply
when the recipient answers.
"""

from __future__ import annotations

import logging
import math
import stat
import threading
import time
import uuid
from collections import deque
from collections.abc import Hashable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import replace
from pathlib import Path
from typing import Any, ClassVar

from syft_flwr.addresses import check_app, check_datasite, check_endpoint
from syft_flwr.crypto.compat import is_compat_payload
from syft_flwr.crypto.envelope import is_sealed
from syft_flwr.errors import (
    BodyTooLargeError,
    MediumError,
    RequestRefusedError,
    TransportError,
    UnsafeFileError,
    WireFormatError,
)
from syft_flwr.node_ids import normalise_email
from syft_flwr.transport import (
    Body,
    FrameSource,
    ReceivedBody,
    ReceivedData,
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
    held_body,
    join_body,
)
from syft_flwr.wire.flower_proto import envelope_to_protobuf, is_envelope, protobuf_to_envelope
from syft_flwr_syftbox import keydocs
from syft_flwr_syftbox.acl import ensure_rpc_acl
from syft_flwr_syftbox.atomic import Frame, is_temp_name
from syft_flwr_syftbox.files import (
    decode_rpc_file,
    decode_rpc_head,
    encode_rpc_file,
    sniff_format,
)
from syft_flwr_syftbox.layout import MAX_APP_SEGMENTS, FileKind, Layout, RpcLocation
from syft_flwr_syftbox.options import SyftBoxOptions
from syft_flwr_syftbox.parts import PartsIncompleteError, assemble, manifest_of, write_parts
from syft_flwr_syftbox.rejections import RejectedRequests, refused_original
from syft_flwr_syftbox.rpcfile import (
    IncompleteFileError,
    RpcFile,
    WireFormat,
    default_status_code,
)
from syft_flwr_syftbox.safe_fs import Entry, FirstTime, SafeRoot, describe
from syft_flwr_syftbox.store import FutureRecord, StateStore
from syft_flwr_syftbox.watcher import FolderWatcher

__all__ = ["SyftBoxTransport"]

logger = logging.getLogger(__name__)

_CLOSE_WAIT = 30.0
_SLOT_ATTEMPTS = 5
"""How often a reply slot taken by a folder is cleared before the reply is given up."""
SWEEP_BUDGET = 64
"""How many futures one sweep rechecks while filesystem events arrive (each costs a walk of
about eight folders): with the 1,000 futures of a round in flight, rechecking all of them every
``poll_interval`` cost the server more than answering them, a round of n datasites n^2. The
sweep goes round them instead, so a reply whose event was lost is still found within
``ceil(n / SWEEP_BUDGET)`` sweeps. Without events (a network mount, no inotify left) every
sweep rechecks every future: it is the only way replies are seen."""


class SyftBoxTransport(Transport):
    """A transport over a SyftBox datasites folder (``transport = "syftbox"``).

    Options (``[tool.syft_flwr.syftbox]``, see :class:`~syft_flwr_syftbox.options.SyftBoxOptions`):
    ``data_dir``, ``wire`` (``"native"`` or ``"syft-rpc"``), ``max_body_size``, ``part_size``,
    ``sync_interval``, ``fsync``, ``cleanup_interval``, ``stale_after``.

    :param settings: identity (an email), options, project dir, poll interval.
    :param environ: the environment to read ``SYFTBOX_*`` from (``os.environ`` by default).
    :raises InvalidAddressError: the identity is not a safe email.
    :raises ConfigError: the options are malformed or no SyftBox folder can be found.
    """

    encrypt_by_default: ClassVar[bool] = True
    """End-to-end encryption is on unless ``SYFT_FLWR_ENCRYPTION_ENABLED=false``."""

    name: ClassVar[str] = "syftbox"
    description: ClassVar[str] = (
        "SyftBox file RPC over a synced datasites folder, woken by filesystem events."
    )

    @classmethod
    def local_options(cls, workdir: Path) -> dict[str, Any]:
        """A fresh SyftBox folder under the run's private ``workdir``.

        Every participant of a local run (threads or processes) gets the same ``data_dir``,
        as datasites see one another's files when the SyftBox client syncs them into one
        folder. A separate process joins with these options, or with
        ``SYFTBOX_FOLDER=<data_dir>``. Private keys of a local run stay in the run's
        ``workdir``, never in the user's key store.
        """
        data_dir = workdir / "SyftBox"
        (data_dir / "datasites").mkdir(parents=True, exist_ok=True)
        return {"data_dir": str(data_dir), "key_dir": str(workdir / "keys")}

    def __init__(
        self, settings: TransportSettings, *, environ: Mapping[str, str] | None = None
    ) -> None:
        super().__init__(settings)
        check_datasite(settings.identity, syft_url=True)
        self.options = SyftBoxOptions.resolve(settings, environ)
        datasites = _resolved(self.options.datasites)
        self.layout = Layout(datasites)
        self.fs = SafeRoot(datasites)
        """Every file operation below the datasites folder (never following a symlink)."""
        self._me = normalise_email(settings.identity)
        self._capabilities = TransportCapabilities(
            notifies=True,
            max_body_size=self.options.max_body_size,
            persistent=True,
            encrypted=False,
            screens_requests=True,
            delivery_latency=2.0 * self.options.sync_interval,
            delivers_once=True,
            accepts_frames=True,
            accepts_streams=True,
        )
        self._store = StateStore(self.options.state_dir(settings.identity) / "state.sqlite3")
        # Removes the parts of finished exchanges off the caller's thread: unlinking a GiB of
        # page cache takes seconds, which a grid collecting a reply should not wait for.
        self._reaper = ThreadPoolExecutor(1, thread_name_prefix="syftbox-parts-reaper")
        # Hashes a model's parts while they are written or decrypted (write_parts, PartsBody).
        self._hasher = ThreadPoolExecutor(1, thread_name_prefix="syftbox-parts-hasher")
        self._cond = threading.Condition()
        # Guarded by _cond.
        self._pending: dict[str, FutureRecord] = {}
        self._settled_expired: set[str] = set()  # futures poll() has reported expired
        # futures poll() found their recipient's own reply for: settled, so forget() need
        # not read the reply's head again to know its files can go
        self._replied: set[str] = set()
        self._forgotten: dict[str, FutureRecord] = {
            record.id: record for record in self._store.futures(forgotten=True)
        }
        self._handlers: dict[tuple[str, str], RequestHandler] = {}
        self._inbox: deque[tuple[Path, RpcLocation]] = deque()  # parsed once, when queued
        self._queued: set[Path] = set()
        self._handled: dict[tuple[str, str], float] = {}
        self._unreadable: dict[Path, tuple[int, int]] = {}  # (size, mtime_ns) when it failed
        self._reported = FirstTime()  # hostile objects and foreign replies already warned of
        self._refused = RejectedRequests(self.fs, self.options.sync_interval)
        self._running = False
        self._run_thread: threading.Thread | None = None
        self._stop_requested = False
        self._closed = False
        self._next_cleanup = 0.0
        self._sweep_turn = 0  # where the next sweep's share of the futures starts
        self._watcher = FolderWatcher.attach(datasites, self)

    @property
    def capabilities(self) -> TransportCapabilities:
        """Notifying, persistent, screening, not (yet) encrypted; ``max_body_size`` from the
        options."""
        return self._capabilities

    @property
    def sweep_interval(self) -> float:
        """The watcher's rescan period: the core's ``poll_interval``."""
        return self.settings.poll_interval

    # -- sending side ---------------------------------------------------------------------

    def send(self, datasite: str, app: str, endpoint: str, body: Body, expires_at: float) -> str:
        """Write a request for ``endpoint`` of ``app`` at ``datasite``; return its future id.

        A native body, given as frames or as one buffer, goes into the file frame by frame
        (never joined); one larger than ``part_size`` is written as parts first (a part may
        end inside a frame), then the request as their manifest. With ``wire = "syft-rpc"``
        an envelope is written as Flower protobuf inside syft-rpc's JSON, as syft-flwr 0.5.x
        expects (sealed bodies go as they are).

        :raises InvalidAddressError: an address part is unsafe.
        :raises BodyTooLargeError: the body exceeds ``max_body_size``.
        :raises WireFormatError: ``wire = "syft-rpc"`` and the body is not a core envelope.
        :raises TransportError: the transport is closed or the file cannot be written.
        :raises ValueError: ``expires_at`` is NaN.
        """
        check_datasite(datasite, syft_url=True)
        check_app(app, max_segments=MAX_APP_SEGMENTS)
        check_endpoint(endpoint)
        payload: Body = body if isinstance(body, FrameSource) else tuple(body_frames(body))
        self._check_size(body_size(payload), "request")
        if math.isnan(expires_at):
            raise ValueError("expires_at must be a time, not NaN")
        if self.options.wire is WireFormat.SYFT_RPC:
            payload = _to_protobuf(payload)
        future_id = str(uuid.uuid4())
        record = FutureRecord(future_id, datasite, app, endpoint, expires_at)
        rpc = RpcFile(
            kind=FileKind.REQUEST,
            format=self.options.wire,
            id=future_id,
            sender=self.identity,
            recipient=datasite,
            app=app,
            endpoint=endpoint,
            created=time.time(),
            expires=expires_at,
            body=payload,
        )
        path = self._path(record, FileKind.REQUEST)
        with self._cond:
            if self._closed:
                raise TransportError(f"syftbox transport of {self.identity} is closed")
            self._pending[future_id] = record
        try:
            self._store.add_future(record)
        except TransportError:
            with self._cond:
                self._pending.pop(future_id, None)
            raise
        try:
            manifest = self._with_parts(path, rpc)
            self.fs.write_atomic(
                path, encode_rpc_file(manifest), fsync=self.options.fsync, create=True
            )
        except (OSError, UnsafeFileError) as exc:
            self._remove_parts(path)
            with self._cond:
                self._pending.pop(future_id, None)
            self._store.delete_future(future_id)
            raise _medium_error(f"cannot write request {path}", exc) from exc
        return future_id

    def poll(self, future_id: str) -> Reply | None:
        """The reply to ``future_id`` if it is complete, an expiry once the request expired.

        A reply file that appeared after the expiry (its modification time, i.e. when it
        landed in this folder, is later) is ignored, so a future that once polled as expired
        stays expired. Works for futures sent by an earlier instance of this identity (a
        restarted server).
        """
        record = self._record(future_id)
        if record is None:
            return None
        now = time.time()
        expired = Reply(
            future_id, ReplyStatus.EXPIRED, detail="the request expired before a reply arrived"
        )
        with self._cond:
            if future_id in self._settled_expired:
                return expired  # once reported expired, always expired (first settlement wins)
        reply = self._poll_files(record, expired, now)
        if reply is expired:
            with self._cond:
                self._settled_expired.add(future_id)
        return reply

    def _poll_files(self, record: FutureRecord, expired: Reply, now: float) -> Reply | None:
        """The reply file's answer; anything that is not the reply to ``record`` is waited past.

        A folder, symlink, FIFO or unreadable object at the reply slot, or a reply naming
        another request or sender (a replayed or forged file), is reported once per future
        and then treated as no reply yet: the real reply replaces it, or the future expires.
        A manifest's parts are read only once the manifest is known to be the real reply.
        """
        path = self._path(record, FileKind.RESPONSE)
        waiting = expired if now >= record.expires else None
        try:
            with self.fs.open_file(path) as (handle, info):
                if info.st_mtime > record.expires:
                    return expired  # the answer arrived too late: it is ignored
                rpc = decode_rpc_file(
                    handle, info.st_size, path.name, FileKind.RESPONSE, self.options.max_body_size
                )
            problem = _foreign_reply(rpc, record)
            if problem is None:
                rpc = self._assembled(path, rpc)
        except FileNotFoundError:
            return waiting
        except BodyTooLargeError as exc:
            return Reply(record.id, ReplyStatus.REJECTED, detail=f"reply refused: {exc}")
        except IncompleteFileError as exc:
            logger.debug("reply to %s is not complete yet: %s", record.id, exc)
            return waiting
        except WireFormatError as exc:
            logger.info("reply to %s is not readable yet: %s", record.id, exc)
            return waiting
        except (UnsafeFileError, OSError) as exc:
            self._report_foreign_reply(record, path, str(exc))
            return waiting
        if problem is not None:
            self._report_foreign_reply(record, path, problem)
            return waiting
        with self._cond:
            self._replied.add(record.id)
        return self._reply(record, rpc)

    def _report_foreign_reply(self, record: FutureRecord, path: Path, problem: str) -> None:
        self._warn_once(
            ("reply", record.id),
            "%s is not the reply to request %s (%s); ignored, still waiting",
            path,
            record.id,
            problem,
        )

    def forget(self, future_id: str) -> None:
        """Drop a future: its files go now if answered or expired, else once that happens.

        An unanswered request stays in place (the stop signal is forgotten right after it is
        sent and must still arrive); its late reply is deleted on arrival.
        """
        self.discard_ready(future_id)
        record = self._record(future_id)
        if record is None:
            return
        with self._cond:
            self._pending.pop(future_id, None)
            self._settled_expired.discard(future_id)
            answered = future_id in self._replied
        if answered or self._settled(record, time.time()):
            self._discard(record)
            return
        self._store.forget_future(future_id)
        with self._cond:
            self._forgotten[future_id] = replace(record, forgotten=True)

    # -- serving side ---------------------------------------------------------------------

    def serve(self, app: str, endpoint: str, handler: RequestHandler) -> None:
        """Serve ``endpoint`` of ``app`` with ``handler`` (replacing any previous one).

        Writes the app's ``syft.pub.yaml`` (each sender may write only its own folder) and
        queues the requests already waiting.

        :raises InvalidAddressError: ``app`` or ``endpoint`` is unsafe.
        :raises TransportError: the transport is closed or the folder is not writable.
        """
        check_app(app, max_segments=MAX_APP_SEGMENTS)
        check_endpoint(endpoint)
        if not callable(handler):
            raise TypeError(f"handler {handler!r} is not callable")
        try:
            rpc_dir = self.layout.rpc_dir(self.identity, app)
            ensure_rpc_acl(self.fs, rpc_dir, fsync=self.options.fsync)
            self.fs.makedirs(self.layout.endpoint_dir(self.identity, app, endpoint))
        except (OSError, UnsafeFileError) as exc:
            raise _medium_error(f"cannot prepare {app}/{endpoint} for serving", exc) from exc
        with self._cond:
            if self._closed:
                raise TransportError(f"syftbox transport of {self.identity} is closed")
            self._handlers[(app, endpoint)] = handler
        self._scan_requests()

    def run(self) -> None:
        """Deliver requests to the handlers, one at a time, until :meth:`stop`.

        A :meth:`stop` that arrives while ``run`` is not running makes the next ``run``
        return at once, so a stop racing a thread that is about to call ``run`` is not lost.

        :raises TransportError: ``run`` is already running in another thread.
        """
        with self._cond:
            if self._running:
                raise TransportError(f"{self.identity}: run() is already running")
            self._running = True
            self._run_thread = threading.current_thread()
        try:
            self._scan_requests()
            while True:
                with self._cond:
                    while not (self._inbox or self._stop_requested or self._closed):
                        self._cond.wait()
                    if self._stop_requested or self._closed:
                        return
                    path, location = self._inbox.popleft()
                    self._queued.discard(path)
                self._serve_guarded(path, location)
        finally:
            with self._cond:
                self._running = False
                self._stop_requested = False
                self._cond.notify_all()

    def stop(self) -> None:
        """Make :meth:`run` return after the request in hand, if any; idempotent."""
        with self._cond:
            self._stop_requested = True
            self._cond.notify_all()

    def close(self) -> None:
        """Stop, leave the watcher and close the state database. Idempotent.

        Waits (bounded) for a running :meth:`run` to finish its request, so the database is
        never closed under it; the files and futures stay for the next instance.
        """
        with self._cond:
            if self._closed:
                return
            self._closed = True
            self._cond.notify_all()
            if threading.current_thread() is not self._run_thread:
                self._cond.wait_for(lambda: not self._running, timeout=_CLOSE_WAIT)
        self._watcher.detach(self)
        self._reaper.shutdown(wait=True)
        self._hasher.shutdown(wait=True)
        self._store.close()

    # -- watcher callbacks ----------------------------------------------------------------

    def file_changed(self, location: RpcLocation, path: Path) -> None:
        """Queue a request for :meth:`run`, or wake the waiters of a reply (watcher thread)."""
        if location.kind is FileKind.REQUEST:
            if normalise_email(location.recipient) == self._me:
                self._enqueue(path, location)
            return
        if normalise_email(location.sender) != self._me:
            return
        with self._cond:
            wanted = location.id in self._pending
            forgotten = self._forgotten.get(location.id)
        if wanted:
            self.reply_arrived(location.id)
        elif forgotten is not None and self._settled(forgotten, time.time()):
            self._discard(forgotten)

    def sweep(self) -> None:
        """Catch missed events, expire futures, and clean up when due (watcher thread)."""
        with self._cond:
            if self._closed:
                return
            pending = list(self._pending.values())
            forgotten = list(self._forgotten.values())
            serving = bool(self._handlers)
        if self._watcher.watching:
            pending, forgotten = self._sweep_share(pending, forgotten)
        now = time.time()
        for record in pending:
            if now >= record.expires or self.fs.exists(self._path(record, FileKind.RESPONSE)):
                self.reply_arrived(record.id)
            else:
                self._refused.check(self._path(record, FileKind.REQUEST))
        for record in forgotten:
            if self._settled(record, now):
                self._discard(record)
            else:
                self._refused.check(self._path(record, FileKind.REQUEST))
        if serving:
            self._scan_requests()
        if time.monotonic() >= self._next_cleanup:
            self._next_cleanup = time.monotonic() + self.options.cleanup_interval
            self._cleanup(now)

    def _sweep_share(
        self, pending: list[FutureRecord], forgotten: list[FutureRecord]
    ) -> tuple[list[FutureRecord], list[FutureRecord]]:
        """This sweep's turn of at most :data:`SWEEP_BUDGET` futures, the next ones after the
        last sweep's (wanted ones first, then forgotten ones, round and round)."""
        records = pending + forgotten
        if len(records) <= SWEEP_BUDGET:
            return pending, forgotten
        start = self._sweep_turn % len(records)
        self._sweep_turn = start + SWEEP_BUDGET
        end = start + SWEEP_BUDGET
        wrapped = records[: max(0, end - len(records))]
        turn = {id(record) for record in records[start:end] + wrapped}
        return [r for r in pending if id(r) in turn], [r for r in forgotten if id(r) in turn]

    # -- sending internals ----------------------------------------------------------------

    def _record(self, future_id: str) -> FutureRecord | None:
        """The future, from memory or (sent by an earlier instance) from the database.

        A future found in the database is adopted, so its reply wakes waiters from now on.
        """
        with self._cond:
            record = self._pending.get(future_id) or self._forgotten.get(future_id)
            closed = self._closed
        if record is None and not closed:
            record = self._store.future(future_id)
            if record is not None:
                with self._cond:
                    target = self._forgotten if record.forgotten else self._pending
                    target.setdefault(future_id, record)
        return record

    def _path(self, record: FutureRecord, kind: FileKind) -> Path:
        location = RpcLocation(
            record.recipient, record.app, record.endpoint, self.identity, record.id, kind
        )
        return self.layout.file(location)

    def _reply(self, record: FutureRecord, rpc: RpcFile) -> Reply:
        if rpc.status is not ReplyStatus.OK:
            return Reply(record.id, rpc.status, detail=rpc.detail)
        body = _read_body(rpc.body)
        if rpc.format is WireFormat.SYFT_RPC:
            if not body:
                return Reply(
                    record.id,
                    ReplyStatus.REJECTED,
                    detail=f"{record.recipient} sent an empty reply",
                )
            try:
                body, _ = _to_envelope(body)
            except WireFormatError as exc:
                return Reply(record.id, ReplyStatus.REJECTED, detail=f"unusable reply: {exc}")
        return Reply(record.id, ReplyStatus.OK, body=body)

    def _settled(self, record: FutureRecord, now: float) -> bool:
        """Whether a future is done with: expired, or answered by its recipient.

        Only the recipient's own reply counts (its head is read, never a native body): an
        empty file, a folder or a replayed reply at the slot must not make a forgotten
        request (the stop signal) be removed before its recipient has read it.
        """
        if now >= record.expires:
            return True
        path = self._path(record, FileKind.RESPONSE)
        try:
            with self.fs.open_file(path) as (handle, info):
                rpc = decode_rpc_head(
                    handle, info.st_size, path.name, FileKind.RESPONSE, self.options.max_body_size
                )
        except (OSError, UnsafeFileError, WireFormatError, BodyTooLargeError):
            return False
        return _foreign_reply(rpc, record) is None

    def _discard(self, record: FutureRecord) -> None:
        """Remove a future's files and row (answered, expired, or forgotten and done).

        The reply goes first: a request that is gone always means a finished exchange.
        """
        request = self._path(record, FileKind.REQUEST)
        self._remove(self._path(record, FileKind.RESPONSE), request)
        self._refused.forget(request)
        self._reported.forget(("reply", record.id))
        with self._cond:
            self._pending.pop(record.id, None)
            self._forgotten.pop(record.id, None)
            self._replied.discard(record.id)
            if self._closed:
                return
        self._store.delete_future(record.id)

    # -- serving internals ----------------------------------------------------------------

    def _enqueue(self, path: Path, location: RpcLocation) -> None:
        key = (normalise_email(location.sender), location.id)
        with self._cond:
            if key in self._handled or path in self._queued or self._closed:
                return
            self._queued.add(path)
            self._inbox.append((path, location))
            self._cond.notify_all()

    def _scan_requests(self) -> None:
        """Queue every request file in the served endpoints not handled yet."""
        with self._cond:
            endpoints = list(self._handlers)
        for app, endpoint in endpoints:
            for path in self._files(self.layout.endpoint_dir(self.identity, app, endpoint)):
                if not path.name.endswith(FileKind.REQUEST.value) or not self._changed(path):
                    continue
                location = self.layout.parse(path)
                if location is not None:
                    self._enqueue(path, location)

    def _files(self, folder: Path) -> list[Path]:
        """Regular files one level below each sender folder of an endpoint folder.

        Nothing is followed: a symlinked sender folder is not descended into, and a symlink,
        FIFO or folder named like a request is not listed; both are reported once. (What sits
        at a reply slot is dealt with when the request is answered.)
        """
        files: list[Path] = []
        for sender in self._entries(folder):
            if sender.is_symlink:
                self._report_unsafe(sender.refusal(folder=True))
            if not sender.is_folder:
                continue
            for entry in self._entries(sender.path):
                if entry.is_file:
                    files.append(entry.path)
                elif entry.path.name.endswith(FileKind.REQUEST.value):
                    self._report_unsafe(entry.refusal(folder=False))
        return files

    def _entries(self, folder: Path) -> list[Entry]:
        try:
            return self.fs.entries(folder)
        except FileNotFoundError:
            pass
        except UnsafeFileError as exc:
            self._report_unsafe(exc)
        except OSError as exc:  # e.g. a folder synced without read permission
            self._warn_once(("list", folder), "cannot list %s: %s", folder, exc)
        return []

    def _report_unsafe(self, exc: UnsafeFileError) -> None:
        self._warn_once(str(exc), "skipped: %s", exc)

    def _warn_once(self, key: Hashable, message: str, *args: object) -> None:
        """Warn the first time ``key`` is met: the sweep meets the same hostile objects every
        poll interval, and one warning per object is enough."""
        if self._reported(key):
            logger.warning("%s: " + message, self.identity, *args)

    def _changed(self, path: Path) -> bool:
        """False for a file that failed to parse and has not changed since."""
        with self._cond:
            seen = self._unreadable.get(path)
        if seen is None:
            return True
        try:
            info = self.fs.lstat(path)
        except (OSError, UnsafeFileError):
            with self._cond:
                self._unreadable.pop(path, None)
            return False
        return (info.st_size, info.st_mtime_ns) != seen

    def _serve_guarded(self, path: Path, location: RpcLocation) -> None:
        """:meth:`_serve_file`, but a failure (a bug, an unforeseen filesystem error) is
        logged once per path instead of ending :meth:`run` for every other request."""
        try:
            self._serve_file(path, location)
        except Exception:
            if self._reported(("serve", path)):
                logger.exception("%s: serving %s failed; serving goes on", self.identity, path)

    def _serve_file(self, path: Path, location: RpcLocation) -> None:
        if normalise_email(location.recipient) != self._me:
            return
        key = (normalise_email(location.sender), location.id)
        with self._cond:
            handler = self._handlers.get((location.app, location.endpoint))
            handled = key in self._handled
        if handler is None or handled:
            return
        if self._answered(path, location):
            with self._cond:
                # answered by an earlier instance; remembered until cleanup
                self._handled[key] = time.time() + self.options.stale_after
            return
        now = time.time()
        rpc = self._read_request(path, location, now)
        if rpc is None:
            return
        with self._cond:
            self._unreadable.pop(path, None)
            self._handled[key] = rpc.expires
        if not self._store.mark_served(key[0], location.id, rpc.expires):
            logger.info("request %s from %s was already served; not again", rpc.id, key[0])
            return
        problem = _claims_problem(rpc, location)
        if problem is not None:
            logger.warning(
                "%s: refusing request %s in %s's folder: %s",
                self.identity,
                location.id,
                location.sender,
                problem,
            )
            self._refuse(path, location, rpc, f"refused: {problem}", code=403)
            return
        if now >= rpc.expires:
            logger.info("%s: request %s from %s expired unanswered", self.identity, rpc.id, key[0])
            self._answer(path, location, rpc, ReplyStatus.EXPIRED, detail="Request expired")
            return
        self._deliver(path, location, rpc, handler)

    def _read_request(self, path: Path, location: RpcLocation, now: float) -> RpcFile | None:
        """The request at ``path``, or ``None`` when it is refused (and answered so), unsafe
        (reported), unreadable (noted, retried when it changes) or waiting for its parts.

        The screen and the size limit see the size ``fstat`` gives before a byte is read; a
        refusal reads only the first byte, to answer in the request's format. A manifest's
        total is held against the limit before its parts are read, and a manifest expired at
        ``now`` is returned unread (it is answered with an expiry, not delivered).
        """
        try:
            with self.fs.open_file(path) as (handle, info):
                reason = self._screened(location, info.st_size)
                if reason is not None:
                    refusal = (reason, 403)
                else:
                    try:
                        rpc = decode_rpc_file(
                            handle,
                            info.st_size,
                            path.name,
                            FileKind.REQUEST,
                            self.options.max_body_size,
                        )
                    except BodyTooLargeError as exc:
                        refusal = (f"request refused: {exc}", 413)
                    else:
                        return rpc if now >= rpc.expires else self._assembled(path, rpc)
                wire = sniff_format(handle)
        except FileNotFoundError:
            return None
        except UnsafeFileError as exc:
            self._report_unsafe(exc)
            return None
        except PartsIncompleteError as exc:
            # Not noted as unreadable: a part landing (an event on it) or the sweep retries it.
            with self._cond:
                self._unreadable.pop(path, None)
            logger.debug("request %s waits for its parts: %s", path, exc)
            return None
        except WireFormatError as exc:
            self._note_unreadable(path, location, exc)
            return None
        detail, code = refusal
        self._refuse(path, location, None, detail, code=code, wire=wire)
        return None

    def _screened(self, location: RpcLocation, size: int) -> str | None:
        """The screen's reason to refuse a request seen by its folder and size, or ``None``."""
        head = RequestHead(
            id=location.id,
            sender=location.sender,
            recipient=self.identity,
            app=location.app,
            endpoint=location.endpoint,
            size=size,
        )
        reason = self.screen_request(head)
        if reason is not None:
            logger.info(
                "%s: refused request %s from %s unread: %s",
                self.identity,
                location.id,
                location.sender,
                reason,
            )
        return reason

    def _answered(self, path: Path, location: RpcLocation) -> bool:
        """Whether this transport's own reply to the request is beside it already (an
        earlier instance answered); any other object there is replaced when answering."""
        response = path.with_suffix(FileKind.RESPONSE.value)
        if not self.fs.exists(response):
            return False
        try:
            return self._not_my_reply(response, location) is None
        except FileNotFoundError:
            return False

    def _deliver(
        self, path: Path, location: RpcLocation, rpc: RpcFile, handler: RequestHandler
    ) -> None:
        converted = False
        body = _read_body(rpc.body)
        if rpc.format is WireFormat.SYFT_RPC:
            try:
                body, converted = _to_envelope(body)
            except WireFormatError as exc:
                logger.warning("%s: unusable request %s: %s", self.identity, rpc.id, exc)
                self._refuse(path, location, rpc, f"unusable request body: {exc}", code=400)
                return
        request = Request(
            id=location.id,
            sender=location.sender,
            recipient=self.identity,
            app=location.app,
            endpoint=location.endpoint,
            body=body,
            created_at=rpc.created,
            expires_at=rpc.expires,
        )
        try:
            reply = handler(request)
        except RequestRefusedError as exc:
            logger.info(
                "%s: handler for %s/%s refused request %s from %s: %s",
                self.identity,
                location.app,
                location.endpoint,
                location.id,
                location.sender,
                exc,
            )
            self._refuse(path, location, rpc, str(exc), code=403)
            return
        except Exception as exc:
            logger.exception(
                "%s: handler for %s/%s raised on request %s from %s",
                self.identity,
                location.app,
                location.endpoint,
                location.id,
                location.sender,
            )
            self._refuse(path, location, rpc, f"handler raised {type(exc).__name__}", code=500)
            return
        if reply is None:
            return
        if request.expired():
            # The sender has (or will have) settled this future as expired; an answer now
            # could only contradict that.
            logger.info("%s: dropping the late answer to expired request %s", self.identity, rpc.id)
            return
        try:
            # written frame by frame, never joined (a one-pass source as it is produced)
            payload: Body = reply if isinstance(reply, FrameSource) else tuple(body_frames(reply))
        except TypeError:
            logger.error("%s: handler returned %s, not bytes", self.identity, type(reply).__name__)
            self._refuse(path, location, rpc, "handler returned no bytes", code=500)
            return
        try:
            self._check_size(body_size(payload), "reply")
            if converted:
                payload = _to_protobuf(payload)
        except (BodyTooLargeError, WireFormatError) as exc:
            logger.error("%s: cannot send the reply to %s: %s", self.identity, rpc.id, exc)
            self._refuse(path, location, rpc, f"reply refused: {exc}", code=500)
            return
        self._answer(path, location, rpc, ReplyStatus.OK, body=payload)

    def _refuse(
        self,
        path: Path,
        location: RpcLocation,
        rpc: RpcFile | None,
        detail: str,
        *,
        code: int,
        wire: WireFormat = WireFormat.NATIVE,
    ) -> None:
        """Answer ``REJECTED`` and remember the request as handled (refused at most once)."""
        with self._cond:
            self._handled[(normalise_email(location.sender), location.id)] = (
                rpc.expires if rpc else time.time() + self.options.stale_after
            )
        self._answer(path, location, rpc, ReplyStatus.REJECTED, detail=detail, code=code, wire=wire)

    def _answer(
        self,
        path: Path,
        location: RpcLocation,
        rpc: RpcFile | None,
        status: ReplyStatus,
        *,
        body: Body = b"",
        detail: str = "",
        code: int | None = None,
        wire: WireFormat = WireFormat.NATIVE,
    ) -> None:
        """Write the response beside the request, in the request's format (``wire`` for a
        request refused unread)."""
        now = time.time()
        response = RpcFile(
            kind=FileKind.RESPONSE,
            format=rpc.format if rpc else wire,
            id=location.id,
            sender=self.identity,
            recipient=location.recipient,
            app=location.app,
            endpoint=location.endpoint,
            created=now,
            expires=rpc.expires if rpc else now + self.options.stale_after,
            body=body,
            status=status,
            detail=detail,
            code=code or default_status_code(status),
        )
        target = path.with_suffix(FileKind.RESPONSE.value)
        try:
            self._publish_reply(target, location, response)
        except (OSError, UnsafeFileError) as exc:
            self._remove_parts(target)
            logger.error("%s: cannot write the reply %s: %s", self.identity, target, exc)

    def _publish_reply(self, target: Path, location: RpcLocation, response: RpcFile) -> None:
        """Publish a reply atomically; what occupies its slot, unless it is this transport's
        own reply, is replaced (a folder, symlink, FIFO, or a replayed or forged file).

        Anything but a folder is replaced by one ``rename`` over it, so there is no moment at
        which the slot is free for a sync client (or anyone) to fill again; a folder is removed
        first and the reply then published as a new file, as often as it keeps coming back
        (bounded). Whatever is named like a part of the reply goes first (a foreign reply's
        parts, a crashed attempt's: this transport answers a request once), so no stale part
        outlives the slot's clearing or mixes with the real ones, which are written next.
        """
        self._remove_parts(target)
        reply = self._with_parts(target, response, overwrite=True)
        if isinstance(reply.body, FrameSource):
            # one file, maybe written twice below: a one-pass body (at most part_size) is joined
            reply = replace(reply, body=join_body(reply.body))
        frames = encode_rpc_file(reply)
        assert isinstance(frames, list)
        for _ in range(_SLOT_ATTEMPTS):
            if self._publish(target, frames):
                return
            try:
                what = self._not_my_reply(target, location)
            except FileNotFoundError:
                continue  # it went away meanwhile: publish as a new file
            if what is None:
                logger.debug("%s was answered meanwhile", target)
                return
            logger.warning(
                "%s: %s holds %s, not this datasite's reply to request %s; replacing it with "
                "the real reply",
                self.identity,
                target,
                what,
                location.id,
            )
            if not self._is_folder(target):
                self.fs.write_atomic(target, frames, replace=True, fsync=self.options.fsync)
                return
            self.fs.remove(target)
        self._remove_parts(target)
        logger.error(
            "%s: %s kept being taken; the reply to request %s could not be published",
            self.identity,
            target,
            location.id,
        )

    def _with_parts(self, path: Path, rpc: RpcFile, *, overwrite: bool = False) -> RpcFile:
        """What to write at ``path`` for ``rpc``: itself, or, for a native body larger than
        ``part_size``, the manifest of the parts this writes beside it now (the file at
        ``path`` must come after them).

        :param overwrite: replace whatever is at a part's name.
        """
        body = rpc.as_body()
        if rpc.format is not WireFormat.NATIVE or body_size(body) <= self.options.part_size:
            return rpc
        parts = write_parts(
            self.fs,
            path,
            body,
            self.options.part_size,
            fsync=self.options.fsync,
            replace=overwrite,
            hasher=self._hasher,
        )
        return replace(rpc, body=b"", parts=parts)

    def _assembled(self, path: Path, rpc: RpcFile) -> RpcFile:
        """``rpc`` with its body: a manifest's read from its parts, anything else as it is.

        :raises PartsIncompleteError: a part has not fully arrived yet.
        :raises WireFormatError: a part is larger than its manifest says.
        :raises UnsafeFileError: a part is not a regular file.
        """
        if not rpc.parts:
            return rpc
        return replace(rpc, body=assemble(self.fs, path, rpc.parts, self._hasher))

    def _publish(self, target: Path, frames: Sequence[Frame]) -> bool:
        """Write ``target`` unless something is there; whether it was written."""
        try:
            self.fs.write_atomic(target, frames, fsync=self.options.fsync)
        except FileExistsError:
            return False
        return True

    def _is_folder(self, target: Path) -> bool:
        try:
            return stat.S_ISDIR(self.fs.lstat(target).st_mode)
        except FileNotFoundError:
            return False

    def _not_my_reply(self, target: Path, location: RpcLocation) -> str | None:
        """What is at a reply slot, unless it is this transport's own reply to the request
        there (``None``). Only the reply's head is read, never a native reply's body.

        :raises FileNotFoundError: the slot is empty.
        """
        try:
            mode = self.fs.lstat(target).st_mode
            if not stat.S_ISREG(mode):
                return describe(mode)
            with self.fs.open_file(target) as (handle, info):
                rpc = decode_rpc_head(
                    handle, info.st_size, target.name, FileKind.RESPONSE, self.options.max_body_size
                )
        except (UnsafeFileError, WireFormatError, BodyTooLargeError, PermissionError) as exc:
            return f"an unusable file ({exc})"
        if rpc.id != location.id or normalise_email(rpc.sender) != self._me:
            return f"a reply to request {rpc.id!r} from {rpc.sender!r}"
        return None

    def _note_unreadable(self, path: Path, location: RpcLocation, exc: WireFormatError) -> None:
        """Remember an unreadable file; it is retried when it changes (a writer finishing)."""
        try:
            info = self.fs.lstat(path)
        except (OSError, UnsafeFileError):
            return
        with self._cond:
            self._unreadable[path] = (info.st_size, info.st_mtime_ns)
        if isinstance(exc, IncompleteFileError):
            logger.debug("request %s is incomplete (still being written?): %s", path, exc)
        else:
            logger.warning(
                "%s: unreadable request %s from %s (retried if it changes): %s",
                self.identity,
                location.id,
                location.sender,
                exc,
            )

    # -- cleanup --------------------------------------------------------------------------

    def _cleanup(self, now: float) -> None:
        """Remove what nobody will collect any more: old futures, served requests, temp files."""
        horizon = now - self.options.stale_after
        for record in self._store.futures():
            if record.expires < (now if record.forgotten else horizon):
                self._discard(record)
        stale = set(self._store.prune_served(horizon))
        with self._cond:
            for key in [k for k, expires in self._handled.items() if expires < horizon]:
                del self._handled[key]
            endpoints = list(self._handlers)
            unreadable = list(self._unreadable)
        for path in [p for p in unreadable if not self.fs.exists(p)]:
            with self._cond:
                self._unreadable.pop(path, None)
        for app, endpoint in endpoints:
            for path in self._files(self.layout.endpoint_dir(self.identity, app, endpoint)):
                self._clean_file(path, stale, horizon)

    def _clean_file(self, path: Path, stale: set[tuple[str, str]], horizon: float) -> None:
        try:
            modified = self.fs.lstat(path).st_mtime
        except (OSError, UnsafeFileError):
            return
        if is_temp_name(path.name):
            if modified < horizon:
                self._unlink(path)  # left behind by a writer that crashed
            return
        manifest = manifest_of(path)
        if manifest is not None:
            if modified < horizon and not self.fs.exists(manifest):
                self._unlink(path)  # its writer crashed before the manifest, or before this
            return
        location = self.layout.parse(path)
        if location is None or location.kind is not FileKind.REQUEST:
            return
        key = (normalise_email(location.sender), location.id)
        with self._cond:
            unreadable = path in self._unreadable
        if key in stale or (unreadable and modified < horizon):
            self._remove(path, path.with_suffix(FileKind.RESPONSE.value))

    def _remove(self, *paths: Path) -> None:
        """Remove RPC files in order, then their parts: a reader that finds no file reads no
        parts, and a request that is gone means a finished exchange.

        Files of one folder (an exchange's request and reply) are unlinked and their folder
        listed through one descriptor of it. The parts found go in the background, in order,
        finished by :meth:`close`: no manifest names them any more, and unlinking a model's
        parts (their page cache) takes seconds.
        """
        folders = {path.parent for path in paths}
        if len(folders) != 1:
            for path in paths:
                self._unlink(path)
            self._remove_parts(*paths, later=True)
            return
        (folder,) = folders
        wanted = set(paths)
        try:
            failed, found = self.fs.unlink_and_find(
                folder, [path.name for path in paths], lambda name: _is_part(folder / name, wanted)
            )
        except FileNotFoundError:
            return
        except UnsafeFileError as exc:
            self._report_unsafe(exc)
            return
        except OSError as exc:  # e.g. a folder synced without read permission
            self._warn_once(("list", folder), "cannot list %s: %s", folder, exc)
            return
        for path, error in failed:
            logger.warning("%s: cannot remove %s: %s", self.identity, path, error)
        self._unlink_found(found, later=True)

    def _remove_parts(self, *manifests: Path, later: bool = False) -> None:
        """Remove everything named like a part of ``manifests``, or like a rejected twin of
        one of them or of their parts (:mod:`~syft_flwr_syftbox.rejections`): however many,
        whoever wrote them, whatever they are (a folder goes with its tree); one listing per
        folder. With ``later``, what is found is unlinked on the reaper's thread."""
        wanted = set(manifests)
        found = [
            entry.path
            for folder in {manifest.parent for manifest in manifests}
            for entry in self._entries(folder)
            if _is_part(entry.path, wanted)
        ]
        self._unlink_found(found, later=later)

    def _unlink_found(self, found: list[Path], *, later: bool) -> None:
        if later and found:
            try:
                self._reaper.submit(self._unlink_all, found)
                return
            except RuntimeError:  # closed: nothing runs in the background any more
                pass
        self._unlink_all(found)

    def _unlink_all(self, paths: list[Path]) -> None:
        for path in paths:
            self._unlink(path, tree=True)

    def _unlink(self, path: Path, *, tree: bool = False) -> None:
        """Remove the name ``path`` (with ``tree``, a folder and everything in it too)."""
        try:
            if tree:
                self.fs.remove(path)
            else:
                self.fs.unlink(path)
        except (OSError, UnsafeFileError) as exc:
            logger.warning("%s: cannot remove %s: %s", self.identity, path, exc)

    def _check_size(self, size: int, what: str) -> None:
        limit = self.options.max_body_size
        if size > limit:
            raise BodyTooLargeError(
                f"{what} body of {size} bytes exceeds the syftbox transport's max_body_size of "
                f"{limit} bytes; raise [tool.syft_flwr.syftbox] max_body_size if this is intended"
            )

    def publish_key_document(self, document: bytes) -> None:
        """Write ``public/did.json`` of this datasite (see :mod:`~syft_flwr_syftbox.keydocs`).

        :raises SyftCryptoIdentityError: the file is another identity's syft-crypto document.
        :raises UnsafeFileError: ``did.json`` or a folder on the way is a symlink (or the file
            is a FIFO or a folder).
        """
        keydocs.publish(self, document)

    def fetch_key_document(self, datasite: str) -> bytes | None:
        """The bytes of ``datasite``'s ``public/did.json``, or ``None`` if it has none yet."""
        return keydocs.fetch(self, datasite)


def _claims_problem(rpc: RpcFile, location: RpcLocation) -> str | None:
    """Why a request file's content disagrees with where it sits, or ``None``."""
    if rpc.id != location.id:
        return f"its content names request {rpc.id!r}, its file name {location.id!r}"
    if normalise_email(rpc.sender) != normalise_email(location.sender):
        return f"it claims to be from {rpc.sender!r}"
    claimed = (normalise_email(rpc.recipient), rpc.app, rpc.endpoint)
    actual = (normalise_email(location.recipient), location.app, location.endpoint)
    if claimed != actual:
        return f"it is addressed to {'/'.join(claimed)}, not {'/'.join(actual)}"
    return None


def _is_part(path: Path, manifests: set[Path]) -> bool:
    """Whether ``path`` is named like a part of one of ``manifests``, or like a rejected twin
    of one of them or of their parts (:mod:`~syft_flwr_syftbox.rejections`)."""
    original = refused_original(path)
    return manifest_of(original or path) in manifests or original in manifests


def _foreign_reply(rpc: RpcFile, record: FutureRecord) -> str | None:
    """Why a reply file is not the answer to ``record`` (replayed or forged), or ``None``."""
    if rpc.id != record.id:
        return f"its content answers request {rpc.id!r}"
    if normalise_email(rpc.sender) != normalise_email(record.recipient):
        return f"it claims to be from {rpc.sender!r}, not {record.recipient!r}"
    return None


def _resolved(datasites: Path) -> Path:
    """The datasites folder with any symlink the user made resolved, once, at start-up:
    below it, nothing may be a symlink."""
    datasites.mkdir(parents=True, exist_ok=True)
    return datasites.resolve()


def _read_body(body: Body | ReceivedData) -> ReceivedData:
    """A body read from a file, as it is: ``bytes``, the view of the releasable buffer it was
    read into, or a sealed body left in its file (:mod:`~syft_flwr_syftbox.received`), never
    copied to join it."""
    if isinstance(body, bytes | memoryview | ReceivedBody):
        return body
    return join_body(body)


def _to_protobuf(body: Body) -> bytes:
    """What goes into a syft-rpc file for ``body``: an envelope as the Flower protobuf
    syft-flwr 0.5.x reads, anything else (a sealed body) as it is.

    :raises WireFormatError: it claims to be an envelope but is not a valid one.
    """
    data = join_body(body)
    return envelope_to_protobuf(data) if is_envelope(data) else data


def _to_envelope(body: ReceivedData) -> tuple[bytes | memoryview, bool]:
    """A core envelope for a syft-rpc body, and whether it was converted from Flower protobuf.

    A syft-rpc body is decoded from base64 into memory, never left in its file
    (:func:`~syft_flwr.transport.held_body` refuses one that is).

    Envelopes pass as they are; sealed bodies (ours, or syft-crypto's JSON payload) too: the
    core's encryption layer opens them and converts what they contain.

    :raises WireFormatError: ``body`` is neither an envelope, nor sealed, nor Flower protobuf.
    """
    held = held_body(body)
    if is_envelope(held) or is_sealed(held) or is_compat_payload(held):
        return held, False
    return protobuf_to_envelope(held), True


def _medium_error(what: str, exc: OSError | UnsafeFileError) -> TransportError:
    """A failed file operation: the medium's fault (disk full, read-only, folder gone), or a
    hostile folder (a symlink), which no retry fixes."""
    if isinstance(exc, UnsafeFileError):
        return TransportError(f"{what}: {exc}")
    return MediumError(f"{what}: {exc}")
