"""``SyftBoxTransport``: the syft-flwr transport contract over a SyftBox datasites folder.

Sending writes ``<id>.request`` into the recipient's app folder under this identity's sender
folder (:mod:`~syft_flwr_syftbox.layout`), atomically (:mod:`~syft_flwr_syftbox.atomic`), and
records the future durably (:mod:`~syft_flwr_syftbox.store`) before the file appears, so a
reply can never outrun its future. The reply is ``<id>.response`` beside it; the folder watcher
(:mod:`~syft_flwr_syftbox.watcher`) reports it and :meth:`Transport.reply_arrived` wakes the
grid at once. Replies are parsed only when polled, so a half-written reply (a non-atomic peer)
just reads as "not yet".

Serving reads requests for this datasite in arrival order in :meth:`SyftBoxTransport.run`:
each is parsed, checked against the folder it sits in (the folder is the sender: a file that
claims another sender, id or address is refused and never reaches the handler), recorded as
served before the handler runs (at most once, also across duplicates and restarts), and
answered beside it in the format it came in. Expired requests get an expiry reply instead.

Every wait is event-driven; the only timer is the watcher's sweep (``poll_interval``), which
catches missed events and drives cleanup of stale files and futures every
``cleanup_interval``.
"""

from __future__ import annotations

import logging
import math
import threading
import time
import uuid
from collections import deque
from collections.abc import Mapping
from dataclasses import replace
from pathlib import Path
from typing import ClassVar

from syft_flwr.errors import BodyTooLargeError, TransportError, WireFormatError
from syft_flwr.node_ids import normalise_email
from syft_flwr.transport import (
    Reply,
    ReplyStatus,
    Request,
    RequestHandler,
    Transport,
    TransportCapabilities,
    TransportSettings,
)
from syft_flwr_syftbox.acl import ensure_rpc_acl
from syft_flwr_syftbox.addresses import check_app, check_datasite, check_endpoint
from syft_flwr_syftbox.atomic import is_temp_name, write_atomic
from syft_flwr_syftbox.files import encode_rpc_file, read_rpc_file
from syft_flwr_syftbox.flower_bridge import envelope_to_protobuf, is_envelope, to_envelope
from syft_flwr_syftbox.layout import FileKind, Layout, RpcLocation
from syft_flwr_syftbox.options import SyftBoxOptions
from syft_flwr_syftbox.rpcfile import (
    IncompleteFileError,
    RpcFile,
    WireFormat,
    default_status_code,
)
from syft_flwr_syftbox.store import FutureRecord, StateStore
from syft_flwr_syftbox.watcher import FolderWatcher

__all__ = ["SyftBoxTransport"]

logger = logging.getLogger(__name__)

_Body = bytes | bytearray | memoryview
_CLOSE_WAIT = 30.0


class SyftBoxTransport(Transport):
    """A transport over a SyftBox datasites folder (``transport = "syftbox"``).

    Options (``[tool.syft_flwr.syftbox]``, see :class:`~syft_flwr_syftbox.options.SyftBoxOptions`):
    ``data_dir``, ``wire`` (``"native"`` or ``"syft-rpc"``), ``max_body_size``, ``fsync``,
    ``cleanup_interval``, ``stale_after``.

    :param settings: identity (an email), options, project dir, poll interval.
    :param environ: the environment to read ``SYFTBOX_*`` from (``os.environ`` by default).
    :raises InvalidAddressError: the identity is not a safe email.
    :raises ConfigError: the options are malformed or no SyftBox folder can be found.
    """

    encrypt_by_default: ClassVar[bool] = True
    """End-to-end encryption is on unless ``SYFT_FLWR_ENCRYPTION_ENABLED=false``."""

    def __init__(
        self, settings: TransportSettings, *, environ: Mapping[str, str] | None = None
    ) -> None:
        super().__init__(settings)
        check_datasite(settings.identity)
        self.options = SyftBoxOptions.resolve(settings, environ)
        self.layout = Layout(self.options.datasites)
        self._me = normalise_email(settings.identity)
        self._capabilities = TransportCapabilities(
            notifies=True,
            max_body_size=self.options.max_body_size,
            persistent=True,
            encrypted=False,
        )
        self._store = StateStore(self.options.state_dir(settings.identity) / "state.sqlite3")
        self._cond = threading.Condition()
        # Guarded by _cond.
        self._pending: dict[str, FutureRecord] = {}
        self._settled_expired: set[str] = set()  # futures poll() has reported expired
        self._forgotten: dict[str, FutureRecord] = {
            record.id: record for record in self._store.futures(forgotten=True)
        }
        self._handlers: dict[tuple[str, str], RequestHandler] = {}
        self._inbox: deque[Path] = deque()
        self._queued: set[Path] = set()
        self._handled: dict[tuple[str, str], float] = {}
        self._unreadable: dict[Path, tuple[int, int]] = {}  # (size, mtime_ns) when it failed
        self._running = False
        self._run_thread: threading.Thread | None = None
        self._stop_requested = False
        self._closed = False
        self._next_cleanup = 0.0
        self._watcher = FolderWatcher.attach(self.options.datasites, self)

    @property
    def capabilities(self) -> TransportCapabilities:
        """Notifying, persistent, not (yet) encrypted; ``max_body_size`` from the options."""
        return self._capabilities

    @property
    def sweep_interval(self) -> float:
        """The watcher's rescan period: the core's ``poll_interval``."""
        return self.settings.poll_interval

    # -- sending side ---------------------------------------------------------------------

    def send(self, datasite: str, app: str, endpoint: str, body: bytes, expires_at: float) -> str:
        """Write a request for ``endpoint`` of ``app`` at ``datasite``; return its future id.

        With ``wire = "syft-rpc"`` the body must be a core envelope: it is written as Flower
        protobuf inside syft-rpc's JSON, as syft-flwr 0.5.x expects.

        :raises InvalidAddressError: an address part is unsafe.
        :raises BodyTooLargeError: the body exceeds ``max_body_size``.
        :raises WireFormatError: ``wire = "syft-rpc"`` and the body is not a core envelope.
        :raises TransportError: the transport is closed or the file cannot be written.
        :raises ValueError: ``expires_at`` is NaN.
        """
        check_datasite(datasite)
        check_app(app)
        check_endpoint(endpoint)
        payload = _as_bytes(body)
        self._check_size(len(payload), "request")
        if math.isnan(expires_at):
            raise ValueError("expires_at must be a time, not NaN")
        if self.options.wire is WireFormat.SYFT_RPC and is_envelope(payload):
            payload = envelope_to_protobuf(payload)  # sealed bodies go as they are
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
            path.parent.mkdir(parents=True, exist_ok=True)
            write_atomic(path, encode_rpc_file(rpc), fsync=self.options.fsync)
        except OSError as exc:
            with self._cond:
                self._pending.pop(future_id, None)
            self._store.delete_future(future_id)
            raise TransportError(f"cannot write request {path}: {exc}") from exc
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
        future_id = record.id
        path = self._path(record, FileKind.RESPONSE)
        try:
            if path.stat().st_mtime > record.expires:
                return expired  # the answer arrived too late: it is ignored
            rpc = read_rpc_file(path, FileKind.RESPONSE, self.options.max_body_size)
        except FileNotFoundError:
            return expired if now >= record.expires else None
        except BodyTooLargeError as exc:
            return Reply(future_id, ReplyStatus.REJECTED, detail=f"reply refused: {exc}")
        except WireFormatError as exc:
            level = logging.DEBUG if isinstance(exc, IncompleteFileError) else logging.INFO
            logger.log(level, "reply to %s is not readable yet: %s", future_id, exc)
            return expired if now >= record.expires else None
        return self._reply(record, rpc)

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
        if self._path(record, FileKind.RESPONSE).exists() or time.time() >= record.expires:
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
        check_app(app)
        check_endpoint(endpoint)
        if not callable(handler):
            raise TypeError(f"handler {handler!r} is not callable")
        try:
            ensure_rpc_acl(self.layout.rpc_dir(self.identity, app), fsync=self.options.fsync)
            self.layout.endpoint_dir(self.identity, app, endpoint).mkdir(
                parents=True, exist_ok=True
            )
        except OSError as exc:
            raise TransportError(f"cannot prepare {app}/{endpoint} for serving: {exc}") from exc
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
                    path = self._inbox.popleft()
                    self._queued.discard(path)
                self._serve_file(path)
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
        elif forgotten is not None:
            self._discard(forgotten)

    def sweep(self) -> None:
        """Catch missed events, expire futures, and clean up when due (watcher thread)."""
        with self._cond:
            if self._closed:
                return
            pending = list(self._pending.values())
            forgotten = list(self._forgotten.values())
            serving = bool(self._handlers)
        now = time.time()
        for record in pending:
            if now >= record.expires or self._path(record, FileKind.RESPONSE).exists():
                self.reply_arrived(record.id)
        for record in forgotten:
            if now >= record.expires or self._path(record, FileKind.RESPONSE).exists():
                self._discard(record)
        if serving:
            self._scan_requests()
        if time.monotonic() >= self._next_cleanup:
            self._next_cleanup = time.monotonic() + self.options.cleanup_interval
            self._cleanup(now)

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
        if rpc.id != record.id or normalise_email(rpc.sender) != normalise_email(record.recipient):
            logger.warning(
                "reply file for %s claims id %s from %s; expected %s from %s",
                record.id,
                rpc.id,
                rpc.sender,
                record.id,
                record.recipient,
            )
            return Reply(
                record.id, ReplyStatus.REJECTED, detail="the reply file names another request"
            )
        if rpc.status is not ReplyStatus.OK:
            return Reply(record.id, rpc.status, detail=rpc.detail)
        body = rpc.body
        if rpc.format is WireFormat.SYFT_RPC:
            if not body:
                return Reply(
                    record.id,
                    ReplyStatus.REJECTED,
                    detail=f"{record.recipient} sent an empty reply",
                )
            try:
                body, _ = to_envelope(body)
            except WireFormatError as exc:
                return Reply(record.id, ReplyStatus.REJECTED, detail=f"unusable reply: {exc}")
        return Reply(record.id, ReplyStatus.OK, body=body)

    def _discard(self, record: FutureRecord) -> None:
        """Remove a future's files and row (answered, expired, or forgotten and done)."""
        for kind in FileKind:
            _unlink(self._path(record, kind))
        with self._cond:
            self._pending.pop(record.id, None)
            self._forgotten.pop(record.id, None)
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
            self._inbox.append(path)
            self._cond.notify_all()

    def _scan_requests(self) -> None:
        """Queue every request file in the served endpoints not handled yet."""
        with self._cond:
            endpoints = list(self._handlers)
        for app, endpoint in endpoints:
            folder = self.layout.endpoint_dir(self.identity, app, endpoint)
            for path in _files(folder):
                if not path.name.endswith(FileKind.REQUEST.value) or not self._changed(path):
                    continue
                location = self.layout.parse(path)
                if location is not None:
                    self._enqueue(path, location)

    def _changed(self, path: Path) -> bool:
        """False for a file that failed to parse and has not changed since."""
        with self._cond:
            seen = self._unreadable.get(path)
        if seen is None:
            return True
        try:
            stat = path.stat()
        except FileNotFoundError:
            with self._cond:
                self._unreadable.pop(path, None)
            return False
        return (stat.st_size, stat.st_mtime_ns) != seen

    def _serve_file(self, path: Path) -> None:
        location = self.layout.parse(path)
        if location is None or normalise_email(location.recipient) != self._me:
            return
        key = (normalise_email(location.sender), location.id)
        with self._cond:
            handler = self._handlers.get((location.app, location.endpoint))
            handled = key in self._handled
        if handler is None or handled:
            return
        if path.with_suffix(FileKind.RESPONSE.value).exists():
            with self._cond:
                # answered by an earlier instance; remembered until cleanup
                self._handled[key] = time.time() + self.options.stale_after
            return
        try:
            rpc = read_rpc_file(path, FileKind.REQUEST, self.options.max_body_size)
        except FileNotFoundError:
            return
        except BodyTooLargeError as exc:
            self._refuse(path, location, None, f"request refused: {exc}", code=413)
            return
        except WireFormatError as exc:
            self._note_unreadable(path, location, exc)
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
        if time.time() >= rpc.expires:
            logger.info("%s: request %s from %s expired unanswered", self.identity, rpc.id, key[0])
            self._answer(path, location, rpc, ReplyStatus.EXPIRED, detail="Request expired")
            return
        self._deliver(path, location, rpc, handler)

    def _deliver(
        self, path: Path, location: RpcLocation, rpc: RpcFile, handler: RequestHandler
    ) -> None:
        converted = False
        body = rpc.body
        if rpc.format is WireFormat.SYFT_RPC:
            try:
                body, converted = to_envelope(body)
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
        if not isinstance(reply, _Body):
            logger.error("%s: handler returned %s, not bytes", self.identity, type(reply).__name__)
            self._refuse(path, location, rpc, "handler returned no bytes", code=500)
            return
        payload = _as_bytes(reply)
        try:
            self._check_size(len(payload), "reply")
            if converted:
                payload = envelope_to_protobuf(payload)
        except (BodyTooLargeError, WireFormatError) as exc:
            logger.error("%s: cannot send the reply to %s: %s", self.identity, rpc.id, exc)
            self._refuse(path, location, rpc, f"reply refused: {exc}", code=500)
            return
        self._answer(path, location, rpc, ReplyStatus.OK, body=payload)

    def _refuse(
        self, path: Path, location: RpcLocation, rpc: RpcFile | None, detail: str, *, code: int
    ) -> None:
        with self._cond:
            self._handled[(normalise_email(location.sender), location.id)] = (
                rpc.expires if rpc else time.time() + self.options.stale_after
            )
        self._answer(path, location, rpc, ReplyStatus.REJECTED, detail=detail, code=code)

    def _answer(
        self,
        path: Path,
        location: RpcLocation,
        rpc: RpcFile | None,
        status: ReplyStatus,
        *,
        body: bytes = b"",
        detail: str = "",
        code: int | None = None,
    ) -> None:
        """Write the response beside the request, in the request's format."""
        now = time.time()
        response = RpcFile(
            kind=FileKind.RESPONSE,
            format=rpc.format if rpc else _format_of(path),
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
            write_atomic(target, encode_rpc_file(response), fsync=self.options.fsync)
        except FileExistsError:
            logger.debug("%s was answered meanwhile", target)
        except OSError as exc:
            logger.error("%s: cannot write the reply %s: %s", self.identity, target, exc)

    def _note_unreadable(self, path: Path, location: RpcLocation, exc: WireFormatError) -> None:
        """Remember an unreadable file; it is retried when it changes (a writer finishing)."""
        try:
            stat = path.stat()
        except FileNotFoundError:
            return
        with self._cond:
            self._unreadable[path] = (stat.st_size, stat.st_mtime_ns)
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
            for path in [p for p in self._unreadable if not p.exists()]:
                del self._unreadable[path]
        for app, endpoint in endpoints:
            for path in _files(self.layout.endpoint_dir(self.identity, app, endpoint)):
                self._clean_file(path, stale, horizon)

    def _clean_file(self, path: Path, stale: set[tuple[str, str]], horizon: float) -> None:
        try:
            modified = path.stat().st_mtime
        except FileNotFoundError:
            return
        if is_temp_name(path.name):
            if modified < horizon:
                _unlink(path)  # left behind by a writer that crashed
            return
        location = self.layout.parse(path)
        if location is None or location.kind is not FileKind.REQUEST:
            return
        key = (normalise_email(location.sender), location.id)
        with self._cond:
            unreadable = path in self._unreadable
        if key in stale or (unreadable and modified < horizon):
            _unlink(path)
            _unlink(path.with_suffix(FileKind.RESPONSE.value))

    def _check_size(self, size: int, what: str) -> None:
        limit = self.options.max_body_size
        if size > limit:
            raise BodyTooLargeError(
                f"{what} body of {size} bytes exceeds the syftbox transport's max_body_size of "
                f"{limit} bytes; raise [tool.syft_flwr.syftbox] max_body_size if this is intended"
            )


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


def _format_of(path: Path) -> WireFormat:
    """The format a request file is written in, from its first byte (for refusing it unread)."""
    try:
        with open(path, "rb") as handle:
            first = handle.read(1)
    except OSError:
        first = b""
    return WireFormat.SYFT_RPC if first == b"{" else WireFormat.NATIVE


def _files(folder: Path) -> list[Path]:
    """Files one level below each sender folder of an endpoint folder."""
    try:
        senders = [entry for entry in folder.iterdir() if entry.is_dir()]
    except FileNotFoundError:
        return []
    files: list[Path] = []
    for sender in senders:
        try:
            files.extend(entry for entry in sender.iterdir() if entry.is_file())
        except FileNotFoundError:
            continue
    return files


def _as_bytes(body: _Body) -> bytes:
    if isinstance(body, bytes):
        return body
    if isinstance(body, bytearray | memoryview):
        return bytes(body)
    raise TypeError(f"body must be bytes, bytearray or memoryview, not {type(body).__name__}")


def _unlink(path: Path) -> None:
    try:
        path.unlink()
    except FileNotFoundError:
        pass
    except OSError as exc:
        logger.warning("cannot remove %s: %s", path, exc)
