"""Named kill points: fault injection at every durable step of a server run.

Crash safety is designed, not hoped for: every durable step of the server (a run opened, a
message handed to the transport, a reply journaled, a round committed, a stop signal sent...)
calls :func:`kill_point` with its name right after the step. With
``SYFT_FLWR_KILL_AT=<name>`` (or ``<name>:<n>`` for the n-th time the point is reached) the
process sends itself ``SIGKILL`` there, exactly as a power cut or ``kill -9`` would stop it,
so a test can prove that the next start resumes to the same result. Unset (always, outside
tests), a kill point is one dictionary lookup.

The names are :data:`KILL_POINTS`; an unknown name in the variable is an error, so a test
cannot silently kill nowhere.
"""

from __future__ import annotations

import os
import signal
import threading
from collections import Counter
from typing import Final

from syft_flwr.errors import ConfigError

__all__ = ["KILL_AT_ENV", "KILL_POINTS", "kill_point"]

KILL_AT_ENV: Final = "SYFT_FLWR_KILL_AT"

KILL_POINTS: Final = (
    "run.created",
    "job.started",
    "message.sent",
    "message.journaled",
    "reply.opened",
    "reply.journaled",
    "reply.accepted",
    "round.model_written",
    "round.committed",
    "round.derived",
    "run.finishing",
    "stop.sent",
    "stop.recorded",
    "run.finished",
)
"""Every kill point, in the order a run reaches them."""

_hits: Counter[str] = Counter()
_lock = threading.Lock()


def _target() -> tuple[str, int] | None:
    raw = os.environ.get(KILL_AT_ENV, "").strip()
    if not raw:
        return None
    name, _, count = raw.partition(":")
    if name not in KILL_POINTS:
        raise ConfigError(
            f"{KILL_AT_ENV}={raw!r} names no kill point; known: {', '.join(KILL_POINTS)}"
        )
    try:
        nth = int(count) if count else 1
    except ValueError:
        raise ConfigError(f"{KILL_AT_ENV}={raw!r}: the count after ':' must be a number") from None
    return name, nth


def kill_point(name: str) -> None:
    """Kill this process with ``SIGKILL`` if ``SYFT_FLWR_KILL_AT`` asks for ``name`` now."""
    target = _target()
    if target is None or target[0] != name:
        return
    with _lock:
        _hits[name] += 1
        reached = _hits[name] == target[1]
    if reached:
        os.kill(os.getpid(), signal.SIGKILL)
