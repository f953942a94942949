"""The transport contract: what ``SyftGrid`` and the client runner need from a transport.

A transport moves opaque bodies (encoded envelopes) between datasites, addressed by
``(datasite, app, endpoint)``. The server side sends requests and collects replies through
*future ids*; the client side serves an endpoint with a handler whose return value is the
reply body. Transports know nothing about Flower: encoding, routing to node ids, TTL policy
and the stop signal live in the core, so a transport plugin stays small.

Waiting is event-driven where the transport can notify (it calls :meth:`Transport.reply_arrived`
the moment a reply lands) and falls back to polling every ``poll_interval`` seconds
otherwise (``SYFT_FLWR_POLL_INTERVAL``).

Who may ask a datasite for what is decided by the core (:mod:`syft_flwr.authorization`), never by
a transport, but a transport helps in two ways: it establishes ``Request.sender`` from the medium
(a folder only that sender can write, an authenticated account), and, where it can look at a
request before reading its body, it asks :meth:`Transport.screen_request` first, so a stranger's
200 MiB file is refused without being read. A handler refuses a request by raising
:class:`~syft_flwr.errors.RequestRefusedError`; the transport answers ``REJECTED`` with the
error's message as the detail.

One owner per guarantee
-----------------------

Each guarantee has one owner that checks it; the other layers rely on it instead of checking
again. The layers are the *transport* (both ends of the medium), the *grid* (the server side,
:mod:`syft_flwr.grid.syft_grid`, which opens replies with its channel) and the *client
gate* (:class:`syft_flwr.grid.gate.RequestGate`, which opens requests with its channel, for the
Flower and the aux endpoints alike). A layer that sees bytes no owner has checked yet checks them
itself, and where two checks differ in strength the strong one stays with its owner. The
capabilities ``screens_requests`` and ``delivers_once`` are how a transport takes a check over.

===============  ===========================================  ======================================
Guarantee        Owner: what it checks                        The others may assume
===============  ===========================================  ======================================
Sender           Transport: ``Request.sender`` comes from     Nobody reads a sender from a body. The
                 the medium (a folder only that sender        seal check is the strong one and stays
                 writes, an owner-checked account); a file    with the channel.
                 whose own header claims another sender or
                 address is refused. Encrypted: the channel
                 (gate's and grid's) verifies the seal
                 against that sender, recipient, app and
                 endpoint.

Who may ask      Gate: its ``SenderPolicy``, applied once:    A screening transport calls the
                 by the transport through the gate's screen   installed screen first; the gate asks
                 before a body is read                        its policy only for requests its own
                 (``screens_requests``, gate installed with   screen did not see.
                 ``RequestGate.install``), else in
                 ``admit``.

Expiry           Transport: no request reaches a handler      The gate does not compare the
                 after ``expires_at``; an answer after it is  transport's ``expires_at`` before
                 ignored (``EXPIRED``). Gate: a sealed        opening; an approval hold waits no
                 envelope's authenticated window, and one     longer than the request lives.
                 time-of-use check after opening and
                 decoding. Grid: its own deadline per
                 message (the TTL).

Once to the app  Transport with ``delivers_once``: a request  The gate keeps request ids only for
                 id at most once, across duplicates and       transports without ``delivers_once``.
                 restarts. Gate: request ids otherwise;       The grid collects a reply once and
                 message ids across request ids and           records a sealed reply as seen once it
                 endpoints (answered with the reply given);   is journaled.
                 sealed, the channel's persistent replay
                 store.

Body, size       Transport: a body arrives whole, byte for    Grid and gate decode strictly
                 byte, or not yet (partial files wait);       (anything malformed is a
                 ``max_body_size`` is refused before          ``WireFormatError``).
                 reading. Channel: the AEAD tag.

Addresses        ``syft_flwr.addresses`` in every             Grid and gate pass addresses through;
                 transport's ``send`` and ``serve`` and on    no name read from a medium is routed
                 every name it reads back from its medium,    unchecked.
                 with the options the medium needs.

Right future     Transport: a reply is the answer to its      The grid checks only what the body
                 future (its own header must match). Grid: a  claims (this message id, run and
                 sealed reply opens only as the answer to     node); a foreign reply is ignored,
                 that envelope (``reply_to``).                never used.

Confidentiality  Channel (grid and gate): every body is       Transports move opaque bytes
                 sealed end to end when encryption is on; a   (``encrypted`` is a capability, not a
                 reply that cannot be sealed is not sent.     requirement).
===============  ===========================================  ======================================

One-pass bodies
---------------

A model is not held twice on its way. Going out, a sealed body from 1 MiB on is a
:class:`FrameSource`: sized up front (so a transport can check ``max_body_size`` and write a
length first) and encrypted into one reused buffer as the transport draws its frames
(:func:`stream_body`), once. Only a transport that declares ``accepts_streams`` is handed one;
any other gets it joined (:func:`outgoing_body`), and :func:`body_frames`, which promises frames
a caller may keep, refuses it with a ``TypeError``: a transport that re-reads a body (a retried
upload, an in-process queue, a database row, a plugin written against ``bytes``) is never
silently given a buffer that changes under it. Coming in, ``Request.body`` and ``Reply.body``
are :data:`ReceivedData`: ``bytes``, a ``memoryview`` of a buffer the transport read a large
body into, or, from a transport that can leave a large sealed body in its medium, a
:class:`ReceivedBody` (``len``, :meth:`ReceivedBody.head` and ``bytes(body)`` work; it is only
ever a sealed envelope, which a reader without a channel refuses unread, :func:`held_body`).
For a :class:`ReceivedBody` the channel parses its header, then reads the rest once in chunks
into one reused buffer and decrypts each into the final plaintext; nothing decrypted leaves
before the tag verifies, and a medium that ends early or changes under the reader is an
:class:`IncompleteBodyError` (a ``WireFormatError``: the grid keeps waiting, the gate refuses
the request as unopenable).

Three headers travel with a message, each read by one owner only: the transport's own (a SyftBox
request file's routing fields, which syft-rpc peers read too: routing and screening, never
trusted for more), the sealed envelope's (the authenticated sender, recipient, app, endpoint and
window: the channel's) and the wire codec's (what the bytes decode to: the grid's and the
gate's). They repeat a few facts because each is checked at a different trust level, not to be
checked twice; merging them would make a syft-rpc peer or the seal depend on the other's format.
"""

from __future__ import annotations

import enum
import io
import threading
import time
from abc import ABC, abstractmethod
from collections.abc import Callable, Collection, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

from syft_flwr.errors import SyftFlwrError, WireFormatError

__all__ = [
    "Body",
    "BodyConsumedError",
    "Buffer",
    "FrameSource",
    "IncompleteBodyError",
    "ReceivedBody",
    "ReceivedData",
    "Reply",
    "ReplyStatus",
    "Request",
    "RequestHandler",
    "RequestHead",
    "RequestScreen",
    "Transport",
    "TransportCapabilities",
    "TransportSettings",
    "body_frames",
    "body_size",
    "held_body",
    "join_body",
    "outgoing_body",
    "stream_body",
]

Buffer = bytes | bytearray | memoryview
"""One contiguous piece of a body."""


class BodyConsumedError(SyftFlwrError):
    """A one-pass body (:class:`FrameSource`, :class:`ReceivedBody`) was read a second time."""


class IncompleteBodyError(WireFormatError):
    """A :class:`ReceivedBody`'s medium gave fewer or other bytes than it declared while being
    read (a file truncated or rewritten in place by a sync client): nothing read is trusted."""


class FrameSource(ABC):
    """A body produced as it is written: its size known up front, its frames given once.

    A sealed model is encrypted into one reused buffer of a few MiB as a transport writes it
    (:func:`~syft_flwr.crypto.envelope.seal_stream`), instead of into a model-sized list of
    ciphertext chunks, so sending touches no memory but that buffer and the medium's own. Each
    frame :meth:`frames` yields is valid only until the next is asked for: a writer writes
    it, then asks. Only a transport that declares ``accepts_streams`` is handed one
    (:func:`outgoing_body`); everything else gets it joined (:func:`join_body`).
    """

    def __init__(self, size: int) -> None:
        self.size = size
        self._started = False

    def frames(self) -> Iterator[memoryview]:
        """The body's frames in order, once; each is overwritten by the next.

        :raises BodyConsumedError: the frames were asked for before.
        """
        if self._started:
            raise BodyConsumedError(
                f"{type(self).__name__} is a one-pass body: its frames are produced once"
            )
        self._started = True
        return self._produce()

    @abstractmethod
    def _produce(self) -> Iterator[memoryview]:
        """Produce the frames (called once), :attr:`size` bytes in all."""


class ReceivedBody(ABC):
    """A received body read from its medium once, front to back, as its reader consumes it.

    Given as ``Request.body`` or ``Reply.body`` (one form of :data:`ReceivedData`: ``len``,
    :meth:`head` and ``bytes(body)`` work, the latter reads it whole) by a transport that can
    leave a large sealed body in its file, and only for a sealed one: the core's channel
    reads it in chunks into one reused buffer and decrypts each straight into the final
    plaintext (:func:`~syft_flwr.crypto.envelope.open_frames`), so receiving touches no
    model-sized memory but the plaintext. Every byte is read from the medium exactly once
    (what is authenticated is what was read), never through a memory map of a file a peer may
    truncate (``SIGBUS``). A medium that ends early, or whose check of a piece fails (a part's
    hash), raises :class:`IncompleteBodyError` from the read. What the medium holds open (a
    file) is released once the body is read to its end, or when the body is dropped.
    """

    def __init__(self, size: int) -> None:
        self._size = size
        self._head = b""
        self._done = 0  # bytes taken by readinto, the head included

    def __len__(self) -> int:
        return self._size

    def __bytes__(self) -> bytes:
        """The whole body in one ``bytes`` (one model-sized copy; for small bodies and code
        written against bytes).

        :raises BodyConsumedError: part of it was streamed already.
        :raises IncompleteBodyError: the medium ended early or failed its check.
        """
        if self._done:
            raise BodyConsumedError("a received body is read once: it was streamed already")
        target = io.BytesIO(bytes(self._size))  # shares its buffer: no copy after the read
        with target.getbuffer() as view:
            self.readinto(view)
        data = target.getvalue()
        target.close()
        return data

    def head(self, size: int) -> bytes:
        """The body's first ``min(size, len(self))`` bytes, read once and kept (a header to
        parse before deciding to stream the rest, read again as often as asked).

        :raises BodyConsumedError: the body was streamed past its head already.
        :raises IncompleteBodyError: the medium ended early or failed its check.
        """
        size = min(size, self._size)
        if len(self._head) < size:
            if self._done > len(self._head):
                raise BodyConsumedError("a received body's head is read before streaming it")
            more = bytearray(size - len(self._head))
            self._fill(memoryview(more))
            self._head += more
        return self._head[:size]

    def skip(self, size: int) -> None:
        """Go on reading after the body's first ``size`` bytes, which :meth:`head` has kept
        (a parsed header is not read again).

        :raises BodyConsumedError: the head does not hold them, or reading went past them.
        """
        if size > len(self._head) or self._done > size:
            raise BodyConsumedError("a received body skips only what its head has kept")
        self._done = size

    def readinto(self, target: memoryview) -> int:
        """Fill ``target`` with the body's next bytes (its kept head first); the number of
        bytes given, fewer than ``len(target)`` only at the end.

        :raises IncompleteBodyError: the medium ended early or failed its check.
        """
        given = 0
        if self._done < len(self._head):
            kept = memoryview(self._head)[self._done : self._done + len(target)]
            target[: len(kept)] = kept
            given = len(kept)
            self._done += given
        room = min(len(target), self._size - self._done + given)
        if room > given:
            self._fill(target[given:room])
            self._done += room - given
            given = room
        return given

    def _fill(self, target: memoryview) -> None:
        """Read exactly ``len(target)`` next bytes from the medium."""
        done = 0
        while done < len(target):
            count = self._read(target[done:])
            if not count:
                raise IncompleteBodyError(
                    f"the body ended after {done} of {len(target)} more bytes it declared"
                )
            done += count

    @abstractmethod
    def _read(self, target: memoryview) -> int:
        """Read the medium's next bytes into ``target``; how many (0 only at its end)."""


ReceivedData = bytes | memoryview | ReceivedBody
"""What a transport hands over as ``Request.body`` or ``Reply.body``: ``bytes`` (small bodies,
and every body of a transport that reads a body whole), a ``memoryview`` of a buffer it read a
large body into (a :class:`~syft_flwr.body_buffer.BodyBuffer` its reader releases as it reads),
or a :class:`ReceivedBody` for a large sealed body left in its medium. All three have ``len``
and ``bytes(body)``; only the first two are buffers (slices, :func:`memoryview`), and only the
channel reads the third (see :func:`held_body`)."""


def held_body(body: ReceivedData) -> bytes | memoryview:
    """``body`` as the buffer a reader without a channel decodes (a plaintext run).

    A :class:`ReceivedBody` is only ever a sealed envelope left in its medium, which only the
    channel opens: it is refused unread here, never read whole to find that out.

    :raises WireFormatError: ``body`` is a :class:`ReceivedBody`.
    """
    if isinstance(body, ReceivedBody):
        raise WireFormatError(
            f"expected bytes or a memoryview, got {type(body).__name__}: a body left in its "
            "medium is a sealed envelope, which only the channel opens"
        )
    return body


Body = Buffer | Sequence[Buffer] | FrameSource
"""What :meth:`Transport.send` (and a :data:`RequestHandler`) may hand over: one buffer, the
*frames* of one body (the wire codec's :func:`~syft_flwr.wire.encode_message_frames`: a small
header, then each array's own buffer, referenced, not copied), or a one-pass
:class:`FrameSource` (a sealed model, encrypted as it is written). The body is their
concatenation; a transport that writes a file or streams an upload writes the frames one after
the other (:func:`stream_body`), so a multi-gigabyte model is never joined into one more copy."""


def body_frames(body: Body) -> Iterator[memoryview]:
    """The non-empty frames of ``body`` as byte views, in order (nothing is copied).

    Every view stays valid, so a caller may keep them; a one-pass body is refused (read it
    with :func:`stream_body`, or :func:`join_body` it).

    :raises TypeError: ``body`` is neither a buffer nor a sequence of buffers.
    """
    if isinstance(body, FrameSource):
        raise TypeError(
            f"a {type(body).__name__} is a one-pass body whose frames are not kept: write it "
            "with stream_body() (declare accepts_streams) or take join_body() of it"
        )
    frames = (body,) if isinstance(body, Buffer) else body
    if not isinstance(frames, Sequence):
        raise TypeError(f"a body is bytes or a sequence of bytes, not {type(body).__name__}")
    for frame in frames:
        if not isinstance(frame, Buffer):
            raise TypeError(
                f"a body frame must be bytes or a memoryview, not {type(frame).__name__}"
            )
        view = memoryview(frame).cast("B")
        if len(view):
            yield view


def stream_body(body: Body) -> Iterator[memoryview]:
    """The non-empty frames of any body, in order, each valid only until the next is drawn
    (what a writer that writes each frame before asking for the next needs).

    :raises TypeError: as :func:`body_frames`.
    :raises BodyConsumedError: a one-pass body was streamed before.
    """
    if isinstance(body, FrameSource):
        return (view for view in body.frames() if len(view))
    return body_frames(body)


def body_size(body: Body) -> int:
    """The length in bytes of ``body``, without joining (or producing) its frames.

    :raises TypeError: as :func:`body_frames`.
    """
    if isinstance(body, FrameSource):
        return body.size
    return sum(len(view) for view in body_frames(body))


def join_body(body: Body) -> bytes:
    """``body`` as one ``bytes`` object: itself if it already is one, else one copy.

    For transports that must hold a body in one piece (an in-process queue, a database row);
    a one-pass body is produced straight into its final ``bytes``.

    :raises TypeError: as :func:`body_frames`.
    :raises BodyConsumedError: a one-pass body was streamed before.
    """
    if isinstance(body, bytes):
        return body
    if not isinstance(body, FrameSource):
        return b"".join(body_frames(body))
    target = io.BytesIO(bytes(body.size))  # shares its buffer: no copy once filled
    with target.getbuffer() as view:
        done = 0
        for frame in stream_body(body):
            view[done : done + len(frame)] = frame
            done += len(frame)
    if done != body.size:
        raise ValueError(f"a {type(body).__name__} of size {body.size} produced {done} bytes")
    data = target.getvalue()
    target.close()
    return data


@dataclass(frozen=True)
class TransportCapabilities:
    """What a transport can do, so callers adapt instead of guessing.

    :param notifies: replies and requests wake waiters immediately (no polling needed).
    :param max_body_size: largest body in bytes the transport accepts, ``None`` if unbounded.
    :param persistent: futures survive a restart of the sending process, and requests wait
        for a restarted receiving process.
    :param encrypted: bodies are end-to-end encrypted by the transport.
    :param in_process_only: all participants must live in one Python process (an in-memory
        medium); the demo then runs clients as threads instead of processes.
    :param screens_requests: the transport calls :meth:`Transport.screen_request` before it
        reads a request's body, so a refused sender's body is never read.
    :param delivery_latency: the typical time, in seconds, a file or object takes from its
        writer to its reader over the medium (a sync's cycle: about two sync intervals per hop);
        waits that cover a peer's lag (a key document arriving late) scale with it.
    :param delivers_once: a request id reaches a handler at most once, also when the medium
        delivers it twice and across a restart of the serving process (the transport records
        it as served before the handler runs); the client gate then keeps no memory of request
        ids of its own. Without it, a transport may hand a request over twice.
    :param accepts_frames: :meth:`Transport.send` takes a :data:`Body` given as frames. A
        transport written against ``body: bytes`` leaves it ``False`` and the core joins the
        frames for it (:func:`outgoing_body`); one that sets it writes or streams the frames.
    :param accepts_streams: :meth:`Transport.send` (and a handler's reply) takes a one-pass
        :class:`FrameSource` too, and writes each frame before drawing the next
        (:func:`stream_body`), reading it once: no retry re-reads it. Without it the core
        joins a source first (:func:`outgoing_body`), so a transport that re-reads a body (a
        retried upload, a queue) is never handed one.
    """

    notifies: bool
    max_body_size: int | None = None
    persistent: bool = False
    encrypted: bool = False
    in_process_only: bool = False
    screens_requests: bool = False
    delivery_latency: float = 0.0
    delivers_once: bool = False
    accepts_frames: bool = False
    accepts_streams: bool = False


class ReplyStatus(enum.Enum):
    """Outcome of a request, as seen by the sender."""

    OK = "ok"
    """The recipient answered; ``Reply.body`` holds its answer."""
    EXPIRED = "expired"
    """The request expired before an answer arrived."""
    REJECTED = "rejected"
    """The recipient (or the transport) refused the request; ``Reply.detail`` says why."""


@dataclass(frozen=True)
class Reply:
    """The answer to one future (``body`` is any form of :data:`ReceivedData`, see above)."""

    future_id: str
    status: ReplyStatus
    body: ReceivedData = b""
    detail: str = ""


@dataclass(frozen=True)
class Request:
    """A request as the serving side sees it.

    ``sender`` is established by the transport (for example from the folder a file sits
    in or an authenticated channel), never taken on trust from inside the body. ``body`` is
    any form of :data:`ReceivedData`: a large one may be a ``memoryview``, a large sealed one
    a :class:`ReceivedBody` still in its medium (see above); ``bytes(request.body)`` is the
    one-copy way for a handler written against ``bytes``.
    """

    id: str
    sender: str
    recipient: str
    app: str
    endpoint: str
    body: ReceivedData
    created_at: float
    expires_at: float

    def expired(self, now: float | None = None) -> bool:
        """Whether the request's validity window has passed."""
        return (time.time() if now is None else now) >= self.expires_at


RequestHandler = Callable[[Request], "Body | None"]
"""Serves one request; returns the reply body, or ``None`` to send no reply.

The core's handlers return frames only to a transport that declares ``accepts_frames``
(:func:`outgoing_body`), bytes to any other; a transport that takes frames checks what a
handler returned with :func:`body_frames` (a ``TypeError`` for anything but a body).

Raising :class:`~syft_flwr.errors.RequestRefusedError` refuses the request: the transport
answers ``REJECTED`` with the error's message as ``Reply.detail``. Any other exception is a
handler fault: the transport logs it and answers ``REJECTED`` as well.
"""


@dataclass(frozen=True)
class RequestHead:
    """What a transport knows about a request before it reads the body.

    :param id: the transport's request id.
    :param sender: the sender as the medium establishes it (never a claim inside the body).
    :param recipient: the datasite being served.
    :param app: the application path.
    :param endpoint: the endpoint.
    :param size: the body's size in bytes as far as the medium tells it (a file's size), or
        ``None`` when it is not known before reading.
    """

    id: str
    sender: str
    recipient: str
    app: str
    endpoint: str
    size: int | None = None


RequestScreen = Callable[[RequestHead], "str | None"]
"""Looks at a request before its body is read: the reason to refuse it, or ``None`` to go on."""


@dataclass(frozen=True)
class TransportSettings:
    """Everything a transport factory gets to build an instance.

    :param identity: the email of the datasite this process acts as.
    :param options: the transport's own table from ``[tool.syft_flwr.<transport>]``.
    :param project_dir: the Flower project directory, if there is one.
    :param poll_interval: seconds between polls for transports that cannot notify.
    """

    identity: str
    options: Mapping[str, Any] = field(default_factory=dict)
    project_dir: Path | None = None
    poll_interval: float = 1.0


class Transport(ABC):
    """Base class of every transport.

    Subclasses implement the abstract methods and call :meth:`reply_arrived` whenever a
    reply for one of their futures becomes available (from any thread). Everything here
    must be thread-safe: legacy Flower strategies call the grid from a thread pool.

    A transport class describes itself: a plugin registers the class
    (``registry.register(MyTransport)``), the registry reads :attr:`name` and
    :meth:`summary`, and builds instances as ``MyTransport(settings)``. What used to be
    separate hooks is overridable here: :meth:`local_options`, :meth:`publish_key_document`,
    :meth:`fetch_key_document`.
    """

    name: ClassVar[str] = ""
    """What users write in ``[tool.syft_flwr] transport = "<name>"``: lowercase letters,
    digits, ``-`` or ``_``. Every registered class sets it."""

    description: ClassVar[str] = ""
    """One line for ``syft-flwr transports``; the class docstring's first line when empty."""

    encrypt_by_default: ClassVar[bool] = False
    """Whether runs over this transport encrypt end to end when ``SYFT_FLWR_ENCRYPTION_ENABLED``
    is unset (see :mod:`syft_flwr.crypto.policy`)."""

    @classmethod
    def summary(cls) -> str:
        """The one-line description: :attr:`description`, else the docstring's first line."""
        if cls.description:
            return cls.description
        lines = (cls.__dict__.get("__doc__") or "").strip().splitlines()
        return lines[0] if lines else ""

    @classmethod
    def local_options(cls, workdir: Path) -> dict[str, Any] | None:
        """Options that let this transport run entirely on this machine (demo, tests, kit).

        ``syft-flwr demo --transport NAME`` and the conformance kit give every participant
        these options; ``workdir`` is a private temporary directory the run may use and that
        is removed afterwards (put a shared folder or database there). The base answers
        ``None``: the transport cannot run locally.
        """
        return None

    def __init__(self, settings: TransportSettings) -> None:
        self.settings = settings
        self._ready_lock = threading.Condition()
        self._ready: set[str] = set()
        self._screen: RequestScreen | None = None

    @property
    def identity(self) -> str:
        """Email of the datasite this transport acts as."""
        return self.settings.identity

    @property
    @abstractmethod
    def capabilities(self) -> TransportCapabilities:
        """What this transport supports."""

    # -- sending side ---------------------------------------------------------------

    @abstractmethod
    def send(self, datasite: str, app: str, endpoint: str, body: Body, expires_at: float) -> str:
        """Send ``body`` to ``endpoint`` of ``app`` at ``datasite``; return a new future id.

        ``body`` is one buffer, or its frames when ``capabilities.accepts_frames`` (the core
        passes frames only then, see :func:`outgoing_body`); its size is
        :func:`body_size` and the recipient's ``Request.body`` is their concatenation.

        :raises BodyTooLargeError: ``body`` exceeds ``capabilities.max_body_size``.
        :raises InvalidAddressError: an address part is unsafe.
        """

    @abstractmethod
    def poll(self, future_id: str) -> Reply | None:
        """Return the reply for ``future_id`` if one is there, without blocking.

        Once ``expires_at`` has passed without an answer, the reply is
        ``Reply(status=EXPIRED)``; an answer that arrives after that is ignored. Polling does
        not consume the reply; :meth:`forget` does. An unknown future id returns ``None``.
        """

    @abstractmethod
    def forget(self, future_id: str) -> None:
        """The sender no longer wants the reply: drop the future and any reply stored for it.

        A request not yet delivered is *not* withdrawn (the stop signal is sent and forgotten
        at once and must still arrive); its eventual reply is simply not kept. Unknown ids are
        ignored.
        """

    def wait_ready(self, future_ids: Collection[str], timeout: float) -> set[str]:
        """Block until at least one of ``future_ids`` may have a reply, or ``timeout`` passes.

        Returns the subset known to be ready (possibly empty on timeout). Notifying
        transports wake on :meth:`reply_arrived`; the others are polled every
        ``settings.poll_interval`` seconds. A ``set`` is used as it is, not copied: a grid
        waiting on the 1,000 futures of a round wakes up to 1,000 times, and each wake-up must
        cost what it delivers, not what it waits on.
        """
        wanted = future_ids if isinstance(future_ids, set) else set(future_ids)
        deadline = time.monotonic() + max(0.0, timeout)
        if not self.capabilities.notifies:
            return self._poll_until(wanted, deadline)
        with self._ready_lock:
            while True:
                hits = self._ready & wanted
                if hits:
                    self._ready -= hits
                    return hits
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    return set()
                self._ready_lock.wait(remaining)

    def _poll_until(self, wanted: set[str], deadline: float) -> set[str]:
        while True:
            hits = {fid for fid in wanted if self.poll(fid) is not None}
            remaining = deadline - time.monotonic()
            if hits or remaining <= 0:
                return hits
            time.sleep(min(self.settings.poll_interval, remaining))

    def reply_arrived(self, future_id: str) -> None:
        """Tell waiters that a reply for ``future_id`` is available (notifying transports)."""
        with self._ready_lock:
            self._ready.add(future_id)
            self._ready_lock.notify_all()

    def discard_ready(self, future_id: str) -> None:
        """Forget a ready mark; subclasses call this from :meth:`forget`."""
        with self._ready_lock:
            self._ready.discard(future_id)

    # -- serving side ---------------------------------------------------------------

    def set_request_screen(self, screen: RequestScreen | None) -> None:
        """Install the check :meth:`screen_request` applies (the core installs its sender policy).

        One screen per transport, for every endpoint it serves; ``None`` removes it.
        """
        self._screen = screen

    @property
    def request_screen(self) -> RequestScreen | None:
        """The screen :meth:`set_request_screen` installed, if any (a gate checks that it is
        its own before it relies on the transport having applied it)."""
        return self._screen

    def screen_request(self, head: RequestHead) -> str | None:
        """The reason to refuse a request seen only by its head, or ``None`` to read it.

        Transports that can see a request's sender and size before reading its body (a file
        in a sender folder, a listed object) call this first and, on a reason, answer
        ``REJECTED`` with it without reading the body. Others need not call it: the core
        applies the same policy to every request it is handed.
        """
        screen = self._screen
        return None if screen is None else screen(head)

    @abstractmethod
    def serve(self, app: str, endpoint: str, handler: RequestHandler) -> None:
        """Register ``handler`` for requests to ``endpoint`` of ``app`` at this datasite.

        Requests are never handed to a handler after they expire; a request to an endpoint
        nobody serves ends ``REJECTED`` or ``EXPIRED``, never at another endpoint's handler.
        A handler raising :class:`~syft_flwr.errors.RequestRefusedError` makes the reply
        ``REJECTED`` with the error's message as its detail, logged without a traceback.
        """

    @abstractmethod
    def run(self) -> None:
        """Deliver requests to the registered handlers until :meth:`stop` is called."""

    @abstractmethod
    def stop(self) -> None:
        """Make :meth:`run` return soon; safe to call from any thread, more than once.

        A stop that comes while :meth:`run` is not running is remembered: the next
        :meth:`run` returns at once (and clears it), so a thread about to enter :meth:`run`
        cannot miss it. A later :meth:`run` serves again.
        """

    def close(self) -> None:
        """Release resources (threads, files, connections). Idempotent."""
        self.stop()

    def __enter__(self) -> Transport:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    # -- key documents (end-to-end encryption) --------------------------------------------

    def publish_key_document(self, document: bytes) -> None:
        """Publish :attr:`identity`'s public key document where peers can fetch it.

        Called before an encrypted run sends anything. Publishing must replace the previous
        document atomically, since a peer may read it at any moment. The base refuses, so an
        encrypted run over a transport without key documents does not start.

        :param document: the document as UTF-8 JSON bytes, to store as is.
        :raises KeyDocumentsUnsupportedError: this transport does not implement it.
        """
        raise _unsupported(
            f"cannot publish the key document of {self.identity}: transport "
            f"{type(self).__name__} ({self.name or '?'}) does not implement "
            "publish_key_document; implement it (and fetch_key_document) to run encrypted, or "
            "set SYFT_FLWR_ENCRYPTION_ENABLED=false"
        )

    def fetch_key_document(self, datasite: str) -> bytes | None:
        """The public key document ``datasite`` published, as its raw bytes, or ``None`` if it
        has published nothing (yet).

        The core verifies every signature in it, so a transport returns what it finds without
        interpreting it.

        :raises KeyDocumentsUnsupportedError: this transport does not implement it.
        """
        raise _unsupported(
            f"cannot fetch the key document of {datasite}: transport {type(self).__name__} "
            f"({self.name or '?'}) does not implement fetch_key_document; implement it (and "
            "publish_key_document) to run encrypted, or set SYFT_FLWR_ENCRYPTION_ENABLED=false"
        )


def _unsupported(message: str) -> Exception:
    """A :class:`~syft_flwr.crypto.errors.KeyDocumentsUnsupportedError` (a ``MissingKeyError``,
    as callers of the first release expect).

    Imported here, not at the top: the ``syft_flwr.crypto`` package imports Flower, and this
    contract module stays free of it (transports know nothing about Flower).
    """
    from syft_flwr.crypto.errors import KeyDocumentsUnsupportedError

    return KeyDocumentsUnsupportedError(message)


def outgoing_body(transport: Transport, body: Body) -> Body:
    """``body`` as ``transport`` takes it: a one-pass source only if it accepts streams, frames
    when it accepts frames, else joined once (a transport written against ``body: bytes``).

    The grid and the client runner pass every body through this, so frames and sources reach
    only a transport that can write them.
    """
    capabilities = transport.capabilities
    if isinstance(body, FrameSource):
        return body if capabilities.accepts_streams else join_body(body)
    return body if capabilities.accepts_frames else join_body(body)
