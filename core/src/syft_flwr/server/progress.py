"""What a person watching ``syft-flwr run`` on the server sees: each exchange's replies in of
expected, failures, bytes moved and the time left to its deadline, and large transfers.

Everything comes from the one event channel (:mod:`syft_flwr.events`): the grid's
:class:`~syft_flwr.events.ExchangeStarted` (expected replies, deadline),
:class:`~syft_flwr.events.ReplyPulled` (a reply or a failure),
:class:`~syft_flwr.events.TransferProgress` (bytes) and
:class:`~syft_flwr.events.ExchangeFinished`, and the engine's ``round_started`` /
``round_finished``. A display is a plugin object implementing ``syft_flwr_event``; the library
never installs one, so embedding applications stay silent. The CLI installs one with
:func:`watching`:

- on a terminal, :class:`TerminalDisplay` keeps a live line per exchange (rich's ``Live``, the
  terminal library Flower depends on), with one line per large transfer in flight; finished
  exchanges, failures and committed rounds stay printed above it.
- otherwise (a log file, a pipe, CI), :class:`LogDisplay` writes plain ``logging`` lines: one
  per reply, per failure, per large transfer's start and end and per exchange's end, never
  carriage returns or escape codes.

What a transfer line can honestly show is what the grid sees: a body's size when it hands it to
the transport and its end when ``send`` returns, and a reply's size once it arrived whole (the
transport contract reports no bytes in between, see :class:`~syft_flwr.events.TransferProgress`).
A large send in flight therefore shows ``0 bytes/1.1 GB`` with a pulsing bar, not a made-up rate.
"""

from __future__ import annotations

import contextlib
import logging
import sys
import threading
import time
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field, replace
from typing import IO, Any

import pluggy
from flwr.common.constant import ErrorCode
from rich.console import Console, RenderableType
from rich.filesize import decimal
from rich.live import Live
from rich.progress_bar import ProgressBar
from rich.table import Table
from rich.text import Text

from syft_flwr.events import (
    ROUND_FINISHED,
    ROUND_STARTED,
    EngineEvent,
    Event,
    ExchangeFinished,
    ExchangeStarted,
    ReplyPulled,
    ServerFinished,
    ServerStarted,
    TransferProgress,
)
from syft_flwr.hookspecs import hookimpl

__all__ = [
    "LARGE_TRANSFER",
    "Exchange",
    "LogDisplay",
    "ProgressState",
    "TerminalDisplay",
    "Transfer",
    "display_for",
    "watching",
]

logger = logging.getLogger(__name__)

LARGE_TRANSFER = 1 << 20
"""Bytes from which a single transfer gets its own line (smaller ones only add to the bytes)."""

_ERROR_NAMES = {
    value: name
    for name, value in vars(ErrorCode).items()
    if name.isupper() and isinstance(value, int)
}


def _size(n: int) -> str:
    """``n`` bytes for a person (``1.2 MB``)."""
    return str(decimal(n))


def _duration(seconds: float) -> str:
    """A non-negative span for a person: ``4.2 s``, ``42 s``, ``3 min 05 s``."""
    seconds = max(0.0, seconds)
    if seconds < 10:
        return f"{seconds:.1f} s"
    if seconds < 100:
        return f"{seconds:.0f} s"
    minutes, rest = divmod(int(seconds), 60)
    return f"{minutes} min {rest:02d} s"


def _error_name(code: int | None) -> str:
    """Flower's name for an error code (``MESSAGE_UNAVAILABLE``), or the number."""
    return _ERROR_NAMES.get(code, str(code)) if code is not None else "ok"


@dataclass
class Exchange:
    """The replies to one kind of work in one group, as the display follows them: one
    ``send_and_receive`` call, or several at once, merged while any of them waits (legacy
    Flower strategies make one call per datasite, from a thread pool)."""

    label: str
    group_id: str
    expected: int
    deadline: float
    started: float
    replies: int = 0
    failures: int = 0
    moved: int = 0
    calls: int = 1
    """The ``send_and_receive`` calls still waiting."""

    def left(self, now: float) -> float:
        """Seconds to the deadline (0 once passed)."""
        return max(0.0, self.deadline - now)


@dataclass
class Transfer:
    """A large body in flight."""

    direction: str
    datasite: str
    done: int
    total: int
    started: float


@dataclass
class ProgressState:
    """What the events say so far; the displays render it. Thread-safe (legacy strategies
    fire from a thread pool)."""

    clock: Callable[[], float] = time.time
    round: int | None = None
    """The engine's round in progress (its ``round_started``), for groups that name none."""
    num_rounds: int | None = None
    exchange: Exchange | None = None
    carried: int = 0
    """Bytes sent since the last exchange ended: the next exchange's pushes."""
    moved: int = 0
    """Bytes moved in the whole run."""
    transfers: dict[tuple[str, str], Transfer] = field(default_factory=dict)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def label(self, group_id: str, message_type: str) -> str:
        """``round 2/3 train`` for a Flower round (the group id of legacy strategies, else the
        engine's round), ``group final system`` for a group that is no round, the bare
        message type outside rounds (a legacy strategy's ``get_parameters``)."""
        round_ = group_id if group_id.isdigit() else None
        if round_ is None and not group_id and self.round is not None:
            round_ = str(self.round)
        if round_ is None:
            return f"group {group_id} {message_type}" if group_id else message_type
        total = f"/{self.num_rounds}" if self.num_rounds else ""
        return f"round {round_}{total} {message_type}"

    def waiting(self) -> Exchange | None:
        """The exchange whose calls are waiting, if any."""
        exchange = self.exchange
        return exchange if exchange is not None and exchange.calls > 0 else None

    def started(self, event: ExchangeStarted) -> Exchange:
        """A call started waiting: a new exchange, or one more call of the current one (a
        legacy strategy's next datasite), which is open again until that call returns."""
        with self.lock:
            label = self.label(event.group_id, event.message_type)
            current = self.exchange
            if current is not None and current.label == label:
                current.expected += event.expected
                current.deadline = max(current.deadline, event.deadline)
                current.calls += 1
                current.moved += self.carried
            else:
                current = self.exchange = Exchange(
                    label,
                    event.group_id,
                    event.expected,
                    event.deadline,
                    self.clock(),
                    moved=self.carried,
                )
            self.carried = 0
            return replace(current)

    def pulled(self, event: ReplyPulled) -> Exchange | None:
        """Count a reply or a failure; a snapshot of the exchange it belongs to, if any."""
        with self.lock:
            self._drop_transfers(event.message_id)
            current = self.waiting()
            if current is None:
                return None
            if event.error_code is None:
                current.replies += 1
            else:
                current.failures += 1
            return replace(current)

    def finished(self, event: ExchangeFinished) -> Exchange | None:
        """A call returned; a snapshot of the exchange once none of its calls waits."""
        with self.lock:
            current = self.waiting()
            if current is None or current.group_id != event.group_id:
                return None
            current.calls -= 1
            return None if current.calls else replace(current)

    def transferred(self, event: TransferProgress) -> Transfer | None:
        """Count the bytes of a finished transfer; return the large transfer it updates."""
        with self.lock:
            key = (event.direction, event.message_id)
            if event.done >= event.total:
                current = self.waiting()
                if current is not None:
                    current.moved += event.total
                else:
                    self.carried += event.total
                self.moved += event.total
            if event.total < LARGE_TRANSFER:
                return None
            transfer = self.transfers.get(key)
            if transfer is None:
                transfer = Transfer(
                    event.direction, event.datasite, event.done, event.total, self.clock()
                )
            transfer.done = event.done
            if event.done >= event.total:
                self.transfers.pop(key, None)
            else:
                self.transfers[key] = transfer
            return transfer

    def _drop_transfers(self, message_id: str) -> None:
        """A message's reply is in: nothing of it is in flight any more (a failed send too)."""
        for key in [key for key in self.transfers if key[1] == message_id]:
            del self.transfers[key]

    def summary(self, exchange: Exchange, now: float) -> str:
        """One finished exchange in a line."""
        return (
            f"{exchange.label}: {exchange.replies}/{exchange.expected} replies, "
            f"{_failures(exchange.failures)}, {_size(exchange.moved)} moved, "
            f"{_duration(now - exchange.started)}"
        )


def _failures(n: int) -> str:
    return f"{n} failure" if n == 1 else f"{n} failures"


def _replies(n: int) -> str:
    return f"{n} reply" if n == 1 else f"{n} replies"


def _transfer_text(transfer: Transfer) -> str:
    verb = "sending to" if transfer.direction == "send" else "receiving from"
    return f"{verb} {transfer.datasite}: {_size(transfer.done)}/{_size(transfer.total)}"


class _Display(ABC):
    """Routes events to the ``on_*`` methods of a display; shared by both kinds."""

    def __init__(self, clock: Callable[[], float] = time.time) -> None:
        self.state = ProgressState(clock)
        self._serial = threading.Lock()

    @hookimpl
    def syft_flwr_event(self, event: Event) -> None:
        # one event at a time, so lines come out in the order the counts changed (legacy
        # strategies fire from several threads)
        with self._serial:
            self._show(event)

    def _show(self, event: Event) -> None:
        state = self.state
        if isinstance(event, TransferProgress):
            transfer = state.transferred(event)
            if transfer is not None:
                self.on_transfer(transfer, event.done >= event.total)
        elif isinstance(event, ExchangeStarted):
            self.on_exchange_started(state.started(event))
        elif isinstance(event, ReplyPulled):
            self.on_reply(event, state.pulled(event))
        elif isinstance(event, ExchangeFinished):
            exchange = state.finished(event)
            if exchange is not None:
                self.on_exchange_finished(exchange)
        elif isinstance(event, ServerStarted):
            self.on_line(
                f"run {event.run_id} of {event.app_name}: {len(event.datasites)} datasites"
            )
        elif isinstance(event, ServerFinished):
            outcome = "finished" if event.error is None else f"failed: {event.error}"
            self.on_line(
                f"run {event.run_id}: the ServerApp {outcome}; {_size(state.moved)} moved in all"
            )
            self.close()
        elif isinstance(event, EngineEvent) and event.name == ROUND_STARTED:
            state.round = event.data.get("round")
            state.num_rounds = event.data.get("num_rounds") or state.num_rounds
        elif isinstance(event, EngineEvent) and event.name == ROUND_FINISHED:
            self.on_line(f"round {event.data['round']}/{event.data['num_rounds']} committed")

    @abstractmethod
    def on_transfer(self, transfer: Transfer, finished: bool) -> None:
        """A large transfer started (``finished`` false: only its total is known) or ended."""

    @abstractmethod
    def on_exchange_started(self, exchange: Exchange) -> None:
        """An exchange sent its messages and waits for their replies until its deadline."""

    @abstractmethod
    def on_reply(self, event: ReplyPulled, exchange: Exchange | None) -> None:
        """A reply or a failure came in (``exchange`` is ``None`` outside ``send_and_receive``)."""

    @abstractmethod
    def on_exchange_finished(self, exchange: Exchange) -> None:
        """An exchange ended; its counts are the grid's."""

    @abstractmethod
    def on_line(self, text: str) -> None:
        """A line of its own: the run started or ended, a round was committed."""

    @abstractmethod
    def close(self) -> None:
        """Stop rendering (idempotent)."""


class LogDisplay(_Display):
    """Plain ``logging`` lines, for a stream that is not a terminal: one per reply, per failure
    (a warning), per large transfer's start and end, per exchange's start and end."""

    def __init__(
        self, log: logging.Logger = logger, clock: Callable[[], float] = time.time
    ) -> None:
        super().__init__(clock)
        self.log = log

    def on_transfer(self, transfer: Transfer, finished: bool) -> None:
        peer = "to" if transfer.direction == "send" else "from"
        if not finished:
            self.log.info("sending %s %s %s", _size(transfer.total), peer, transfer.datasite)
            return
        verb = "sent" if transfer.direction == "send" else "received"
        took = self.state.clock() - transfer.started
        detail = f" in {took:.1f} s" if transfer.direction == "send" else ""
        self.log.info("%s %s %s %s%s", verb, _size(transfer.total), peer, transfer.datasite, detail)

    def on_exchange_started(self, exchange: Exchange) -> None:
        self.log.info(
            "%s: waiting for %s, %s moved, %s left",
            exchange.label,
            _replies(exchange.expected),
            _size(exchange.moved),
            _duration(exchange.left(self.state.clock())),
        )

    def on_reply(self, event: ReplyPulled, exchange: Exchange | None) -> None:
        if exchange is None:
            what = (
                "reply" if event.error_code is None else f"failure {_error_name(event.error_code)}"
            )
            self.log.info("%s from %s", what, event.datasite)
            return
        counts = (
            f"{exchange.replies}/{exchange.expected} replies, {_failures(exchange.failures)}, "
            f"{_size(exchange.moved)} moved, {_duration(exchange.left(self.state.clock()))} left"
        )
        if event.error_code is None:
            self.log.info("%s: reply from %s; %s", exchange.label, event.datasite, counts)
        else:
            self.log.warning(
                "%s: failure from %s (%s); %s",
                exchange.label,
                event.datasite,
                _error_name(event.error_code),
                counts,
            )

    def on_exchange_finished(self, exchange: Exchange) -> None:
        self.log.info("%s", self.state.summary(exchange, self.state.clock()))

    def on_line(self, text: str) -> None:
        self.log.info("%s", text)

    def close(self) -> None:
        """Nothing to stop: every line is written as it comes."""


class TerminalDisplay(_Display):
    """A live line on a terminal: the exchange in progress and the large transfers in flight
    (rich's ``Live``, refreshed a few times a second so the time left counts down); finished
    exchanges, failures and committed rounds are printed above it and stay."""

    REFRESHES_PER_SECOND = 4
    BAR_WIDTH = 10

    def __init__(self, console: Console, clock: Callable[[], float] = time.time) -> None:
        super().__init__(clock)
        self.console = console
        self._live: Live | None = None
        self._live_lock = threading.Lock()

    def _started_live(self) -> Live:
        with self._live_lock:
            if self._live is None:
                self._live = Live(
                    console=self.console,
                    get_renderable=self.render,
                    refresh_per_second=self.REFRESHES_PER_SECOND,
                    transient=True,
                    redirect_stdout=False,
                    redirect_stderr=False,
                )
                self._live.start()
            return self._live

    def render(self) -> RenderableType:
        """The live part: one line for the exchange in progress (or the bytes so far between
        exchanges), one per large transfer in flight; each cut to the terminal's width."""
        state = self.state
        now = state.clock()
        grid = Table.grid(padding=(0, 1))
        grid.add_column(no_wrap=True)
        grid.add_column(no_wrap=True, width=self.BAR_WIDTH)
        grid.add_column(no_wrap=True, overflow="ellipsis")
        with state.lock:
            exchange = state.waiting()
            if exchange is not None:
                grid.add_row(
                    Text(exchange.label, style="bold"),
                    ProgressBar(
                        total=max(exchange.expected, 1),
                        completed=exchange.replies + exchange.failures,
                        width=self.BAR_WIDTH,
                    ),
                    Text(
                        f"{exchange.replies}/{exchange.expected} replies, "
                        f"{_failures(exchange.failures)}, {_size(exchange.moved)} moved, "
                        f"{_duration(exchange.left(now))} left"
                    ),
                )
            for transfer in state.transfers.values():
                grid.add_row(
                    Text(transfer.direction),
                    ProgressBar(
                        total=transfer.total,
                        completed=transfer.done,
                        pulse=transfer.done == 0,
                        width=self.BAR_WIDTH,
                    ),
                    Text(_transfer_text(transfer)),
                )
            if not grid.rows:
                return Text(f"{_size(state.moved)} moved so far", style="dim", no_wrap=True)
        return grid

    def _print(self, text: Text | str) -> None:
        """Print ``text`` above the live part, which is rendered afresh first (a print
        repeats the last rendering below it, which may predate the event)."""
        live = self._started_live()
        live.refresh()
        live.console.print(text, highlight=False)

    def on_transfer(self, transfer: Transfer, finished: bool) -> None:
        if finished:
            verb = "sent" if transfer.direction == "send" else "received"
            peer = "to" if transfer.direction == "send" else "from"
            self._print(f"{verb} {_size(transfer.total)} {peer} {transfer.datasite}")
        else:
            self._started_live().refresh()

    def on_exchange_started(self, exchange: Exchange) -> None:
        self._started_live().refresh()

    def on_reply(self, event: ReplyPulled, exchange: Exchange | None) -> None:
        if event.error_code is not None:
            where = f"{exchange.label}: " if exchange is not None else ""
            self._print(
                Text(
                    f"{where}failure from {event.datasite} ({_error_name(event.error_code)})",
                    style="yellow",
                )
            )

    def on_exchange_finished(self, exchange: Exchange) -> None:
        self._print(self.state.summary(exchange, self.state.clock()))

    def on_line(self, text: str) -> None:
        self._print(text)

    def close(self) -> None:
        with self._live_lock:
            live, self._live = self._live, None
        if live is not None:
            live.stop()


def display_for(stream: IO[str] | None = None) -> TerminalDisplay | LogDisplay:
    """The display for ``stream`` (standard error by default): live on a terminal, log lines
    otherwise."""
    stream = sys.stderr if stream is None else stream
    if _is_terminal(stream):
        return TerminalDisplay(Console(file=stream))
    return LogDisplay()


def _is_terminal(stream: IO[Any]) -> bool:
    try:
        return stream.isatty()
    except (AttributeError, ValueError):  # no isatty, or a closed stream
        return False


@contextlib.contextmanager
def watching(
    manager: pluggy.PluginManager, display: TerminalDisplay | LogDisplay | None = None
) -> Iterator[TerminalDisplay | LogDisplay]:
    """Show ``manager``'s events with ``display`` (:func:`display_for` by default) while the
    block runs; the display is unregistered and its live line stopped afterwards."""
    display = display_for() if display is None else display
    name = manager.register(display, name=f"syft_flwr.progress.{id(display)}")
    try:
        yield display
    finally:
        manager.unregister(name=name)
        display.close()
