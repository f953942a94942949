"""Opening a folder below a root in one system call, with the kernel refusing every symlink.

:class:`~syft_flwr_syftbox.safe_fs.SafeRoot` reaches a folder by walking from the root one
component at a time (``O_NOFOLLOW`` descriptors), which is portable and names precisely what
it refuses, but costs two system calls per component: an RPC file sits eight folders deep, and
every send, read, listing and removal walks there again (about a tenth of a server's CPU per FL
message). Linux's ``openat2(2)`` (5.6+) resolves the whole relative path in one call with
``RESOLVE_BENEATH`` (nothing may escape the starting folder: no ``..`` above it, no absolute
symlink) and ``RESOLVE_NO_SYMLINKS`` (no symlink anywhere on the way, the last component
included), which is the walk's own rule enforced by the kernel.

:func:`open_folder_beneath` is only a fast path: it answers ``None`` whenever it cannot give
the folder (the call is missing or blocked by a seccomp filter, or the path is missing, a
symlink, not a folder, not searchable), and the walk then runs and decides, with its own
errors and its folder creation. So the outcome of every operation is the walk's; only the
number of system calls differs. Python's ``os`` module has no ``openat2`` binding, so it is
called through ``ctypes`` (its number, 437, is the same on every architecture).
"""

from __future__ import annotations

import ctypes
import errno
import os
import sys
import threading
from collections.abc import Sequence
from typing import Final

__all__ = ["available", "open_folder_beneath"]

_SYS_OPENAT2: Final = 437
_RESOLVE_NO_SYMLINKS: Final = 0x04
_RESOLVE_BENEATH: Final = 0x08
_FLAGS: Final = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC


class _OpenHow(ctypes.Structure):
    """``struct open_how`` of ``<linux/openat2.h>``."""

    _fields_ = [
        ("flags", ctypes.c_uint64),
        ("mode", ctypes.c_uint64),
        ("resolve", ctypes.c_uint64),
    ]


_HOW: Final = _OpenHow(_FLAGS, 0, _RESOLVE_BENEATH | _RESOLVE_NO_SYMLINKS)
_HOW_SIZE: Final = ctypes.sizeof(_OpenHow)
_UNSUPPORTED: Final = frozenset({errno.ENOSYS, errno.EPERM, errno.E2BIG, errno.EINVAL})
"""What the call answers where it is missing or filtered, rather than about the path."""
_lock = threading.Lock()
_syscall: ctypes._CFuncPtr | None = None  # type: ignore[name-defined]
_usable = sys.platform == "linux"


def _bind() -> ctypes._CFuncPtr | None:  # type: ignore[name-defined]
    global _syscall, _usable
    with _lock:
        if _syscall is None and _usable:
            try:
                function = ctypes.CDLL(None, use_errno=True).syscall
            except (OSError, AttributeError):
                _usable = False
                return None
            function.restype = ctypes.c_long
            function.argtypes = [
                ctypes.c_long,
                ctypes.c_int,
                ctypes.c_char_p,
                ctypes.POINTER(_OpenHow),
                ctypes.c_size_t,
            ]
            _syscall = function
        return _syscall


def available() -> bool:
    """Whether the fast path is in use on this machine (tests and diagnostics)."""
    return _usable and _bind() is not None


def open_folder_beneath(root_fd: int, parts: Sequence[str]) -> int | None:
    """A new descriptor of the folder ``parts`` below ``root_fd``, reached without any
    symlink; ``None`` if it cannot be had this way (the caller then walks).

    ``parts`` are path components already checked to hold no ``.``, ``..`` or empty name.
    """
    global _usable
    function = _bind() if _usable else None
    if function is None or not parts:
        return None
    fd = int(function(_SYS_OPENAT2, root_fd, os.fsencode("/".join(parts)), _HOW, _HOW_SIZE))
    if fd >= 0:
        return fd
    if ctypes.get_errno() in _UNSUPPORTED:
        _usable = False  # no openat2 here (old kernel, seccomp filter): walk from now on
    return None
