"""Requests a sync client refused to upload, put back so that they are offered again.

A SyftBox sync client uploads a new file only if the server's copy of the folder's permission
file lets its user create it; otherwise it renames the file to a *rejected twin* and does not
offer it again. SyftBox 0.4.x inserts ``.syftrejected`` before the last suffix
(``<id>.request`` becomes ``<id>.syftrejected.request``, a part ``<id>.request.3.part``
becomes ``<id>.request.3.syftrejected.part``); the Go SyftBox inserts ``.rejected`` (and
renames an older twin ``.rejected.<YYYYMMDDhhmmss>``). A request meets this whenever it is
written before the recipient's permission file reached the server: the recipient's client
starts after the aggregator's first send (a client that joins late), or its permission file is
a sync cycle behind the request. Left alone, the recipient would never see the request and
the round would only time out.

So the sender looks after its own unsettled requests (:class:`RejectedRequests`): a request
whose file turned into a rejected twin is renamed back after a wait (:func:`retry_delay`:
twice the sync interval, doubling with each refusal of the same request up to
:data:`MAX_RETRY_DELAY`, so a datasite that never serves the app costs the SyftBox server one
refused upload per half minute, not per second), parts first and the manifest last as when it
was written, so the sync client offers it again once permissions may have caught up; until the
request expires. The first refusal of each request is logged as a warning naming its folder.
"""

from __future__ import annotations

import logging
import re
import threading
import time
from pathlib import Path

from syft_flwr.errors import UnsafeFileError
from syft_flwr_syftbox.parts import manifest_of
from syft_flwr_syftbox.safe_fs import SafeRoot

__all__ = [
    "MAX_RETRY_DELAY",
    "RejectedRequests",
    "refused_original",
    "rejected_twins",
    "retry_delay",
]

logger = logging.getLogger(__name__)

MAX_RETRY_DELAY = 30.0
"""Longest wait, in seconds, before a refused request is offered again."""
_MARKS = (".syftrejected", ".rejected")
"""What SyftBox 0.4.x and the Go SyftBox insert before a refused file's last suffix."""
_MARK = re.compile(r"\.(?:syftrejected|rejected(?:\.\d{14})?)(?=\.[^.]+$)")


def rejected_twins(path: Path) -> tuple[Path, ...]:
    """The names sync clients give ``path`` when their server refuses it."""
    return tuple(path.with_suffix(mark + path.suffix) for mark in _MARKS)


def refused_original(path: Path) -> Path | None:
    """The file a rejected twin at ``path`` was, or ``None`` if it is not named like one."""
    match = _MARK.search(path.name)
    if match is None:
        return None
    return path.with_name(path.name[: match.start()] + path.name[match.end() :])


def retry_delay(sync_interval: float, refusals: int) -> float:
    """Seconds to wait before the ``refusals``-th refused offer of a request is retried.

    Twice the sync interval first (a permission file one cycle behind has arrived by then),
    then doubling, never more than :data:`MAX_RETRY_DELAY` nor less than half a second.
    """
    first = max(2.0 * sync_interval, 0.5)
    return min(first * 2.0 ** max(refusals - 1, 0), max(MAX_RETRY_DELAY, first))


class RejectedRequests:
    """Finds this sender's refused requests and offers them again (thread-safe).

    :param fs: the datasites folder's safe operations.
    :param sync_interval: the sync client's cycle, in seconds.
    """

    def __init__(self, fs: SafeRoot, sync_interval: float) -> None:
        self._fs = fs
        self._sync_interval = sync_interval
        self._lock = threading.Lock()
        self._refusals: dict[Path, int] = {}  # request path -> refusals seen so far
        self._due: dict[Path, float] = {}  # request path -> monotonic time of the next offer

    def check(self, request: Path) -> bool:
        """Offer ``request`` again if its file was refused and its wait is over.

        Call for requests not yet answered nor expired. Costs one ``lstat`` while the
        request's file is where it was written.

        :returns: whether the request was put back now.
        """
        if self._fs.exists(request) or not any(map(self._fs.exists, rejected_twins(request))):
            return False
        now = time.monotonic()
        with self._lock:
            due = self._due.get(request)
            if due is None:  # a new refusal: schedule the next offer
                refusals = self._refusals.get(request, 0) + 1
                self._refusals[request] = refusals
                self._due[request] = now + retry_delay(self._sync_interval, refusals)
            elif now >= due:
                del self._due[request]
        if due is None:
            if refusals == 1:
                logger.warning(
                    "the sync refused to upload request %s (no permission yet to write into "
                    "%s: the recipient may not serve this app yet); offering it again until "
                    "it expires",
                    request.name,
                    request.parent,
                )
            return False
        if now < due:
            return False
        self._put_back(request)
        return True

    def forget(self, request: Path) -> None:
        """Stop tracking ``request`` (answered, expired or removed)."""
        with self._lock:
            self._refusals.pop(request, None)
            self._due.pop(request, None)

    def _put_back(self, request: Path) -> None:
        """Rename the refused parts, then the refused request, back to their own names.

        Each file's latest twin goes back (the Go SyftBox's older ones are longer,
        ``.rejected.<time>``) after its older twins, which are debris, are removed; parts go
        before the request, so once the request is back nothing of the refusal is left.
        """
        try:
            entries = self._fs.entries(request.parent)
        except (OSError, UnsafeFileError) as exc:
            logger.warning("cannot list %s to put %s back: %s", request.parent, request.name, exc)
            return
        twins: dict[Path, list[Path]] = {}
        for entry in entries:
            original = refused_original(entry.path) if entry.is_file else None
            if original is not None and (original == request or manifest_of(original) == request):
                twins.setdefault(original, []).append(entry.path)
        for original in sorted(twins, key=lambda path: (path == request, path.name)):
            latest, *older = sorted(twins[original], key=lambda path: (len(path.name), path.name))
            try:
                for stale in older:
                    self._fs.unlink(stale)
                try:
                    self._fs.rename_new(latest, original)
                except FileExistsError:
                    self._fs.unlink(latest)
            except (OSError, UnsafeFileError) as exc:
                logger.warning("cannot put %s back as %s: %s", latest, original.name, exc)
                return
        logger.info("offered request %s to the sync again", request.name)
