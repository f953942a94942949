"""A whole federation on this machine, over any transport that can run locally.

Used by the demo's tests, the conformance kit and plugin authors' own end-to-end tests:
start client threads with :meth:`LocalFederation.start_clients`, run a ``ServerApp`` with
:meth:`LocalFederation.run_server`, then :meth:`LocalFederation.join_clients`.
"""

from __future__ import annotations

import tempfile
import threading
import uuid
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import pluggy
from flwr.app import Context, RecordDict
from flwr.clientapp import ClientApp
from flwr.serverapp import ServerApp

from syft_flwr import legacy_hooks
from syft_flwr.errors import ConfigError, SyftFlwrError
from syft_flwr.fl_orchestrator import syftbox_flwr_client, syftbox_flwr_server
from syft_flwr.plugins import get_plugin_manager, get_transport_registry
from syft_flwr.registry import TransportRegistry
from syft_flwr.transport import Transport, TransportSettings

__all__ = ["LocalFederation", "empty_context", "local_options"]

JOIN_TIMEOUT = 60.0
"""Longest wait for a client to stop after the server finished."""


def empty_context(**node_config: Any) -> Context:
    """A fresh Flower ``Context`` with the given node config."""
    return Context(
        run_id=0, node_id=0, node_config=dict(node_config), state=RecordDict(), run_config={}
    )


def local_options(
    transport: str,
    workdir: Path,
    manager: pluggy.PluginManager | None = None,
    registry: TransportRegistry | None = None,
) -> dict[str, Any]:
    """The options that make ``transport`` run on this machine (its class's
    :meth:`~syft_flwr.transport.Transport.local_options`).

    :param registry: the registry to look ``transport`` up in; the manager's by default.
    :raises UnknownTransportError: ``transport`` is not installed.
    :raises ConfigError: the transport class does not implement ``local_options``.
    """
    manager = manager or get_plugin_manager()
    info = (registry or get_transport_registry(manager)).get(transport)
    options = legacy_hooks.local_options(info, workdir, manager)
    if options is None:
        where = info.transport_class.__qualname__ if info.transport_class else "its class"
        raise ConfigError(
            f"transport {transport!r} cannot run locally: {where} does not implement the "
            "classmethod local_options(cls, workdir)"
        )
    return dict(options)


class LocalFederation:
    """One server and ``num_datasites`` clients over one transport, in threads.

    :param transport: an installed transport name.
    :param num_datasites: how many datasites (clients) take part.
    :param manager: the plugin manager to use (a fresh one loading entry points if ``None``).
    :param options: transport options; by default the transport's ``local_options``.
    :param poll_interval: poll interval handed to the transports.
    """

    app_name = "test"
    server_identity = "server@federation.test"

    def __init__(
        self,
        transport: str = "memory",
        num_datasites: int = 3,
        *,
        manager: pluggy.PluginManager | None = None,
        options: Mapping[str, Any] | None = None,
        poll_interval: float = 0.05,
    ) -> None:
        self.manager = manager or get_plugin_manager()
        self.registry: TransportRegistry = get_transport_registry(self.manager)
        self.transport_name = transport
        self.registry.get(transport)
        self._workdir = tempfile.TemporaryDirectory(prefix="syft-flwr-federation-")
        tag = uuid.uuid4().hex[:8]
        self.datasites = [f"ds{i}-{tag}@federation.test" for i in range(num_datasites)]
        self.options = (
            dict(options)
            if options is not None
            else local_options(transport, Path(self._workdir.name), self.manager, self.registry)
        )
        self.poll_interval = poll_interval
        self.transports: list[Transport] = []
        self.threads: list[threading.Thread] = []
        self.stop_reasons: dict[str, str | None] = {}
        self.errors: dict[str, BaseException] = {}

    def transport(self, identity: str, **options: Any) -> Transport:
        """A new transport instance acting as ``identity`` (closed by :meth:`close`)."""
        settings = TransportSettings(
            identity, {**self.options, **options}, poll_interval=self.poll_interval
        )
        transport = self.registry.create(self.transport_name, settings)
        self.transports.append(transport)
        return transport

    def start_clients(
        self, make_app: Callable[[int], ClientApp], skip: frozenset[int] = frozenset()
    ) -> None:
        """Serve ``make_app(index)`` for every datasite not in ``skip``, each in a thread."""
        for index, email in enumerate(self.datasites):
            if index not in skip:
                self._start_client(index, email, make_app(index))

    def _start_client(self, index: int, email: str, app: ClientApp) -> None:
        transport = self.transport(email)
        context = empty_context(**{"partition-id": index, "num-partitions": len(self.datasites)})

        def serve() -> None:
            try:
                self.stop_reasons[email] = syftbox_flwr_client(
                    app,
                    context,
                    self.app_name,
                    transport=transport,
                    plugin_manager=self.manager,
                    trusted_aggregators=[self.server_identity],
                )
            except BaseException as exc:  # kept for the test to report, not lost in a thread
                self.errors[email] = exc

        thread = threading.Thread(target=serve, daemon=True, name=f"client-{email}")
        thread.start()
        self.threads.append(thread)

    def run_server(self, app: ServerApp, context: Context | None = None) -> Context:
        """Run ``app`` as the aggregator of every datasite; returns the updated context."""
        return syftbox_flwr_server(
            app,
            context or empty_context(),
            self.datasites,
            self.app_name,
            transport=self.transport(self.server_identity),
            plugin_manager=self.manager,
        )

    def join_clients(self, timeout: float = JOIN_TIMEOUT) -> None:
        """Wait for every client to stop.

        :raises SyftFlwrError: a client is still serving after ``timeout`` or failed.
        """
        for thread in self.threads:
            thread.join(timeout)
            if thread.is_alive():
                raise SyftFlwrError(f"{thread.name} did not stop within {timeout} s")
        if self.errors:
            email, error = next(iter(self.errors.items()))
            raise SyftFlwrError(f"client {email} failed: {error!r}") from error

    def close(self) -> None:
        """Close every transport and remove the working directory."""
        for transport in self.transports:
            transport.close()
        self._workdir.cleanup()

    def __enter__(self) -> LocalFederation:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()
