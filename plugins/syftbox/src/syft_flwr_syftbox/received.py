"""Where a received body is read to: ``bytes`` when small, a releasable buffer when large.

A body of at least :data:`RELEASABLE_FROM` bytes is read from its file (or its parts) straight
into one :class:`~syft_flwr.body_buffer.BodyBuffer` and handed to the core as a view of it:
read once, never joined, and released page by page while the core decrypts it, so a 1 GiB
sealed model costs the receiving process its plaintext, not its plaintext plus its ciphertext.
Smaller bodies stay ``bytes``, what every handler expects of a request.
"""

from __future__ import annotations

from typing import BinaryIO, Final, cast

from syft_flwr.body_buffer import BodyBuffer

__all__ = ["RELEASABLE_FROM", "allocate", "read_into", "received"]

RELEASABLE_FROM: Final = 16 * 2**20
_STEP: Final = 1 << 26


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


def received(target: memoryview) -> bytes:
    """The body to hand to the core: the releasable buffer's view itself, or small ``bytes``.

    The contract types ``Request.body``/``Reply.body`` as ``bytes``; the view of a
    :class:`~syft_flwr.body_buffer.BodyBuffer` is handed over as one (the core reads bodies as
    buffers: ``len``, slices, ``memoryview``), so a model is never copied to make it ``bytes``.
    """
    return cast(bytes, target) if isinstance(target.obj, BodyBuffer) else bytes(target)
