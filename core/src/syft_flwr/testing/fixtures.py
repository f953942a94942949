"""What the conformance kit needs from a transport under test, and the helpers its tests share."""

from __future__ import annotations

import threading
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, ClassVar

import pytest

from syft_flwr.plugins import create_plugin_manager, get_transport_registry
from syft_flwr.testing.local import local_options
from syft_flwr.transport import Reply, Transport, TransportSettings

__all__ = ["APP", "ENDPOINT", "MAX_TESTED_BODY", "MakeTransport", "TransportFixtures"]

MakeTransport = Callable[..., Transport]
"""``make_transport(identity, **options) -> Transport``: every instance on one shared medium."""

APP = "flwr/conformance"
ENDPOINT = "messages"
MAX_TESTED_BODY = 8 * 1024 * 1024


class TransportFixtures:
    """What the suite needs to know about the transport under test.

    :cvar transport_name: the installed transport name; enough when the plugin implements
        ``Transport.local_options``. Otherwise override :meth:`make_transport`.
    :cvar timeout: upper bound, in seconds, of every wait for a delivery or a reply; a
        passing test never comes close to it.
    :cvar ttl: the short time-to-live used by the expiry tests.
    :cvar poll_interval: poll interval handed to transports that cannot notify.
    :cvar supports_restart: override the transport's ``capabilities.persistent``.
    :cvar many_datasites: how many datasites the scale test uses.
    :cvar transport_options: extra options for every instance (e.g. a small
        ``max_body_size`` so the size limit tests run).
    """

    transport_name: ClassVar[str | None] = None
    timeout: ClassVar[float] = 20.0
    ttl: ClassVar[float] = 1.5
    poll_interval: ClassVar[float] = 0.05
    supports_restart: ClassVar[bool | None] = None
    many_datasites: ClassVar[int] = 20
    transport_options: ClassVar[dict[str, Any]] = {}

    @pytest.fixture
    def make_transport(self, tmp_path: Path) -> Iterator[MakeTransport]:
        """Build connected transport instances; **required** unless ``transport_name`` is set.

        Instances built with the same identity must reach the same mailbox (that is how
        restarts are tested), and all instances must share one medium (network, folder,
        account space).
        """
        if self.transport_name is None:
            raise NotImplementedError(
                f'{type(self).__name__}: set `transport_name = "<your transport>"` (and '
                "implement the classmethod local_options on your transport), or override "
                "the `make_transport` fixture to return `factory(identity) -> Transport`"
            )
        manager = create_plugin_manager()
        registry = get_transport_registry(manager)
        options = {
            **local_options(self.transport_name, tmp_path, manager, registry),
            **self.transport_options,
        }
        built: list[Transport] = []

        def factory(identity: str, **extra: Any) -> Transport:
            settings = TransportSettings(
                identity, {**options, **extra}, project_dir=None, poll_interval=self.poll_interval
            )
            transport = registry.create(self.transport_name or "", settings)
            built.append(transport)
            return transport

        yield factory
        for transport in built:
            transport.close()

    # -- helpers shared by the mixins --------------------------------------------------

    @staticmethod
    def identity(label: str) -> str:
        """A fresh datasite email, unique per call so tests never share mailboxes."""
        return f"{label}-{uuid.uuid4().hex[:10]}@conformance.test"

    @contextmanager
    def serving(self, transport: Transport) -> Iterator[threading.Thread]:
        """Run ``transport.run()`` in a thread for the ``with`` block, then stop it."""
        thread = threading.Thread(target=transport.run, daemon=True, name="serving")
        thread.start()
        try:
            yield thread
        finally:
            transport.stop()
            thread.join(self.timeout)
            assert not thread.is_alive(), "run() did not return after stop()"

    def wait_reply(
        self, transport: Transport, future_id: str, timeout: float | None = None
    ) -> Reply:
        """Wait (bounded) until ``future_id`` has a reply; fail the test if it never comes."""
        deadline = time.monotonic() + (self.timeout if timeout is None else timeout)
        while (reply := transport.poll(future_id)) is None:
            remaining = deadline - time.monotonic()
            assert remaining > 0, f"no reply for future {future_id} in time"
            transport.wait_ready([future_id], min(remaining, 0.5))
        return reply

    def later(self, seconds: float | None = None) -> float:
        """An expiry ``seconds`` from now (default: the suite timeout)."""
        return time.time() + (self.timeout if seconds is None else seconds)
