"""The files a transport decided not to take for messages, each warned about once.

A foreign object stays where it is (only its owner can delete it), so every poll lists it
again; remembering its id keeps the log to one warning per file and keeps the transport from
downloading it again. The memory is bounded, oldest first, so a flood of hostile files cannot
grow it: a file forgotten that way is only checked, and warned about, once more.
"""

from __future__ import annotations

import logging
import threading
from collections import OrderedDict

__all__ = ["CAPACITY", "IgnoredFiles"]

logger = logging.getLogger(__name__)

CAPACITY = 4096
"""How many ignored file ids are remembered."""


class IgnoredFiles:
    """A bounded, thread-safe set of ignored Drive file ids.

    :param identity: the transport's identity, for log lines.
    :param capacity: how many ids are remembered.
    """

    def __init__(self, identity: str, capacity: int = CAPACITY) -> None:
        self.identity = identity
        self.capacity = capacity
        self._ids: OrderedDict[str, None] = OrderedDict()
        self._lock = threading.Lock()

    def __contains__(self, file_id: object) -> bool:
        with self._lock:
            return file_id in self._ids

    def ignore(self, file_id: str, what: str, reason: str) -> None:
        """Remember ``file_id`` and warn, the first time, that ``what`` is ignored because
        ``reason``."""
        with self._lock:
            if file_id in self._ids:
                return
            self._ids[file_id] = None
            if len(self._ids) > self.capacity:
                self._ids.popitem(last=False)
        logger.warning("%s: ignoring %s (file %s): %s", self.identity, what, file_id, reason)
