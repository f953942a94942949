"""A plugin written against the first release's hooks, kept to test the deprecation path.

It registers a factory by name (``registry.register(name, factory)``), guards every transport
hook with ``if transport != NAME`` / ``isinstance`` as plugins had to, and observes
``syft_flwr_round_finished``. Everything here must keep working, with one
``SyftFlwrDeprecationWarning`` per deprecated use, until syft-flwr 0.2.0.
"""

from __future__ import annotations

import threading
from pathlib import Path
from typing import Any

from syft_flwr.hookspecs import hookimpl
from syft_flwr.registry import TransportRegistry
from syft_flwr.transport import Transport, TransportSettings

from .transport import Medium, OldStyleTransport

TRANSPORT_NAME = "oldstyle"

calls: dict[str, int] = {}
"""How often each hook of this plugin answered (the test resets it)."""
_lock = threading.Lock()


def _count(hook: str) -> None:
    with _lock:
        calls[hook] = calls.get(hook, 0) + 1


def create_transport(settings: TransportSettings) -> OldStyleTransport:
    """An in-process transport registered the deprecated way."""
    return OldStyleTransport(settings)


@hookimpl
def syft_flwr_register_transports(registry: TransportRegistry) -> None:
    registry.register(TRANSPORT_NAME, create_transport)


@hookimpl
def syft_flwr_local_options(transport: str, workdir: Path) -> dict[str, Any] | None:
    if transport != TRANSPORT_NAME:
        return None
    _count("local_options")
    return {"medium": f"old-{workdir.name}"}


@hookimpl
def syft_flwr_publish_key_document(transport: Transport, document: bytes) -> bool | None:
    if not isinstance(transport, OldStyleTransport):
        return None
    _count("publish_key_document")
    with transport.medium.lock:
        transport.medium.documents[transport.identity] = document
    return True


@hookimpl
def syft_flwr_fetch_key_document(transport: Transport, datasite: str) -> bytes | None:
    if not isinstance(transport, OldStyleTransport):
        return None
    _count("fetch_key_document")
    with transport.medium.lock:
        return transport.medium.documents.get(datasite)


@hookimpl
def syft_flwr_round_finished(run_id: int, group_id: str, replies: int, failures: int) -> None:
    _count("round_finished")


__all__ = ["TRANSPORT_NAME", "Medium", "OldStyleTransport", "calls", "create_transport"]
