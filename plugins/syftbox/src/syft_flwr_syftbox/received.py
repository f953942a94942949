"""Where a received body is read to: ``bytes`` when small, left in its file when large and
sealed, a releasable buffer when large and plaintext.

A sealed body of at least :data:`RELEASABLE_FROM` bytes is not read by the transport at all:
it is handed to the core as a :class:`~syft_flwr.transport.ReceivedBody` (:class:`FileBody`
for a body in its RPC file, :class:`~syft_flwr_syftbox.parts.PartsBody` for one in parts),
which the core's channel reads once, in chunks into one reused buffer, decrypting each
straight into the final plaintext: receiving a 1 GiB model touches the file's page cache and
the plaintext, nothing model-sized besides. The file is read, never memory-mapped: a sync
client may truncate it in place, which would turn a mapping into a ``SIGBUS``; a read that
comes up short is an :class:`~syft_flwr.transport.IncompleteBodyError`, and a byte rewritten
under the reader fails the envelope's tag.

A large plaintext body (encryption off) is read into one
:class:`~syft_flwr.body_buffer.BodyBuffer` and handed over as a view of it, which the wire
codec copies each array out of. Smaller bodies stay ``bytes``, what every handler expects.
"""

from __future__ import annotations

import os
from typing import BinaryIO, Final

from syft_flwr.body_buffer import BodyBuffer
from syft_flwr.crypto.envelope import is_sealed
from syft_flwr.transport import ReceivedBody, ReceivedData

__all__ = ["RELEASABLE_FROM", "FileBody", "allocate", "read_into", "received", "settle"]

RELEASABLE_FROM: Final = 16 * 2**20
_STEP: Final = 1 << 26
_SNIFF: Final = 4


def allocate(size: int) -> memoryview:
    """A writable buffer for a body of ``size`` bytes (releasable from the threshold on)."""
    if size >= RELEASABLE_FROM:
        return memoryview(BodyBuffer(size))
    return memoryview(bytearray(size))


def read_into(handle: BinaryIO, target: memoryview) -> int:
    """Fill ``target`` from ``handle``; the number of bytes read (fewer at end of file)."""
    done = 0
    while done < len(target):
        count = handle.readinto(target[done : done + _STEP])  # type: ignore[attr-defined]
        if not count:
            break
        done += count
    return done


def received(target: memoryview) -> bytes | memoryview:
    """The body to hand to the core: the releasable buffer's view itself, or small ``bytes``.

    The view of a :class:`~syft_flwr.body_buffer.BodyBuffer` is handed over as it is (a
    :data:`~syft_flwr.transport.ReceivedData`, which the core reads as a buffer), so a model is
    never copied to make it ``bytes``.
    """
    return target if isinstance(target.obj, BodyBuffer) else bytes(target)


def settle(body: ReceivedBody) -> ReceivedData:
    """What to hand the core for a large body still in its medium: the body itself when it is
    sealed (the channel streams it), else read whole into a releasable buffer.

    :raises IncompleteBodyError: the medium ended early, or failed its check.
    """
    if is_sealed(body.head(_SNIFF)):
        return body
    target = allocate(len(body))
    body.readinto(target)
    return received(target)


class FileBody(ReceivedBody):
    """A body that lies in an open file from ``offset`` on, read with ``pread`` as consumed.

    It holds a duplicate of the file's descriptor (the transport's own handle closes as
    usual), released at the end of the body or when the body is dropped.
    """

    def __init__(self, handle: BinaryIO, offset: int, size: int) -> None:
        super().__init__(size)
        self._fd = -1
        self._fd = os.dup(handle.fileno())
        self._offset = offset
        self._end = offset + size

    def _read(self, target: memoryview) -> int:
        if self._fd < 0:
            return 0
        count = os.preadv(self._fd, [target[: self._end - self._offset]], self._offset)
        self._offset += count
        if self._offset >= self._end or not count:
            self._close()
        return count

    def _close(self) -> None:
        if self._fd >= 0:
            os.close(self._fd)
            self._fd = -1

    def __del__(self) -> None:
        self._close()
