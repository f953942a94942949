"""A time budget per kit test: a transport that hangs gets a verdict, not a stuck run.

Every wait in the kit is bounded already; the budget is the last line for what no wait can
bound (a ``run()`` that never returns while a test joins it, a handler that blocks a
transport's loop). It uses ``SIGALRM`` so the test's own thread is interrupted where it
blocks; where that signal is unavailable (Windows, a test not run in the main thread) the
bounded waits alone apply.
"""

from __future__ import annotations

import signal
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from types import FrameType

__all__ = ["BudgetExceeded", "budget"]


class BudgetExceeded(BaseException):
    """A kit test ran out of its time budget.

    A ``BaseException`` on purpose (not a :class:`~syft_flwr.errors.SyftFlwrError`): it is not
    an error of the code under test but the end of the test, and it must pass through
    hypothesis, which would otherwise replay and shrink the stuck program for minutes.
    """


@contextmanager
def budget(seconds: float, what: str) -> Iterator[None]:
    """Fail the enclosed block with :class:`BudgetExceeded` once ``seconds`` have passed."""
    if (
        seconds <= 0
        or not hasattr(signal, "setitimer")
        or threading.current_thread() is not threading.main_thread()
    ):
        yield
        return

    def expire(signum: int, frame: FrameType | None) -> None:
        raise BudgetExceeded(
            f"{what} ran out of its {seconds:g} s budget: a transport call blocked "
            "(see the stack above for the call that did not return)"
        )

    previous = signal.signal(signal.SIGALRM, expire)
    signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)
