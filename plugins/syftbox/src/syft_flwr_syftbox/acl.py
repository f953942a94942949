"""The app's ``syft.pub.yaml``: each sender may touch only its own folder.

The SyftBox server enforces permissions from ``syft.pub.yaml`` files (the nearest one above a
path applies; ``terminal: true`` makes it final for everything below). The rules use
SyftBox's template patterns: ``{{.UserEmail}}`` in a pattern is replaced by the email of the
user asking, and ``USER`` in an access list stands for that user. So for the app's ``rpc``
folder::

    <endpoint>/<sender>/<id>.request    readable and writable by <sender> only
    <endpoint>/<sender>/<id>.response   readable and writable by <sender> only
    anything else                       the owner only

which is syft-event's own rule set narrowed to one endpoint level, plus a final catch-all.
Writing covers deleting, so a sender can remove its collected requests and replies; the
datasite owner writes the replies (owners always have full access). ``terminal`` stops a
subfolder from loosening the rules: a sender can never escalate by writing an ACL file into
its own folder (ACL files need admin rights anyway, but the rule is then explicit).

Only the owner of a datasite may write its ACL files, so a transport writes this file only in
its own datasite, when it starts serving an app. It is read and written through
:class:`~syft_flwr_syftbox.safe_fs.SafeRoot`, like every file below the datasites folder: a
symlinked folder on the way is refused, and a symlink or FIFO in the file's place is replaced,
never followed.
"""

from __future__ import annotations

from pathlib import Path

from syft_flwr.errors import UnsafeFileError
from syft_flwr_syftbox.safe_fs import SafeRoot

__all__ = ["ACL_FILE", "RPC_ACL", "ensure_rpc_acl"]

ACL_FILE = "syft.pub.yaml"

RPC_ACL = """\
# Written by syft-flwr-syftbox. Each sender reads and writes only its own folder
# <endpoint>/<sender>/; everything else is the datasite owner's.
terminal: true
rules:
- pattern: '*/{{.UserEmail}}/*.request'
  access:
    admin: []
    read: [USER]
    write: [USER]
- pattern: '*/{{.UserEmail}}/*.response'
  access:
    admin: []
    read: [USER]
    write: [USER]
- pattern: '**'
  access:
    admin: []
    read: []
    write: []
"""


def ensure_rpc_acl(files: SafeRoot, rpc_dir: Path, *, fsync: bool = True) -> bool:
    """Write :data:`RPC_ACL` into ``rpc_dir`` unless it is already there; True if written.

    The file is rewritten only when its content differs, so starting a client does not make
    the SyftBox client upload an unchanged ACL file again.

    :raises UnsafeFileError: a folder on the way to ``rpc_dir`` is a symlink or not a folder.
    :raises OSError: the folder cannot be created or written.
    """
    path = rpc_dir / ACL_FILE
    if _current(files, path) == RPC_ACL:
        return False
    files.write_atomic(path, [RPC_ACL.encode("utf-8")], replace=True, fsync=fsync, create=True)
    return True


def _current(files: SafeRoot, path: Path) -> str | None:
    """The ACL file's text (read no further than the expected size), or ``None`` if there is
    no regular file: a symlink or FIFO in its place is replaced by the write, and a symlinked
    folder on the way makes the write fail."""
    expected = len(RPC_ACL.encode("utf-8"))
    try:
        with files.open_file(path) as (handle, _):
            return handle.read(expected + 1).decode("utf-8")
    except (FileNotFoundError, UnsafeFileError, UnicodeDecodeError):
        return None
