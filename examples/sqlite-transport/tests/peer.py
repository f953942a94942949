"""Another process on the same database, for the cross-process tests (run as a script).

    peer.py --database DB send --sender S --to R [--body B] [--count N] [--ttl SECONDS]
        queue N requests, print their future ids, exit (without waiting for replies)
    peer.py --database DB collect --sender S FUTURE...
        wait for each future's reply, print "<future> <status> <body>"
    peer.py --database DB serve --identity I --label L
        answer "<L>|<body>" and print "handled <request id>" per request, until a request
        with body "stop" arrives (answered "stopped")

Every command gives up after ``--timeout`` seconds with exit status 3.
"""

from __future__ import annotations

import argparse
import sys
import threading
import time

from syft_flwr.transport import Request, TransportSettings

from syft_flwr_sqlite import SqliteTransport

APP, ENDPOINT = "flwr/test", "messages"
GAVE_UP = 3


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--database", required=True)
    parser.add_argument("--timeout", type=float, default=20.0)
    commands = parser.add_subparsers(dest="command", required=True)
    send = commands.add_parser("send")
    send.add_argument("--sender", required=True)
    send.add_argument("--to", required=True)
    send.add_argument("--body", default="hello")
    send.add_argument("--count", type=int, default=1)
    send.add_argument("--ttl", type=float, default=60.0)
    collect = commands.add_parser("collect")
    collect.add_argument("--sender", required=True)
    collect.add_argument("futures", nargs="+")
    serve = commands.add_parser("serve")
    serve.add_argument("--identity", required=True)
    serve.add_argument("--label", required=True)
    args = parser.parse_args()

    def transport(identity: str) -> SqliteTransport:
        options = {"database": args.database}
        return SqliteTransport(TransportSettings(identity, options, poll_interval=0.02))

    deadline = time.monotonic() + args.timeout
    if args.command == "send":
        with transport(args.sender) as sender:
            for _ in range(args.count):
                expires_at = time.time() + args.ttl
                print(sender.send(args.to, APP, ENDPOINT, args.body.encode(), expires_at))
        return 0
    if args.command == "collect":
        with transport(args.sender) as sender:
            for future in args.futures:
                while (reply := sender.poll(future)) is None:
                    if time.monotonic() > deadline:
                        return GAVE_UP
                    sender.wait_ready([future], deadline - time.monotonic())
                print(future, reply.status.value, reply.body.decode())
        return 0
    with transport(args.identity) as server:
        label = args.label

        def handle(request: Request) -> bytes:
            if request.body == b"stop":
                server.stop()
                return b"stopped"
            print("handled", request.id, flush=True)
            return f"{label}|".encode() + request.body

        server.serve(APP, ENDPOINT, handle)
        timer = threading.Timer(args.timeout, server.stop)
        timer.start()
        server.run()
        timer.cancel()
        return 0 if time.monotonic() < deadline else GAVE_UP


if __name__ == "__main__":
    sys.exit(main())
