"""Shared fixtures: a local federation over the memory transport, found through its entry point."""

from __future__ import annotations

import threading
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field

import pytest
from flwr.app import Context, RecordDict
from flwr.clientapp import ClientApp
from flwr.serverapp import ServerApp

from syft_flwr.fl_orchestrator import syftbox_flwr_client, syftbox_flwr_server
from syft_flwr.plugins import create_plugin_manager, get_transport_registry
from syft_flwr.transport import Transport, TransportSettings

JOIN_TIMEOUT = 30.0


def empty_context(**node_config: object) -> Context:
    return Context(
        run_id=0, node_id=0, node_config=dict(node_config), state=RecordDict(), run_config={}
    )


@dataclass
class Federation:
    """A memory-transport federation: start clients in threads, run a server, collect outcomes."""

    network: str
    datasites: list[str]
    manager: object
    transports: list[Transport] = field(default_factory=list)
    threads: list[threading.Thread] = field(default_factory=list)
    stop_reasons: dict[str, str | None] = field(default_factory=dict)
    errors: dict[str, BaseException] = field(default_factory=dict)

    def transport(self, identity: str, **options: object) -> Transport:
        registry = get_transport_registry(self.manager)  # type: ignore[arg-type]
        settings = TransportSettings(
            identity, {"network": self.network, **options}, poll_interval=0.05
        )
        transport = registry.create("memory", settings)
        self.transports.append(transport)
        return transport

    def start_clients(
        self, make_app: Callable[[int], ClientApp], skip: frozenset[int] = frozenset()
    ) -> None:
        for index, email in enumerate(self.datasites):
            if index in skip:
                continue
            transport = self.transport(email)
            context = empty_context(
                **{"partition-id": index, "num-partitions": len(self.datasites)}
            )
            app = make_app(index)

            def serve(
                transport: Transport = transport, app: ClientApp = app, context: Context = context
            ) -> None:
                try:
                    self.stop_reasons[transport.identity] = syftbox_flwr_client(
                        app, context, "test", transport=transport, plugin_manager=self.manager
                    )
                except BaseException as exc:
                    self.errors[transport.identity] = exc

            thread = threading.Thread(target=serve, daemon=True, name=f"client-{email}")
            thread.start()
            self.threads.append(thread)

    def run_server(self, app: ServerApp, context: Context | None = None) -> Context:
        return syftbox_flwr_server(
            app,
            context or empty_context(),
            self.datasites,
            "test",
            transport=self.transport("server@test.org"),
            plugin_manager=self.manager,
        )

    def join_clients(self) -> None:
        for thread in self.threads:
            thread.join(JOIN_TIMEOUT)
            assert not thread.is_alive(), f"{thread.name} did not stop"


@pytest.fixture
def plugin_manager():
    return create_plugin_manager()


@pytest.fixture
def federation(plugin_manager) -> Iterator[Federation]:
    fed = Federation(
        network=f"test-{uuid.uuid4().hex}",
        datasites=[f"ds{i}@test.org" for i in range(3)],
        manager=plugin_manager,
    )
    yield fed
    for transport in fed.transports:
        transport.close()
