"""Bounded waits shared by the conformance kit and every transport's own tests.

One copy, so every test folder waits the same way: each wait has an upper bound and fails
with a sentence naming what did not happen (a verdict), never a hang. The kit's pytest
plugin (:mod:`syft_flwr.testing.pytest_plugin`) hands these out as fixtures; modules that
need them at import time (type aliases, plain helpers) import them from here.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterable, Iterator
from contextlib import AbstractContextManager, contextmanager
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # only annotations: the pytest plugin imports this module in every session
    from syft_flwr.transport import Reply, Transport

__all__ = [
    "POLL",
    "TIMEOUT",
    "Bounded",
    "Eventually",
    "Later",
    "Serving",
    "WaitAll",
    "WaitReply",
    "bounded",
    "eventually",
    "later",
    "serving",
    "wait_all",
    "wait_reply",
]

TIMEOUT = 30.0
"""Upper bound, in seconds, of any single wait; a passing test never comes close to it. Waits end
as soon as their condition holds, so the bound costs nothing when tests pass; it is generous
because a shared machine under load (the fake Drive's HTTP polling with two CPU burners and a
soak beside it) once needed more than 10 s for what takes 0.1 s on a quiet one."""

POLL = 0.01
"""How often :func:`eventually` looks again at a condition no event announces."""

Serving = Callable[["Transport"], AbstractContextManager[threading.Thread]]
WaitReply = Callable[..., "Reply"]
WaitAll = Callable[..., None]
Later = Callable[..., float]
Eventually = Callable[..., None]
Bounded = Callable[..., Any]


@contextmanager
def serving(transport: Transport, timeout: float = TIMEOUT) -> Iterator[threading.Thread]:
    """Run ``transport.run()`` in a thread for the ``with`` block, then stop it.

    Fails (after the block) if ``run()`` did not return within ``timeout`` of ``stop()``, or
    if it raised: a transport whose loop died would otherwise pass tests by accident.
    """
    failures: list[BaseException] = []

    def run() -> None:
        try:
            transport.run()
        except BaseException as exc:  # surfaced below, not lost with the thread
            failures.append(exc)

    thread = threading.Thread(target=run, daemon=True, name=f"serving {transport.identity}")
    thread.start()
    try:
        yield thread
    finally:
        transport.stop()
        thread.join(timeout)
        assert not thread.is_alive(), (
            f"Transport.stop: run() of {transport.identity} did not return within {timeout} s"
        )
        assert not failures, f"Transport.run raised {failures[0]!r}"


def wait_reply(transport: Transport, future_id: str, timeout: float = TIMEOUT) -> Reply:
    """Wait (event-driven, bounded) until ``future_id`` has a reply, and return it."""
    deadline = time.monotonic() + timeout
    while (reply := transport.poll(future_id)) is None:
        remaining = deadline - time.monotonic()
        assert remaining > 0, f"Transport.poll: no reply for future {future_id} within {timeout} s"
        transport.wait_ready([future_id], min(remaining, 0.5))
    return reply


def wait_all(transport: Transport, future_ids: Iterable[str], timeout: float = TIMEOUT) -> None:
    """Wait (event-driven, bounded) until every one of ``future_ids`` has a reply."""
    pending = set(future_ids)
    deadline = time.monotonic() + timeout
    while pending:
        remaining = deadline - time.monotonic()
        assert remaining > 0, (
            f"Transport.wait_ready: {len(pending)} replies missing after {timeout} s"
        )
        pending -= transport.wait_ready(pending, min(remaining, 0.5))


def later(seconds: float = 60.0) -> float:
    """An ``expires_at`` that many seconds from now."""
    return time.time() + seconds


def eventually(condition: Callable[[], object], what: str, timeout: float = TIMEOUT) -> None:
    """Wait (bounded) for an effect no event announces, such as a file removed by a sweep."""
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, f"{what} did not happen within {timeout} s"
        time.sleep(POLL)


def bounded(function: Callable[..., Any], *args: Any, timeout: float = TIMEOUT) -> Any:
    """Call ``function(*args)`` in a thread; fail instead of hanging if it has not returned
    within ``timeout`` (for calls a hostile medium could block, such as opening a FIFO)."""
    results: list[Any] = []
    failures: list[BaseException] = []

    def run() -> None:
        try:
            results.append(function(*args))
        except BaseException as exc:
            failures.append(exc)

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    thread.join(timeout)
    name = getattr(function, "__name__", repr(function))
    assert not thread.is_alive(), f"{name} blocked for {timeout} s"
    if failures:
        raise failures[0]
    return results[0]
