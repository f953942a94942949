"""Permission files, in both formats SyftBox servers read: each sender touches only its folder.

A SyftBox server enforces permissions from files in the datasites tree, and two formats are in
use: the Go SyftBox (the current production client and server) reads ``syft.pub.yaml``, the
Python SyftBox 0.4.x reads ``syftperm.yaml``. A server ignores the other format entirely (a
0.4.x server refuses every request with only a ``syft.pub.yaml`` in place: the sync client
renames them ``<id>.syftrejected.request``), so the transport writes both, with one meaning.

For the app's ``rpc`` folder::

    <endpoint>/<sender>/<id>.request             readable and writable by <sender> only
    <endpoint>/<sender>/<id>.response            readable and writable by <sender> only
    <endpoint>/<sender>/<id>.<kind>.<n>.part     the parts of a large one, the same
    syft.pub.yaml, syftperm.yaml                 readable by everyone (see below)
    anything else                                the owner only

Both formats have a template the server fills with the email of the user asking
(``{{.UserEmail}}`` in ``syft.pub.yaml``, ``{useremail}`` in ``syftperm.yaml``), so one rule
gives every user its own folder and nobody else's; nothing in it is listed to other users.
Writing covers deleting, so a sender can remove its collected requests and replies; the
datasite owner writes the replies (owners always have full access). In ``syft.pub.yaml``
``terminal`` stops a subfolder from loosening the rules; in both formats permission files need
admin rights, which only the owner has. The permission files themselves are readable by
everyone, so every sender can see what it may write. A request written before the server has
the folder's permission file is refused by the sync and offered again
(:mod:`~syft_flwr_syftbox.rejections`). The ``public`` folder (key
documents) is readable by everyone and writable by the owner only.

Only the owner of a datasite may write its permission files, so a transport writes them only
in its own datasite: the rpc folder's when it starts serving an app, the public folder's when
it publishes its key document. They are read and written through
:class:`~syft_flwr_syftbox.safe_fs.SafeRoot`, like every file below the datasites folder, and
replaced atomically, only when their content differs (so starting a client does not make the
sync client upload an unchanged file again).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from syft_flwr.errors import UnsafeFileError
from syft_flwr_syftbox.safe_fs import SafeRoot

__all__ = [
    "ACL_FILE",
    "LEGACY_ACL_FILE",
    "PERMISSION_FILES",
    "PUBLIC",
    "RPC",
    "PermissionSet",
    "ensure_permissions",
    "ensure_rpc_acl",
]

ACL_FILE = "syft.pub.yaml"
"""The Go SyftBox's permission file."""
LEGACY_ACL_FILE = "syftperm.yaml"
"""SyftBox 0.4.x's permission file."""
PERMISSION_FILES = frozenset({ACL_FILE, LEGACY_ACL_FILE})

_SUFFIXES = ("request", "response", "part")


@dataclass(frozen=True)
class PermissionSet:
    """One folder's permissions, in both formats (same meaning)."""

    pub_yaml: str
    """The ``syft.pub.yaml`` text (Go SyftBox)."""
    syftperm_yaml: str
    """The ``syftperm.yaml`` text (SyftBox 0.4.x)."""

    def files(self) -> dict[str, str]:
        """File name -> content."""
        return {ACL_FILE: self.pub_yaml, LEGACY_ACL_FILE: self.syftperm_yaml}


def _pub_rule(suffix: str) -> str:
    return (
        f"- pattern: '*/{{{{.UserEmail}}}}/*.{suffix}'\n"
        "  access:\n    admin: []\n    read: [USER]\n    write: [USER]\n"
    )


def _syftperm_rule(suffix: str) -> str:
    return (
        f"- path: '*/{{useremail}}/*.{suffix}'\n  user: '*'\n  permissions: [read, create, write]\n"
    )


_HEADER = (
    "# Written by syft-flwr-syftbox. Each sender reads and writes only its own folder\n"
    "# <endpoint>/<sender>/; everything else is the datasite owner's.\n"
)

RPC = PermissionSet(
    pub_yaml=_HEADER
    + "terminal: true\nrules:\n"
    + "".join(_pub_rule(suffix) for suffix in _SUFFIXES)
    + "".join(
        f"- pattern: '{name}'\n  access:\n    admin: []\n    read: ['*']\n    write: []\n"
        for name in ("syft.pub.yaml", "syftperm.yaml")
    )
    + "- pattern: '**'\n  access:\n    admin: []\n    read: []\n    write: []\n",
    syftperm_yaml=_HEADER.replace("syft-flwr-syftbox.", "syft-flwr-syftbox (SyftBox 0.4.x).")
    + "".join(_syftperm_rule(suffix) for suffix in _SUFFIXES)
    + "".join(
        f"- path: '{name}'\n  user: '*'\n  permissions: [read]\n"
        for name in ("syft.pub.yaml", "syftperm.yaml")
    ),
)
"""The permissions of an app's ``rpc`` folder."""

_PUBLIC_HEADER = (
    "# Written by syft-flwr-syftbox: the public folder (key documents) is readable by everyone.\n"
)

PUBLIC = PermissionSet(
    pub_yaml=_PUBLIC_HEADER
    + "rules:\n- pattern: '**'\n  access:\n    admin: []\n    read: ['*']\n    write: []\n",
    syftperm_yaml=_PUBLIC_HEADER + "- path: '**'\n  user: '*'\n  permissions: [read]\n",
)
"""The permissions of a datasite's ``public`` folder."""


def ensure_permissions(
    files: SafeRoot,
    folder: Path,
    permissions: PermissionSet,
    *,
    fsync: bool = True,
    keep_existing: bool = False,
) -> list[str]:
    """Write both permission files of ``folder`` where they differ; the names written.

    :param keep_existing: leave a permission file that is there already (one the owner, or
        another SyftBox app, wrote), writing only the missing ones.
    :raises UnsafeFileError: a folder on the way is a symlink or not a folder.
    :raises OSError: the folder cannot be created or written.
    """
    written = []
    for name, text in permissions.files().items():
        path = folder / name
        current = _current(files, path, text)
        if current == text or (keep_existing and files.exists(path)):
            continue
        data = [text.encode("utf-8")]
        try:
            files.write_atomic(path, data, replace=not keep_existing, fsync=fsync, create=True)
        except FileExistsError:
            continue  # written meanwhile by another process: theirs stands
        written.append(name)
    return written


def ensure_rpc_acl(files: SafeRoot, rpc_dir: Path, *, fsync: bool = True) -> bool:
    """Write the :data:`RPC` permission files of an app's ``rpc`` folder; True if written."""
    return bool(ensure_permissions(files, rpc_dir, RPC, fsync=fsync))


def _current(files: SafeRoot, path: Path, expected: str) -> str | None:
    """The file's text (read no further than the expected size), or ``None`` if there is no
    regular file: a symlink or FIFO in its place is replaced by the write, and a symlinked
    folder on the way makes the write fail."""
    size = len(expected.encode("utf-8"))
    try:
        with files.open_file(path) as (handle, _):
            return handle.read(size + 1).decode("utf-8")
    except (FileNotFoundError, UnsafeFileError, UnicodeDecodeError):
        return None
