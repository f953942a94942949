"""Where SyftBox RPC files live, exactly as syft-rpc lays them out.

A request from ``sender`` to ``endpoint`` of ``app`` at ``recipient`` is the file::

    <datasites>/<recipient>/app_data/<app>/rpc/<endpoint>/<sender>/<id>.request

and its reply is ``<id>.response`` beside it. The sender folder is what the SyftBox server's
ACL lets only that sender write (see :mod:`syft_flwr_syftbox.acl`), which is why it, and not
any field inside a file, is the sender's identity.

:meth:`Layout.parse` is the inverse, used on every path a watcher or a directory scan
reports: it validates each component with the core's :mod:`syft_flwr.addresses` (emails as
``syft://`` URLs need them, apps at most :data:`MAX_APP_SEGMENTS` folders deep), so a path that
does not parse is simply not an RPC file.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass
from pathlib import Path

from syft_flwr.addresses import (
    check_app,
    check_datasite,
    check_endpoint,
    check_request_id,
)
from syft_flwr.errors import InvalidAddressError

__all__ = ["APP_DATA", "MAX_APP_SEGMENTS", "RPC", "FileKind", "Layout", "RpcLocation", "syft_url"]

APP_DATA = "app_data"
RPC = "rpc"
MAX_APP_SEGMENTS = 8
"""How many folders deep an app name may reach below ``app_data`` (``flwr/diabetes`` is 2)."""


class FileKind(enum.Enum):
    """The two kinds of RPC file, by their suffix."""

    REQUEST = ".request"
    RESPONSE = ".response"


@dataclass(frozen=True)
class RpcLocation:
    """What a request or response file's path says about it."""

    recipient: str
    app: str
    endpoint: str
    sender: str
    id: str
    kind: FileKind


def syft_url(recipient: str, app: str, endpoint: str) -> str:
    """The ``syft://`` URL syft-rpc writes for an endpoint (``rpc.make_url``)."""
    return f"syft://{recipient}/{APP_DATA}/{app}/{RPC}/{endpoint}"


_KEPT_FOLDERS = 4096
"""How many validated sender folders a layout keeps (then it starts over): a transport asks
for the same few for every message it sends, serves or removes."""


class Layout:
    """Path arithmetic under one ``datasites`` folder; every argument is validated."""

    def __init__(self, datasites: Path) -> None:
        self.datasites = datasites
        self._sender_dirs: dict[tuple[str, str, str, str], Path] = {}

    def rpc_dir(self, recipient: str, app: str) -> Path:
        """``<datasites>/<recipient>/app_data/<app>/rpc``: where the app's ACL file goes."""
        return (
            self.datasites
            / check_datasite(recipient, syft_url=True)
            / APP_DATA
            / check_app(app, max_segments=MAX_APP_SEGMENTS)
            / RPC
        )

    def endpoint_dir(self, recipient: str, app: str, endpoint: str) -> Path:
        """The folder holding one sender folder per client of ``endpoint``."""
        return self.rpc_dir(recipient, app) / check_endpoint(endpoint)

    def sender_dir(self, recipient: str, app: str, endpoint: str, sender: str) -> Path:
        """The folder only ``sender`` may write requests into (validated once, then kept)."""
        key = (recipient, app, endpoint, sender)
        folder = self._sender_dirs.get(key)
        if folder is None:
            folder = self.endpoint_dir(recipient, app, endpoint) / check_datasite(
                sender, syft_url=True
            )
            if len(self._sender_dirs) >= _KEPT_FOLDERS:
                self._sender_dirs.clear()
            self._sender_dirs[key] = folder
        return folder

    def file(self, location: RpcLocation) -> Path:
        """The path of the file ``location`` describes."""
        folder = self.sender_dir(
            location.recipient, location.app, location.endpoint, location.sender
        )
        return folder / f"{check_request_id(location.id)}{location.kind.value}"

    def parse(self, path: Path | str) -> RpcLocation | None:
        """The location a path encodes, or ``None`` if it is not an RPC file under this layout.

        Works on paths as watchers report them (absolute, under ``datasites``); anything
        outside the folder, with a bad component, or with another suffix gives ``None``.
        """
        try:
            parts = Path(path).relative_to(self.datasites).parts
        except ValueError:
            return None
        # recipient / app_data / <app...> / rpc / endpoint / sender / file
        if len(parts) < 7 or parts[1] != APP_DATA or parts[-4] != RPC:
            return None
        stem, dot, suffix = parts[-1].rpartition(".")
        kinds = {kind.value: kind for kind in FileKind}
        kind = kinds.get(dot + suffix)
        if kind is None:
            return None
        try:
            return RpcLocation(
                recipient=check_datasite(parts[0], syft_url=True),
                app=check_app("/".join(parts[2:-4]), max_segments=MAX_APP_SEGMENTS),
                endpoint=check_endpoint(parts[-3]),
                sender=check_datasite(parts[-2], syft_url=True),
                id=check_request_id(stem),
                kind=kind,
            )
        except InvalidAddressError:
            return None
