"""One datasite's inbox: requests waiting for a handler, by app, in arrival order.

Each inbox has its own condition so that a new request wakes only the run loop of the datasite
it is for; with 1,000 clients waiting, a shared condition would wake all of them per message.
Requests are kept per app because a request for an app nobody at the datasite serves yet must
wait (like a file in a real mailbox) without blocking requests for apps that are served.
"""

from __future__ import annotations

import itertools
import threading
from collections import OrderedDict
from collections.abc import Iterable

from syft_flwr.transport import Request

__all__ = ["Mailbox"]


class Mailbox:
    """Pending requests of one datasite.

    Every method except :meth:`size` must be called with :attr:`cond` held: the run loop
    waits on it, and senders and ``stop()`` notify it.
    """

    def __init__(self) -> None:
        self.cond = threading.Condition()
        # An ordered dict per app, keyed by a global arrival number: O(1) append, O(1) pop of
        # the oldest, O(1) removal of an expired entry, and duplicates get distinct keys.
        self._by_app: dict[str, OrderedDict[int, Request]] = {}
        self._arrivals = itertools.count()

    def put(self, request: Request, copies: int) -> list[int]:
        """Queue ``copies`` deliveries of ``request``; return their keys for :meth:`discard`."""
        queue = self._by_app.setdefault(request.app, OrderedDict())
        keys = [next(self._arrivals) for _ in range(copies)]
        for key in keys:
            queue[key] = request
        return keys

    def take(self, apps: Iterable[str]) -> Request | None:
        """Remove and return the oldest request for any of ``apps``, or ``None``.

        Costs one step per app (a transport usually serves one), never one per request.
        """
        oldest: tuple[int, str] | None = None
        for app in apps:
            queue = self._by_app.get(app)
            if queue:
                key = next(iter(queue))
                if oldest is None or key < oldest[0]:
                    oldest = (key, app)
        if oldest is None:
            return None
        key, app = oldest
        queue = self._by_app[app]
        request = queue.pop(key)
        if not queue:
            del self._by_app[app]
        return request

    def discard(self, app: str, keys: Iterable[int]) -> None:
        """Remove the deliveries ``keys`` of a request for ``app`` that are still queued."""
        queue = self._by_app.get(app)
        if queue is None:
            return
        for key in keys:
            queue.pop(key, None)
        if not queue:
            del self._by_app[app]

    def size(self) -> int:
        """How many deliveries are waiting."""
        with self.cond:
            return sum(len(queue) for queue in self._by_app.values())
