"""Round trip of a 1 KiB request: the syftbox transport against syft-rpc + syft-event.

Both stacks run on this machine over one temporary SyftBox folder, each at its default
settings: a client serves an endpoint that echoes the body, a sender sends 1 KiB requests one
after another and waits for each reply. The baseline is the real SyftBox Python stack
(``syft_rpc.rpc.send`` + ``future.wait()`` against a ``syft_event.SyftEvents`` handler), with
its in-place file writes patched to be atomic (temp file, fsync, link) so that it works
locally at all; its bodies are unique per request because syft-rpc's default request cache
otherwise answers a repeated body from the first request. Encryption is off on both sides.

Then the CPU time of an idle syftbox client (serving, nothing to do) over 10 s is measured.
Prints the median and p99 of both stacks; the headline (last line) is how many times lower
our median is. Target: at least 20x, with idle CPU near zero.

Needs the peer stack: ``pip install --no-deps -r plugins/syftbox/interop-requirements.txt``.

    python bench/rtt.py [--requests 200] [--baseline-requests 40] [--idle 10]
"""

import argparse
import os
import statistics
import tempfile
import threading
import time
from pathlib import Path

from figures import add_options, report

from syft_flwr.transport import Request, TransportSettings
from syft_flwr_syftbox import SyftBoxTransport
from syft_flwr_syftbox.atomic import write_atomic

APP, ENDPOINT = "flwr/rtt", "echo"
SENDER, CLIENT = "server@rtt-bench.org", "client@rtt-bench.org"
BODY_SIZE = 1024


def percentile(samples: list[float], fraction: float) -> float:
    ordered = sorted(samples)
    return ordered[min(len(ordered) - 1, round(fraction * (len(ordered) - 1)))]


def ours(data_dir: Path, count: int) -> list[float]:
    options = {"data_dir": str(data_dir)}
    sender = SyftBoxTransport(TransportSettings(SENDER, options))
    client = SyftBoxTransport(TransportSettings(CLIENT, options))

    def echo(request: Request) -> bytes:
        return request.body

    client.serve(APP, ENDPOINT, echo)
    thread = threading.Thread(target=client.run)
    thread.start()
    samples = []
    try:
        for _ in range(count):
            body = os.urandom(BODY_SIZE)
            started = time.perf_counter()
            future = sender.send(CLIENT, APP, ENDPOINT, body, time.time() + 60)
            while (reply := sender.poll(future)) is None:
                sender.wait_ready([future], 60)
            samples.append(time.perf_counter() - started)
            if reply.body != body:
                raise SystemExit(f"syftbox round trip failed: {reply.status} {reply.detail}")
            sender.forget(future)
    finally:
        client.stop()
        thread.join(30)
        sender.close()
        client.close()
    return samples


def patch_syft_rpc_atomic_writes() -> None:
    """syft-rpc writes request and response files in place; make its ``dump`` atomic."""
    from syft_rpc.protocol import Base

    def dump(self: Base, path: str | Path) -> None:
        target, data = Path(path), self.dumps().encode("utf-8")
        try:
            write_atomic(target, [data])
        except FileExistsError:
            write_atomic(target, [data], replace=True)

    Base.dump = dump  # type: ignore[method-assign]


def baseline(data_dir: Path, count: int) -> list[float]:
    try:
        from loguru import logger
        from syft_core import Client, SyftClientConfig
        from syft_event import SyftEvents
        from syft_event.types import Request as EventRequest
        from syft_rpc import rpc
    except ImportError as exc:
        raise SystemExit(
            f"the SyftBox stack is missing ({exc}): "
            "pip install --no-deps -r plugins/syftbox/interop-requirements.txt"
        ) from exc
    patch_syft_rpc_atomic_writes()
    logger.disable("syft_event")

    def client_for(email: str) -> Client:
        config = SyftClientConfig(
            email=email, data_dir=data_dir, path=data_dir.parent / f"{email}.json"
        )
        return Client(config)

    events = SyftEvents(app_name=APP, client=client_for(CLIENT))

    def echo(request: EventRequest) -> bytes:
        return bytes(request.body or b"")

    events.on_request(f"/{ENDPOINT}", auto_decrypt=False, encrypt_reply=False)(echo)
    events.start()
    sender = client_for(SENDER)
    url = rpc.make_url(CLIENT, app_name=APP, endpoint=ENDPOINT)
    samples = []
    try:
        for _ in range(count):
            body = os.urandom(BODY_SIZE)
            started = time.perf_counter()
            future = rpc.send(url=url, body=body, client=sender)
            response = future.wait()
            samples.append(time.perf_counter() - started)
            if response.body != body:
                raise SystemExit(f"syft-rpc round trip failed: {response.status_code}")
    finally:
        events.stop()
    return samples


def idle_cpu(data_dir: Path, seconds: float) -> float:
    """CPU seconds this process spends while one syftbox client serves and nothing arrives."""
    client = SyftBoxTransport(TransportSettings(CLIENT, {"data_dir": str(data_dir)}))
    client.serve(APP, ENDPOINT, lambda request: request.body)
    thread = threading.Thread(target=client.run)
    thread.start()
    try:
        time.sleep(1.0)  # let start-up work finish
        started = time.process_time()
        time.sleep(seconds)
        return time.process_time() - started
    finally:
        client.stop()
        thread.join(30)
        client.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=200)
    parser.add_argument("--baseline-requests", type=int, default=40)
    parser.add_argument("--idle", type=float, default=10.0)
    add_options(parser)
    args = parser.parse_args()
    if args.smoke:
        args.requests, args.baseline_requests, args.idle = 20, 5, 1.0
    with tempfile.TemporaryDirectory(prefix="syftbox-rtt-") as workdir:
        root = Path(workdir)
        for name in ("ours", "theirs"):
            (root / name / "SyftBox" / "datasites").mkdir(parents=True)
        theirs = baseline(root / "theirs" / "SyftBox", args.baseline_requests)
        mine = ours(root / "ours" / "SyftBox", args.requests)
        idle = idle_cpu(root / "ours" / "SyftBox", args.idle)
    base_median, our_median = statistics.median(theirs), statistics.median(mine)
    print(
        f"syft-rpc + syft-event (defaults, atomic writes patched in): median "
        f"{base_median * 1e3:.1f} ms, p99 {percentile(theirs, 0.99) * 1e3:.1f} ms "
        f"(n={len(theirs)}, baseline)"
    )
    print(
        f"syftbox transport (defaults): median {our_median * 1e3:.2f} ms, "
        f"p99 {percentile(mine, 0.99) * 1e3:.2f} ms (n={len(mine)})"
    )
    print(
        f"idle syftbox client over {args.idle:.0f} s: {idle * 1e3:.1f} ms CPU "
        f"({idle / args.idle * 100:.3f}% of one core)"
    )
    p99_ratio = percentile(theirs, 0.99) / percentile(mine, 0.99)
    print(f"p99 round trip vs syft-rpc + syft-event: {p99_ratio:.1f}x lower")
    report(
        args,
        "rtt",
        f"median round trip vs syft-rpc + syft-event: {base_median / our_median:.1f}x lower "
        "(target >= 20x)",
        ratio=base_median / our_median,
        ours=our_median * 1e3,
        baseline=base_median * 1e3,
        unit="ms",
        ours_label="syftbox transport, 1 KiB round trip (median)",
        baseline_label="syft-rpc + syft-event",
    )


if __name__ == "__main__":
    main()
