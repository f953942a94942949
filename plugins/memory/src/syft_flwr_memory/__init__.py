"""syft-flwr-memory: an in-process transport for syft-flwr (``transport = "memory"``).

Servers and clients in one Python process exchange requests through a named
:class:`MemoryNetwork`, with notifications instead of polling and optional fault injection.
"""

from __future__ import annotations

from syft_flwr_memory.faults import FaultPlan
from syft_flwr_memory.network import MemoryNetwork
from syft_flwr_memory.transport import MemoryTransport

__all__ = ["FaultPlan", "MemoryNetwork", "MemoryTransport"]
