"""Key documents on SyftBox: ``datasites/<email>/public/did.json``, where syft-crypto keeps them.

The core builds and verifies the documents (:mod:`syft_flwr.crypto.document`); this module only
stores and finds them. The file is replaced atomically, because peers read it at any moment, and
the ``public`` folder gets read-for-everyone permission files (both formats,
:data:`~syft_flwr_syftbox.acl.PUBLIC`) where it has none, so the SyftBox server lets other
datasites download it. A ``did.json`` that syft-crypto wrote for another
identity key is never replaced: that identity is adopted instead (``syft-flwr keys init
--import-syft-crypto``, :mod:`syft_flwr.crypto.syft_crypto_keys`). Fetching returns the bytes
as found: trust comes from the signatures the core checks, and from the fact that only the
owner can write its datasite. Like every file below the datasites folder, key documents are read
and written through :class:`~syft_flwr_syftbox.safe_fs.SafeRoot`: a ``did.json`` that is a
symlink, a FIFO or a folder, or sits in a symlinked folder, is no key document.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import TYPE_CHECKING

from syft_flwr.addresses import check_datasite
from syft_flwr.crypto.syft_crypto_keys import check_replaceable
from syft_flwr.errors import UnsafeFileError
from syft_flwr_syftbox.acl import PUBLIC, ensure_permissions

if TYPE_CHECKING:  # the transport's methods call this module
    from syft_flwr_syftbox.transport import SyftBoxTransport

__all__ = ["did_path", "fetch", "publish"]

logger = logging.getLogger(__name__)


def did_path(transport: SyftBoxTransport, datasite: str) -> Path:
    """Where ``datasite`` publishes its key document, as syft-crypto's ``did_path``."""
    return (
        transport.layout.datasites / check_datasite(datasite, syft_url=True) / "public" / "did.json"
    )


def publish(transport: SyftBoxTransport, document: bytes) -> None:
    """Write ``public/did.json`` of this datasite atomically (and its permission files if
    absent).

    :raises SyftCryptoIdentityError: the file is another identity's syft-crypto document
        (a syft-flwr 0.5.x datasite's): adopt it with ``syft-flwr keys init
        --import-syft-crypto`` rather than replace it.
    :raises UnsafeFileError: ``did.json`` or a folder on the way is a symlink (or the file
        is a FIFO or a folder).
    """
    path = did_path(transport, transport.identity)
    check_replaceable(_read(transport, path), document, transport.identity, str(path))
    fsync = transport.options.fsync
    ensure_permissions(transport.fs, path.parent, PUBLIC, fsync=fsync, keep_existing=True)
    transport.fs.write_atomic(path, [document], replace=True, fsync=fsync)


def fetch(transport: SyftBoxTransport, datasite: str) -> bytes | None:
    """The bytes of ``datasite``'s ``public/did.json``, or ``None`` if it has none yet."""
    path = did_path(transport, datasite)
    try:
        return _read(transport, path)
    except UnsafeFileError as exc:
        logger.warning("%s has no usable key document: %s", datasite, exc)
        return None


def _read(transport: SyftBoxTransport, path: Path) -> bytes | None:
    """The bytes of a regular file below the datasites folder, or ``None`` if there is none.

    :raises UnsafeFileError: the path is a symlink, FIFO or folder, or below a symlink.
    """
    try:
        with transport.fs.open_file(path) as (handle, _):
            return handle.read()
    except FileNotFoundError:
        return None
