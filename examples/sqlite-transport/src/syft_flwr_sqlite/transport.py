"""``SqliteTransport``: the syft-flwr transport contract over a shared SQLite database.

Every participant (the aggregator and each datasite) is a process on one machine that
opens the same database file. Sending inserts a request row; the recipient's serving loop
claims it, calls the handler and stores the answer as a reply row; the sender polls for
that row. Nothing lives only in memory, so a future outlives the process that created it
and a request outlives a recipient that is not running yet.

Choices this transport makes where the contract leaves room:

- **Polling, not notification.** SQLite cannot wake another process, so
  ``capabilities.notifies`` is ``False`` and waiters poll every
  ``settings.poll_interval`` seconds; each poll is one indexed query.
- **At most once.** A request is claimed before its handler runs and never handed out
  again, even if the claiming process dies: its sender then sees ``EXPIRED`` at the
  deadline, which the grid turns into an error reply. Redelivering could run a training
  round twice.
- **Unserved endpoints expire.** A request for an endpoint this instance does not serve is
  left for another process of the same datasite that might; if nobody does, it ends
  ``EXPIRED``. It never reaches another endpoint's handler.
- **Rows are read as hostile.** Anyone who can write the file can write any row (see the
  README's threat model), so a claimed row is read without its body first: every column is
  checked (names with :mod:`syft_flwr.addresses`, types, the body's type and length), the
  request screen is asked (:meth:`~syft_flwr.transport.Transport.screen_request`) and the
  length compared with ``max_body_size``; only then is the body loaded, and only if the row
  still holds the sender and length that were checked. A malformed row is deleted unanswered;
  a refused request is answered ``REJECTED`` with the reason.
"""

from __future__ import annotations

import logging
import math
import re
import threading
import time
import uuid
from collections.abc import Collection
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

from syft_flwr.addresses import check_app, check_datasite, check_endpoint
from syft_flwr.errors import (
    BodyTooLargeError,
    InvalidAddressError,
    RequestRefusedError,
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
    join_body,
)

from syft_flwr_sqlite.options import SqliteOptions
from syft_flwr_sqlite.store import ClaimedRow, Store

__all__ = ["SqliteTransport"]

logger = logging.getLogger(__name__)

_REQUEST_ID_RE = re.compile(r"[0-9a-f]{32}")
"""A request id as :meth:`SqliteTransport.send` writes it (``uuid4().hex``)."""

_CHANGED_DETAIL = "the request changed in the database after it was screened"
"""The refusal of a row whose sender or body was rewritten between its screen and its read."""


@dataclass(frozen=True)
class _Checked:
    """A claimed row every column of which checked out, as the screen and the handler see it."""

    head: RequestHead
    created_at: float
    expires_at: float


class SqliteTransport(Transport):
    """A transport whose medium is a SQLite database file shared by local processes.

    Options (``[tool.syft_flwr.sqlite]``, see :class:`~syft_flwr_sqlite.options.SqliteOptions`):
    ``database`` (required), ``max_body_size``, ``busy_timeout``, ``retention``,
    ``cleanup_interval``.

    :param settings: identity (an email), options and poll interval.
    :raises ConfigError: an option is missing or malformed, or the database is unusable.
    :raises InvalidAddressError: the identity is not a safe email.
    """

    name: ClassVar[str] = "sqlite"
    """What users write in ``[tool.syft_flwr] transport = "sqlite"``."""

    description: ClassVar[str] = (
        "Processes on one machine exchanging messages through a shared SQLite database file."
    )

    @classmethod
    def local_options(cls, workdir: Path) -> dict[str, Any]:
        """A database file in the run's private ``workdir``, shared by all its participants."""
        return {"database": str(workdir / "syft-flwr.sqlite3")}

    def __init__(self, settings: TransportSettings) -> None:
        super().__init__(settings)
        check_datasite(settings.identity)
        self.options = SqliteOptions.from_settings(settings)
        self._capabilities = TransportCapabilities(
            notifies=False,
            max_body_size=self.options.max_body_size,
            persistent=True,
            screens_requests=True,
            delivers_once=True,
            accepts_frames=True,
        )
        self._store = Store(self.options.database, self.options.busy_timeout)
        self._instance = f"{settings.identity}/{uuid.uuid4().hex[:12]}"
        self._lock = threading.Lock()  # guards the handlers and the flags below
        self._handlers: dict[tuple[str, str], RequestHandler] = {}
        self._running = False
        self._closed = False
        self._stop = threading.Event()
        self._next_cleanup = 0.0  # time.monotonic() of the next clean-up; 0: at first chance

    @property
    def capabilities(self) -> TransportCapabilities:
        """Polling, persistent, not encrypted; ``max_body_size`` from the options; requests are
        screened before their body is loaded."""
        return self._capabilities

    # -- sending side -----------------------------------------------------------------------

    def send(self, datasite: str, app: str, endpoint: str, body: Body, expires_at: float) -> str:
        """Queue ``body`` for ``endpoint`` of ``app`` at ``datasite``; return the future id.

        The recipient need not be running: the request waits in the database until it is
        claimed or expires. A body given as frames is joined once: a row holds one blob.

        :raises InvalidAddressError: an address part is unsafe.
        :raises BodyTooLargeError: the body exceeds ``max_body_size``.
        :raises TransportError: the transport is closed or the database failed.
        :raises ValueError: ``expires_at`` is NaN.
        """
        check_datasite(datasite)
        check_app(app)
        check_endpoint(endpoint)
        payload = join_body(body)
        self._check_size(payload, "body")
        if math.isnan(expires_at):
            raise ValueError("expires_at must be a time, not NaN")
        future_id = uuid.uuid4().hex
        request = Request(
            id=future_id,
            sender=self.identity,  # recorded by the transport, never taken from the body
            recipient=datasite,
            app=app,
            endpoint=endpoint,
            body=payload,
            created_at=time.time(),
            expires_at=expires_at,
        )
        self._store.add(request)
        self._maybe_cleanup()
        return future_id

    def poll(self, future_id: str) -> Reply | None:
        """The reply to ``future_id``, ``EXPIRED`` once its deadline passed unanswered.

        Works for futures created by earlier instances (or processes) with this identity.
        """
        state = self._store.future(future_id, self.identity)
        if state is None or state.reply is not None:
            return None if state is None else state.reply
        now = time.time()
        if now < state.expires_at:
            return None
        return self._store.expire(future_id, self.identity, now)

    def forget(self, future_id: str) -> None:
        """Drop the future; a request not delivered yet still goes out, unanswered."""
        self._store.forget(future_id, self.identity, time.time())

    # -- serving side -----------------------------------------------------------------------

    def serve(self, app: str, endpoint: str, handler: RequestHandler) -> None:
        """Register ``handler`` for ``endpoint`` of ``app`` (replacing any previous one).

        May be called while :meth:`run` is running; the next poll picks it up.

        :raises InvalidAddressError: ``app`` or ``endpoint`` is unsafe.
        :raises TypeError: ``handler`` is not callable.
        """
        check_app(app)
        check_endpoint(endpoint)
        if not callable(handler):
            raise TypeError(f"handler {handler!r} is not callable")
        with self._lock:
            self._handlers[(app, endpoint)] = handler

    def run(self) -> None:
        """Claim and answer this datasite's requests, one at a time, until :meth:`stop`.

        A :meth:`stop` that comes while ``run`` is not running makes the next ``run``
        return at once: a stop racing a thread that is about to call ``run`` is not lost.
        On a closed transport ``run`` returns immediately.

        :raises TransportError: ``run`` is already running in another thread.
        """
        with self._lock:
            if self._running:
                raise TransportError(f"{self.identity}: run() is already running")
            self._running = True
        try:
            while not (self._stop.is_set() or self._closed):
                if not self._serve_one():
                    self._stop.wait(self.settings.poll_interval)
        finally:
            with self._lock:
                self._running = False
                self._stop.clear()

    def stop(self) -> None:
        """Make :meth:`run` return after the request in hand, if any; idempotent."""
        self._stop.set()

    def close(self) -> None:
        """Stop serving and close the database connection; the rows stay. Idempotent."""
        with self._lock:
            if self._closed:
                return
            self._closed = True
        self._stop.set()
        self._store.close()

    # -- internals --------------------------------------------------------------------------

    def _serve_one(self) -> bool:
        """Handle the next deliverable request; ``False`` if there was none."""
        self._maybe_cleanup()
        with self._lock:
            handlers = dict(self._handlers)
        try:
            row = self._store.claim_next(
                self.identity, handlers.keys(), self._instance, time.time()
            )
            if row is None:
                return False
            checked = _check(row, self.identity, handlers.keys())
            if isinstance(checked, str):
                logger.warning(
                    "%s: deleting malformed request row %d: %s", self.identity, row.rowid, checked
                )
                self._store.delete(row)
                return True
            head = checked.head
            reply = self._reply(row, checked, handlers[(head.app, head.endpoint)])
            self._store.settle(head.id, reply, time.time())
        except TransportError:
            # Closed under our feet, or the database is busy beyond busy_timeout: try again
            # after a poll interval rather than let one bad moment end the serving loop.
            if not self._closed:
                logger.warning(
                    "%s: serving loop hit a database error", self.identity, exc_info=True
                )
            return False
        return True

    def _reply(self, row: ClaimedRow, checked: _Checked, handler: RequestHandler) -> Reply | None:
        """Screen, size-check, then load and hand over a claimed request: the reply to store."""
        head = checked.head
        refusal = self._screened(head)
        if refusal is None:
            refusal = self._oversized(head)
        if refusal is not None:
            self._store.drop_body(row)
            return Reply(head.id, ReplyStatus.REJECTED, detail=refusal)
        body = self._store.take_body(row, self._instance)
        if body is None:
            logger.warning(
                "%s: not delivering request %s from %s: %s",
                self.identity,
                head.id,
                head.sender,
                _CHANGED_DETAIL,
            )
            return Reply(head.id, ReplyStatus.REJECTED, detail=_CHANGED_DETAIL)
        request = Request(
            id=head.id,
            sender=head.sender,
            recipient=head.recipient,
            app=head.app,
            endpoint=head.endpoint,
            body=body,
            created_at=checked.created_at,
            expires_at=checked.expires_at,
        )
        return self._answer(handler, request)

    def _screened(self, head: RequestHead) -> str | None:
        """The screen's reason to refuse a request, asked before its body is loaded.

        The screen logs its own decisions; one that fails refuses (a broken policy admits
        nobody) instead of ending the serving loop.
        """
        try:
            return self.screen_request(head)
        except Exception as exc:
            logger.exception("%s: the request screen raised on %s", self.identity, head.id)
            return f"the request screen raised {type(exc).__name__}: {exc}"

    def _oversized(self, head: RequestHead) -> str | None:
        """Why a request is too large to load, judged by the stored body's length."""
        limit = self.options.max_body_size
        if head.size is None or head.size <= limit:
            return None
        reason = (
            f"request body of {head.size} bytes exceeds the sqlite transport's "
            f"max_body_size of {limit} bytes"
        )
        logger.info(
            "%s: refusing request %s from %s: %s", self.identity, head.id, head.sender, reason
        )
        return reason

    def _answer(self, handler: RequestHandler, request: Request) -> Reply | None:
        """What ``handler`` makes of ``request``, as the reply to store (``None``: none)."""
        if request.expired():  # claimed in time, but the deadline passed since
            return None
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
            return Reply(request.id, ReplyStatus.REJECTED, detail=str(exc))
        except Exception as exc:  # the handler's bug must not end the serving loop
            return self._rejected(request, f"handler raised {type(exc).__name__}: {exc}", exc)
        if body is None:
            return None
        try:
            payload = join_body(body)  # a reply may be frames; a row holds one blob
        except TypeError:
            return self._rejected(request, f"handler returned {type(body).__name__}, not bytes")
        try:
            self._check_size(payload, "reply body")
        except BodyTooLargeError as exc:
            return self._rejected(request, str(exc))
        return Reply(request.id, ReplyStatus.OK, body=payload)

    def _rejected(self, request: Request, detail: str, error: Exception | None = None) -> Reply:
        logger.error(
            "%s: rejecting request %s from %s to %s/%s: %s",
            self.identity,
            request.id,
            request.sender,
            request.app,
            request.endpoint,
            detail,
            exc_info=error,
        )
        return Reply(request.id, ReplyStatus.REJECTED, detail=detail)

    def _check_size(self, payload: bytes, what: str) -> None:
        limit = self.options.max_body_size
        if len(payload) > limit:
            raise BodyTooLargeError(
                f"{what} of {len(payload)} bytes exceeds the sqlite transport's "
                f"max_body_size of {limit} bytes"
            )

    def _maybe_cleanup(self) -> None:
        """Delete old rows every ``cleanup_interval`` seconds.

        Both sides call this (the aggregator never runs a serving loop), so a database
        shared by a long-lived federation does not grow without bound. Several instances
        cleaning up at once is harmless: each deletion is one statement.
        """
        now = time.monotonic()
        with self._lock:
            if now < self._next_cleanup:
                return
            self._next_cleanup = now + self.options.cleanup_interval
        try:
            removed = self._store.cleanup(time.time(), self.options.retention)
        except TransportError:
            logger.warning("%s: clean-up of old rows failed", self.identity, exc_info=True)
            return
        if removed:
            logger.debug("%s: removed %d old requests", self.identity, removed)


def _check(row: ClaimedRow, recipient: str, served: Collection[tuple[str, str]]) -> _Checked | str:
    """The row as a request, or why no sender's transport can have written it.

    :param recipient: this datasite (the inbox query asked for it, but the row is re-read).
    :param served: the ``(app, endpoint)`` pairs the claim asked for.
    """
    try:
        request_id = _request_id(row.id)
        sender = check_datasite(_text(row.sender, "sender"))
        app = check_app(_text(row.app, "app"))
        endpoint = check_endpoint(_text(row.endpoint, "endpoint"))
    except InvalidAddressError as exc:
        return str(exc)
    if row.recipient != recipient or (app, endpoint) not in served:
        return (
            f"it is for {row.recipient!r} at {app}/{endpoint}, which this instance does not serve"
        )
    if row.body_type != "blob" or not isinstance(row.size, int):
        return f"its body is {row.body_type!r}, not bytes"
    created_at, expires_at = _time(row.created_at), _time(row.expires_at)
    if created_at is None or expires_at is None:
        return f"its times {row.created_at!r}, {row.expires_at!r} are not both numbers"
    head = RequestHead(request_id, sender, recipient, app, endpoint, row.size)
    return _Checked(head, created_at, expires_at)


def _text(value: object, column: str) -> str:
    if not isinstance(value, str):
        raise InvalidAddressError(f"{column} {value!r} is not text")
    return value


def _request_id(value: object) -> str:
    if not isinstance(value, str) or not _REQUEST_ID_RE.fullmatch(value):
        raise InvalidAddressError(f"request id {value!r} is not one a sender's transport writes")
    return value


def _time(value: object) -> float | None:
    """A time column's value as seconds, ``None`` if it is not a number (SQLite stores NaN as
    ``NULL``, so a number here is never NaN)."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    return float(value)
