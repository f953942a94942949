"""Run the demo federation on this machine: one server and N clients over one transport."""

from __future__ import annotations

import tempfile
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import pluggy
from flwr.app import Context, RecordDict

from syft_flwr.config import RuntimeSettings
from syft_flwr.demo.apps import RoundReport, make_client_app, make_server_app
from syft_flwr.errors import ConfigError, SyftFlwrError
from syft_flwr.fl_orchestrator import syftbox_flwr_client, syftbox_flwr_server
from syft_flwr.plugins import get_plugin_manager, get_transport_registry
from syft_flwr.transport import Transport, TransportSettings

__all__ = ["DemoResult", "demo_datasites", "run_local"]

APP_NAME = "demo"
AGGREGATOR = "aggregator@demo.syft-flwr.local"
CLIENT_JOIN_TIMEOUT = 30.0


def demo_datasites(count: int) -> list[str]:
    """The demo's datasite emails."""
    return [f"datasite-{i + 1}@demo.syft-flwr.local" for i in range(count)]


@dataclass
class DemoResult:
    """What a local run produced."""

    rounds: list[RoundReport] = field(default_factory=list)
    stop_reasons: dict[str, str | None] = field(default_factory=dict)
    client_errors: dict[str, BaseException] = field(default_factory=dict)

    @property
    def initial(self) -> RoundReport:
        """The untrained model's report (round 0)."""
        return self.rounds[0]

    @property
    def final(self) -> RoundReport:
        """The last round's report."""
        return self.rounds[-1]


def run_local(
    transport: str = "memory",
    num_datasites: int = 3,
    num_rounds: int = 5,
    on_round: Callable[[RoundReport], None] | None = None,
    plugin_manager: pluggy.PluginManager | None = None,
) -> DemoResult:
    """Train the demo model with ``num_datasites`` clients for ``num_rounds`` FedAvg rounds.

    :raises UnknownTransportError: ``transport`` is not installed.
    :raises ConfigError: ``transport`` cannot run locally.
    """
    manager = plugin_manager or get_plugin_manager()
    registry = get_transport_registry(manager)
    registry.get(transport)
    result = DemoResult()

    def record(report: RoundReport) -> None:
        result.rounds.append(report)
        if on_round is not None:
            on_round(report)

    with tempfile.TemporaryDirectory(prefix="syft-flwr-demo-") as workdir:
        options = manager.hook.syft_flwr_local_options(transport=transport, workdir=Path(workdir))
        if options is None:
            raise ConfigError(
                f"transport {transport!r} cannot run the local demo: its plugin does not "
                "implement the syft_flwr_local_options hook"
            )
        poll_interval = RuntimeSettings.from_env().poll_interval

        def make(identity: str) -> Transport:
            settings = TransportSettings(identity, options, poll_interval=poll_interval)
            return registry.create(transport, settings)

        datasites = demo_datasites(num_datasites)
        clients = [
            _start_client(make(email), index, num_datasites, manager, result)
            for index, email in enumerate(datasites)
        ]
        server_transport = make(AGGREGATOR)
        try:
            syftbox_flwr_server(
                make_server_app(num_datasites, num_rounds, record),
                Context(run_id=0, node_id=0, node_config={}, state=RecordDict(), run_config={}),
                datasites,
                APP_NAME,
                transport=server_transport,
                plugin_manager=manager,
            )
        finally:
            server_transport.close()
            for thread, client_transport in clients:
                thread.join(CLIENT_JOIN_TIMEOUT)
                client_transport.close()
    if len(result.rounds) != num_rounds + 1:
        raise SyftFlwrError(
            f"the demo run ended after {max(len(result.rounds) - 1, 0)} of {num_rounds} rounds; "
            "see the log for the server's error"
        )
    return result


def _start_client(
    transport: Transport,
    index: int,
    count: int,
    manager: pluggy.PluginManager,
    result: DemoResult,
) -> tuple[threading.Thread, Transport]:
    context = Context(
        run_id=0,
        node_id=0,
        node_config={"partition-id": index, "num-partitions": count},
        state=RecordDict(),
        run_config={},
    )

    def serve() -> None:
        try:
            reason = syftbox_flwr_client(
                make_client_app(), context, APP_NAME, transport=transport, plugin_manager=manager
            )
            result.stop_reasons[transport.identity] = reason
        except BaseException as exc:  # reported to the caller, not lost with the thread
            result.client_errors[transport.identity] = exc

    thread = threading.Thread(target=serve, name=f"client-{transport.identity}", daemon=True)
    thread.start()
    return thread, transport
