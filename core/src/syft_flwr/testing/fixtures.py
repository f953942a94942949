"""What the conformance kit needs from a transport under test, and the helpers its tests share."""

from __future__ import annotations

import dataclasses
import threading
import uuid
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager
from pathlib import Path
from typing import Any, ClassVar

import pluggy
import pytest

from syft_flwr.plugins import create_plugin_manager, get_transport_registry
from syft_flwr.testing import helpers
from syft_flwr.testing.budget import budget
from syft_flwr.testing.local import local_options
from syft_flwr.testing.rules import RULES_COMMAND
from syft_flwr.transport import Reply, Transport, TransportCapabilities, TransportSettings

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
    :cvar ttl: the short time-to-live of requests meant to expire unanswered.
    :cvar answer_ttl: a time-to-live short enough to wait out in a test yet long enough for a
        request to reach its handler first (the test of an answer written after the expiry).
    :cvar poll_interval: poll interval handed to transports that cannot notify.
    :cvar supports_restart: override the transport's ``capabilities.persistent``.
    :cvar many_datasites: how many datasites the scale test uses.
    :cvar transport_options: extra options for every instance (e.g. a small
        ``max_body_size`` so the size limit tests run).
    :cvar test_budget: seconds any one kit test may take; beyond, it fails with a verdict
        (a test marked ``syft_flwr_budget("<attribute>")`` reads its budget from that
        attribute instead).

    Fixtures, fsspec-style: ``make_transport`` is the *base* fixture a plugin overrides when
    it has no ``local_options``; ``capabilities`` (what a probe instance
    declares, with ``supports_restart`` applied to ``persistent``) is *derived* from it, so
    tests branch or skip on it without building transports of their own.
    """

    transport_name: ClassVar[str | None] = None
    timeout: ClassVar[float] = helpers.TIMEOUT
    ttl: ClassVar[float] = 0.5
    answer_ttl: ClassVar[float] = 1.5
    poll_interval: ClassVar[float] = 0.05
    supports_restart: ClassVar[bool | None] = None
    many_datasites: ClassVar[int] = 20
    transport_options: ClassVar[dict[str, Any]] = {}
    test_budget: ClassVar[float] = 60.0

    @pytest.fixture(autouse=True)
    def _kit_budget(self, request: pytest.FixtureRequest) -> Iterator[None]:
        """Every kit test ends in bounded time, with a verdict naming the test."""
        marker = request.node.get_closest_marker("syft_flwr_budget")
        seconds = float(getattr(self, marker.args[0])) if marker else self.test_budget
        with budget(seconds, request.node.nodeid):
            yield

    @pytest.fixture(scope="class")
    @classmethod
    def kit_plugin_manager(cls) -> pluggy.PluginManager:
        """One plugin manager per test class: loading the entry points is the slow part of
        building a transport, and the kit's tests register nothing on it."""
        return create_plugin_manager()

    @pytest.fixture
    def make_transport(
        self, tmp_path: Path, kit_plugin_manager: pluggy.PluginManager
    ) -> Iterator[MakeTransport]:
        """Build connected transport instances; **required** unless ``transport_name`` is set.

        Instances built with the same identity must reach the same mailbox (that is how
        restarts are tested), and all instances must share one medium (network, folder,
        account space).
        """
        if self.transport_name is None:
            raise NotImplementedError(
                f'{type(self).__name__}: set `transport_name = "<your transport>"` (and '
                "implement the classmethod local_options on your transport), or override "
                "the `make_transport` fixture to return `factory(identity) -> Transport`; "
                f"the rules the kit checks: {RULES_COMMAND}"
            )
        manager = kit_plugin_manager
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

    @pytest.fixture
    def capabilities(self, make_transport: MakeTransport) -> TransportCapabilities:
        """What the transport under test declares (``persistent`` as ``supports_restart``
        overrides it)."""
        declared = make_transport(self.identity("probe")).capabilities
        if self.supports_restart is None:
            return declared
        return dataclasses.replace(declared, persistent=self.supports_restart)

    # -- helpers shared by the mixins (bounded by the suite's timeout) ---------------------

    @staticmethod
    def identity(label: str) -> str:
        """A fresh datasite email, unique per call so tests never share mailboxes."""
        return f"{label}-{uuid.uuid4().hex[:10]}@conformance.test"

    def serving(self, transport: Transport) -> AbstractContextManager[threading.Thread]:
        """Run ``transport.run()`` in a thread for the ``with`` block, then stop it."""
        return helpers.serving(transport, self.timeout)

    def wait_reply(
        self, transport: Transport, future_id: str, timeout: float | None = None
    ) -> Reply:
        """Wait (bounded) until ``future_id`` has a reply; fail the test if it never comes."""
        return helpers.wait_reply(
            transport, future_id, self.timeout if timeout is None else timeout
        )

    def later(self, seconds: float | None = None) -> float:
        """An expiry ``seconds`` from now (default: the suite timeout)."""
        return helpers.later(self.timeout if seconds is None else seconds)
