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
its own datasite, when it starts serving an app.
"""

from __future__ import annotations

from pathlib import Path

from syft_flwr_syftbox.atomic import write_atomic

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


def ensure_rpc_acl(rpc_dir: Path, *, fsync: bool = True) -> bool:
    """Write :data:`RPC_ACL` into ``rpc_dir`` unless it is already there; True if written.

    The file is rewritten only when its content differs, so starting a client does not make
    the SyftBox client upload an unchanged ACL file again.
    """
    path = rpc_dir / ACL_FILE
    try:
        if path.read_text(encoding="utf-8") == RPC_ACL:
            return False
    except (FileNotFoundError, UnicodeDecodeError):
        pass
    rpc_dir.mkdir(parents=True, exist_ok=True)
    write_atomic(path, [RPC_ACL.encode("utf-8")], replace=True, fsync=fsync)
    return True
