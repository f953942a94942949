"""Run the demo federation on this machine: one server and N clients over one transport."""

from __future__ import annotations

import json
import subprocess
import sys
import tempfile
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import pluggy
from flwr.app import Context

from syft_flwr.config import RuntimeSettings
from syft_flwr.demo.apps import RoundReport, make_client_app, make_server_app
from syft_flwr.demo.client_process import STOPPED_PREFIX
from syft_flwr.errors import ConfigError, SyftFlwrError
from syft_flwr.fl_orchestrator import syftbox_flwr_client, syftbox_flwr_server
from syft_flwr.plugins import get_plugin_manager, get_transport_registry
from syft_flwr.testing.local import empty_context, local_options
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
    client_processes: bool = False

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
    processes: bool | None = None,
) -> DemoResult:
    """Train the demo model with ``num_datasites`` clients for ``num_rounds`` FedAvg rounds.

    :param processes: run each client as its own process (``None``: whenever the transport
        is not limited to one process).
    :raises UnknownTransportError: ``transport`` is not installed.
    :raises ConfigError: ``transport`` cannot run locally, or not across processes.
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
        options = local_options(transport, Path(workdir), manager, registry)
        poll_interval = RuntimeSettings.from_env().poll_interval

        def make(identity: str) -> Transport:
            settings = TransportSettings(identity, options, poll_interval=poll_interval)
            return registry.create(transport, settings)

        server_transport = make(AGGREGATOR)
        in_process_only = server_transport.capabilities.in_process_only
        if processes and in_process_only:
            server_transport.close()
            raise ConfigError(f"transport {transport!r} works within one process only")
        use_processes = not in_process_only if processes is None else processes
        result.client_processes = use_processes
        datasites = demo_datasites(num_datasites)
        clients: list[_Client] = []
        try:
            for index, email in enumerate(datasites):
                if use_processes:
                    spec = _ClientSpec(
                        transport, options, email, index, num_datasites, poll_interval
                    )
                    clients.append(_ProcessClient(spec))
                else:
                    clients.append(_ThreadClient(make(email), index, num_datasites, manager))
            syftbox_flwr_server(
                make_server_app(num_datasites, num_rounds, record),
                empty_context(),
                datasites,
                APP_NAME,
                transport=server_transport,
                plugin_manager=manager,
            )
        finally:
            server_transport.close()
            for client in clients:
                client.finish(result, CLIENT_JOIN_TIMEOUT)
    if len(result.rounds) != num_rounds + 1:
        raise SyftFlwrError(
            f"the demo run ended after {max(len(result.rounds) - 1, 0)} of {num_rounds} rounds; "
            "see the log for the server's error"
        )
    return result


class _Client(Protocol):
    def finish(self, result: DemoResult, timeout: float) -> None:
        """Wait for the client to stop and record how it ended."""


class _ThreadClient:
    """A datasite served by a thread of this process."""

    def __init__(
        self, transport: Transport, index: int, count: int, manager: pluggy.PluginManager
    ) -> None:
        self.transport = transport
        self.outcome: str | None = None
        self.error: BaseException | None = None
        context = empty_context(**{"partition-id": index, "num-partitions": count})
        self.thread = threading.Thread(
            target=self._serve,
            args=(context, manager),
            name=f"client-{transport.identity}",
            daemon=True,
        )
        self.thread.start()

    def _serve(self, context: Context, manager: pluggy.PluginManager) -> None:
        try:
            self.outcome = syftbox_flwr_client(
                make_client_app(),
                context,
                APP_NAME,
                transport=self.transport,
                plugin_manager=manager,
                trusted_aggregators=[AGGREGATOR],
            )
        except BaseException as exc:  # reported through DemoResult, not lost with the thread
            self.error = exc

    def finish(self, result: DemoResult, timeout: float) -> None:
        self.thread.join(timeout)
        self.transport.close()
        identity = self.transport.identity
        if self.error is not None:
            result.client_errors[identity] = self.error
        elif self.thread.is_alive():
            result.client_errors[identity] = SyftFlwrError(f"did not stop within {timeout} s")
        else:
            result.stop_reasons[identity] = self.outcome


@dataclass(frozen=True)
class _ClientSpec:
    transport: str
    options: dict[str, Any]
    email: str
    index: int
    count: int
    poll_interval: float


class _ProcessClient:
    """A datasite served by its own process (``syft_flwr.demo.client_process``)."""

    def __init__(self, spec: _ClientSpec) -> None:
        self.email = spec.email
        command = [
            sys.executable,
            "-m",
            "syft_flwr.demo.client_process",
            "--transport",
            spec.transport,
            "--options",
            json.dumps(spec.options),
            "--email",
            spec.email,
            "--index",
            str(spec.index),
            "--count",
            str(spec.count),
            "--app-name",
            APP_NAME,
            "--aggregator",
            AGGREGATOR,
            "--poll-interval",
            str(spec.poll_interval),
        ]
        self.process = subprocess.Popen(command, stdout=subprocess.PIPE, text=True)

    def finish(self, result: DemoResult, timeout: float) -> None:
        try:
            output, _ = self.process.communicate(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.communicate()
            result.client_errors[self.email] = SyftFlwrError(f"did not stop within {timeout} s")
            return
        stopped = [line for line in output.splitlines() if line.startswith(STOPPED_PREFIX)]
        if self.process.returncode != 0 or not stopped:
            result.client_errors[self.email] = SyftFlwrError(
                f"client process exited with status {self.process.returncode}"
            )
            return
        result.stop_reasons[self.email] = stopped[-1][len(STOPPED_PREFIX) :]
