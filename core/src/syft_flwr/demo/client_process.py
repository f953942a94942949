"""One demo datasite as its own process: ``python -m syft_flwr.demo.client_process ...``.

The demo starts one of these per datasite for transports that work across processes, so
the run looks like the real thing: separate programs that share nothing but the medium.
This is an application entry point: it prints its outcome for the parent to read.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
from collections.abc import Sequence

from syft_flwr.demo.apps import make_client_app
from syft_flwr.fl_orchestrator import syftbox_flwr_client
from syft_flwr.plugins import get_transport_registry
from syft_flwr.testing.local import empty_context
from syft_flwr.transport import TransportSettings

STOPPED_PREFIX = "stopped: "


def main(argv: Sequence[str] | None = None) -> int:
    """Serve the demo ``ClientApp`` for one datasite until the stop signal; 0 if it came."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--transport", required=True)
    parser.add_argument("--options", required=True, help="transport options as JSON")
    parser.add_argument("--email", required=True)
    parser.add_argument("--index", type=int, required=True)
    parser.add_argument("--count", type=int, required=True)
    parser.add_argument("--app-name", required=True)
    parser.add_argument("--aggregator", required=True, help="the only server to serve")
    parser.add_argument("--poll-interval", type=float, default=1.0)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format=f"[{args.email}] %(levelname)s %(message)s")
    settings = TransportSettings(
        args.email, json.loads(args.options), poll_interval=args.poll_interval
    )
    transport = get_transport_registry().create(args.transport, settings)
    context = empty_context(**{"partition-id": args.index, "num-partitions": args.count})
    try:
        reason = syftbox_flwr_client(
            make_client_app(),
            context,
            args.app_name,
            transport=transport,
            trusted_aggregators=[args.aggregator],
        )
    finally:
        transport.close()
    print(f"{STOPPED_PREFIX}{reason}", flush=True)
    return 0 if reason is not None else 1


if __name__ == "__main__":
    sys.exit(main())
