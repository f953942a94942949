"""syft-flwr-syftbox: the SyftBox transport for syft-flwr (``transport = "syftbox"``).

Requests and replies are files in a SyftBox datasites folder, laid out as SyftBox RPC lays
them out, written atomically, woken by filesystem events, with durable futures; written in a
native binary format or in syft-rpc's JSON for peers running syft-flwr 0.5.x.
"""

from __future__ import annotations

from syft_flwr_syftbox.options import SyftBoxOptions
from syft_flwr_syftbox.rpcfile import WireFormat
from syft_flwr_syftbox.transport import SyftBoxTransport

__all__ = ["SyftBoxOptions", "SyftBoxTransport", "WireFormat"]
