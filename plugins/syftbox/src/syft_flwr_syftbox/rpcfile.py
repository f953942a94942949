"""One RPC file as the transport sees it, whatever its format.

Two file formats share the SyftBox RPC layout (:mod:`syft_flwr_syftbox.layout`):

- ``native`` (:mod:`syft_flwr_syftbox.native_file`): a small binary prefix, a msgpack header,
  then the body as raw bytes. The default: no base64, no JSON parse of a 100 MiB body, and the
  prefix declares the exact length, so a file caught half-written is recognised as such.
- ``syft-rpc`` (:mod:`syft_flwr_syftbox.syftrpc_file`): syft-rpc's JSON, so a datasite running
  the real SyftBox Python stack (syft-rpc, syft-event, syft-flwr 0.5.x) can take part.

:mod:`syft_flwr_syftbox.files` reads either (recognised by the first byte), so a transport
reads whatever arrives and answers a request in the format it came in.

A native file whose body is larger than the transport's ``part_size`` is a *manifest*: its
body travels in part files beside it (:mod:`syft_flwr_syftbox.parts`) and its header lists
them (:attr:`RpcFile.parts`).
"""

from __future__ import annotations

import enum
from dataclasses import dataclass
from typing import NamedTuple

from syft_flwr.errors import WireFormatError
from syft_flwr.transport import Body, ReceivedBody, ReceivedData, ReplyStatus
from syft_flwr_syftbox.layout import FileKind

__all__ = [
    "IncompleteFileError",
    "Part",
    "RpcFile",
    "WireFormat",
    "default_status_code",
]


class WireFormat(enum.Enum):
    """How RPC files are written (the transport option ``wire``)."""

    NATIVE = "native"
    SYFT_RPC = "syft-rpc"


class IncompleteFileError(WireFormatError):
    """The file is shorter than it declares: still being written, or cut short."""


class Part(NamedTuple):
    """One part of a manifest's body, as its header declares it."""

    size: int
    sha256: str
    """The SHA-256 of the part's bytes, as lowercase hex."""


@dataclass(frozen=True)
class RpcFile:
    """The decoded content of a request or a response file.

    ``recipient``, ``app`` and ``endpoint`` are what the file *claims* (its header or URL);
    callers compare them, and ``sender``, with the path the file was found at.

    :param code: the HTTP-like status code of a syft-rpc response (200, 419, 403, ...); native
        responses carry ``status`` and ``detail`` only.
    :param parts: a native manifest's parts, in order; the body is theirs concatenated (empty
        until the transport has read them). Empty for every other file.
    :param body: in a file that was read, what the transport hands the core
        (:data:`~syft_flwr.transport.ReceivedData`: ``bytes``, a releasable buffer's view, or a
        large sealed body left in its file); a file about to be written may hold the frames of
        its body (:data:`~syft_flwr.transport.Body`), written without joining them.
    """

    kind: FileKind
    format: WireFormat
    id: str
    sender: str
    recipient: str
    app: str
    endpoint: str
    created: float
    expires: float
    body: Body | ReceivedData = b""
    status: ReplyStatus = ReplyStatus.OK
    detail: str = ""
    code: int = 200
    parts: tuple[Part, ...] = ()

    def as_body(self) -> Body:
        """:attr:`body` as a :data:`~syft_flwr.transport.Body` (what a writer, or
        :func:`~syft_flwr.transport.body_size`, takes).

        :raises TypeError: it is a body still left in the file it was read from (a
            :class:`~syft_flwr.transport.ReceivedBody`): a file read is never written back.
        """
        if isinstance(self.body, ReceivedBody):
            raise TypeError("a body left in the file it was read from is not written again")
        return self.body


_DEFAULT_CODES = {ReplyStatus.OK: 200, ReplyStatus.EXPIRED: 419, ReplyStatus.REJECTED: 400}


def default_status_code(status: ReplyStatus) -> int:
    """The syft-rpc status code for ``status`` when no more specific one applies."""
    return _DEFAULT_CODES[status]
