"""A received body that its one reader may release as it reads: anonymous memory, page by page.

A transport that reads a large body from a file into memory (the syftbox transport) reads it
into a :class:`BodyBuffer` and hands ``memoryview(buffer)`` over as ``Request.body`` or
``Reply.body``. Whoever opens it (:func:`~syft_flwr.crypto.envelope.open_frames`) decrypts it
front to back and calls :func:`release` on what it has consumed, so a 1 GiB ciphertext shrinks
while its plaintext grows, instead of both being resident at once. Released pages read as
zeros afterwards: a transport hands a buffer over once and reads the file again for another
delivery.

The memory is anonymous, never a mapping of the received file: a file a peer's sync client
may rewrite in place would turn a mapping into a ``SIGBUS`` the moment it shrank.
"""

from __future__ import annotations

import mmap
from typing import Final

__all__ = ["BodyBuffer", "release"]

_PAGE: Final = mmap.PAGESIZE


class BodyBuffer(mmap.mmap):
    """Anonymous, writable memory of a fixed size (at least one byte) for one received body."""

    def __new__(cls, size: int) -> BodyBuffer:
        """Reserve ``size`` bytes; pages are allocated as they are first written (as huge
        pages where the kernel allows: far fewer faults for a model-sized body)."""
        # Private: released pages of a shared anonymous mapping would stay allocated in shmem.
        buffer = super().__new__(cls, -1, size, flags=mmap.MAP_PRIVATE | mmap.MAP_ANONYMOUS)
        if hasattr(mmap, "MADV_HUGEPAGE"):
            buffer.madvise(mmap.MADV_HUGEPAGE)
        return buffer

    def release(self, start: int, stop: int) -> None:
        """Give back the whole pages in ``[start, stop)``; they read as zeros afterwards."""
        first = -(-start // _PAGE) * _PAGE
        last = min(stop, len(self)) // _PAGE * _PAGE
        if last > first:
            self.madvise(mmap.MADV_DONTNEED, first, last - first)


def release(view: memoryview, start: int, stop: int) -> None:
    """Release ``view[start:stop]`` if ``view`` is a whole :class:`BodyBuffer`; else nothing.

    Only a view of the whole buffer (what a transport hands over) is released: its offsets are
    the buffer's own.
    """
    owner = view.obj
    if isinstance(owner, BodyBuffer) and view.nbytes == len(owner):
        owner.release(start, stop)
