"""The deprecated transport hooks, asked only where a transport class does not answer.

``syft_flwr_local_options``, ``syft_flwr_publish_key_document`` and
``syft_flwr_fetch_key_document`` were transport methods in disguise: every plugin guarded them
with ``if transport != NAME``. They are now methods of :class:`~syft_flwr.transport.Transport`;
plugins of the first release keep working through this module until syft-flwr 0.2.0, which
deletes it (the plugin manager warns once per plugin that implements them).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pluggy

from syft_flwr.registry import TransportInfo
from syft_flwr.transport import Transport

__all__ = ["fetch_key_document", "local_options", "publish_key_document"]


def _overrides(transport: Transport, method: str) -> bool:
    return getattr(type(transport), method) is not getattr(Transport, method)


def local_options(
    info: TransportInfo, workdir: Path, manager: pluggy.PluginManager
) -> dict[str, Any] | None:
    """The registered class's :meth:`~syft_flwr.transport.Transport.local_options`, else the
    deprecated hook's answer for ``info.name``; ``None`` if neither answers."""
    if info.transport_class is not None:
        options = info.transport_class.local_options(workdir)
        if options is not None:
            return options
    answer: dict[str, Any] | None = manager.hook.syft_flwr_local_options(
        transport=info.name, workdir=workdir
    )
    return answer


def publish_key_document(
    transport: Transport, document: bytes, manager: pluggy.PluginManager
) -> None:
    """Publish through the transport's method, else a plugin implementing the deprecated hook.

    :raises KeyDocumentsUnsupportedError: neither does (the base method's error, which names
        the transport class and the method to implement).
    """
    if not _overrides(transport, "publish_key_document"):
        done = manager.hook.syft_flwr_publish_key_document(transport=transport, document=document)
        if done:
            return
    transport.publish_key_document(document)


def fetch_key_document(
    transport: Transport, datasite: str, manager: pluggy.PluginManager
) -> bytes | None:
    """Fetch through the transport's method, else a plugin implementing the deprecated hook.

    :raises KeyDocumentsUnsupportedError: neither does.
    """
    if _overrides(transport, "fetch_key_document"):
        return transport.fetch_key_document(datasite)
    impls = manager.hook.syft_flwr_fetch_key_document.get_hookimpls()
    if not impls:
        return transport.fetch_key_document(datasite)  # the base: raises, naming the method
    found: bytes | None = manager.hook.syft_flwr_fetch_key_document(
        transport=transport, datasite=datasite
    )
    return found
