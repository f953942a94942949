"""A server and datasites answering aux requests over a private memory network (test helper).

Shared by the resource and job tests, which both drive the built-in aux topics end to end.
"""

from __future__ import annotations

import threading
from collections.abc import Sequence

from syft_flwr.client.services import ClientServices
from syft_flwr.grid.syft_grid import SyftGrid
from syft_flwr.services.auxiliary import AUX_ENDPOINT, AuxHandlerRegistry, AuxSender, serve_aux
from syft_flwr.services.resources import ReservationBook, ResourceOffer
from syft_flwr.transport import TransportSettings
from syft_flwr_memory.network import MemoryNetwork
from syft_flwr_memory.transport import MemoryTransport

WAIT = 20.0


class AuxNetwork:
    """Datasites serving aux on ``app``, and senders acting as ``server`` in run ``run_id``."""

    def __init__(
        self,
        app: str,
        server: str,
        datasites: Sequence[str],
        offer: ResourceOffer,
        run_id: int,
    ) -> None:
        self.app = app
        self.server = server
        self.datasites = list(datasites)
        self.offer = offer
        self.run_id = run_id
        self.network = MemoryNetwork()
        self.transports: list[MemoryTransport] = []
        self.threads: list[threading.Thread] = []
        self.books: dict[str, ReservationBook] = {}
        self.services: dict[str, ClientServices] = {}

    def transport(self, email: str) -> MemoryTransport:
        transport = MemoryTransport(TransportSettings(email), network=self.network)
        self.transports.append(transport)
        return transport

    def datasite(
        self, email: str, offer: ResourceOffer | None = None, builtins: bool = True
    ) -> None:
        """Serve aux at ``email``, answering the built-in topics unless ``builtins`` is off."""
        transport = self.transport(email)
        registry = AuxHandlerRegistry()
        book = self.books[email] = ReservationBook(offer or self.offer)
        if builtins:
            services = self.services[email] = ClientServices(email, book)
            services.register(registry)
        serve_aux(transport, self.app, registry, senders=[self.server])
        thread = threading.Thread(target=transport.run, daemon=True)
        thread.start()
        self.threads.append(thread)

    def sender(self, datasites: Sequence[str] | None = None) -> AuxSender:
        """A sender to ``datasites`` (all of the network's by default)."""
        grid = SyftGrid(
            self.app,
            list(self.datasites if datasites is None else datasites),
            self.transport(self.server),
            endpoint=AUX_ENDPOINT,
            reports_rounds=False,
        )
        grid.set_run(self.run_id)
        return AuxSender(grid)

    def close(self) -> None:
        for transport in self.transports:
            transport.stop()
        for thread in self.threads:
            thread.join(WAIT)
        for transport in self.transports:
            transport.close()
        self.network.close()
