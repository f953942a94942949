"""Benchmark: the syft-flwr wire codec against Flower's own protobuf serde.

Usage::

    python bench/serde.py [--mib N] [--repeat K]

Builds one Flower ``Message`` whose content is an N MiB float32 ``ArrayRecord`` plus a small
``ConfigRecord`` and ``MetricRecord``, then, in the same process, times a full encode + decode
(best of K, ``time.perf_counter``, garbage collector paused while timing) through

- Flower: ``message_to_proto(m).SerializeToString()`` then
  ``message_from_proto(ProtoMessage.FromString(data))``;
- syft-flwr: ``encode_message(m)`` (one contiguous buffer) then ``decode_message(data)``.

Every round trip is checked against the original (metadata, record order, value types, array
bytes) before anything is reported. Peak memory of each path is measured in a fresh
subprocess (see :func:`measure_peak`). The last line is the headline ratio.
"""

from __future__ import annotations

import argparse
import gc
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
from figures import add_options, report
from flwr.app import Array, ArrayRecord, ConfigRecord, Message, MetricRecord, RecordDict
from flwr.common.serde import message_from_proto, message_to_proto
from flwr.proto.message_pb2 import Message as ProtoMessage  # pylint: disable=E0611
from flwr.supercore.task_identity import TaskIdentity

from syft_flwr.wire import decode_message, encode_message

MIB = 2**20
Phases = tuple[Callable[[Message], Any], Callable[[Any], Message]]

PATHS: dict[str, Phases] = {
    "flwr protobuf": (
        lambda message: message_to_proto(message).SerializeToString(),
        lambda data: message_from_proto(ProtoMessage.FromString(data)),
    ),
    "syft-flwr wire": (encode_message, decode_message),
}


def build_message(mib: int) -> Message:
    """The benchmark message: N MiB of float32 weights, a config and some metrics."""
    TaskIdentity.run_id = 42
    TaskIdentity.node_id = 1
    TaskIdentity.task_id = 7
    weights = np.random.default_rng(0).random(mib * MIB // 4, dtype=np.float32)
    content = RecordDict(
        {
            "arrays": ArrayRecord({"weights": Array(weights)}),
            "config": ConfigRecord({"lr": 0.01, "local-epochs": 1, "server-round": 3}),
            "metrics": MetricRecord({"loss": 0.25, "num-examples": 60_000}),
        }
    )
    return Message(content, dst_node_id=1234, message_type="train", group_id="3")


def array_bytes(message: Message) -> int:
    return sum(
        len(array.data)
        for record in message.content.array_records.values()
        for array in record.values()
    )


def check_equal(original: Message, decoded: Message, path: str) -> None:
    """Fail loudly unless ``decoded`` carries exactly what ``original`` does."""
    problems = []
    if decoded.metadata != original.metadata:
        problems.append(f"metadata {decoded.metadata} != {original.metadata}")
    kinds = [(name, type(record)) for name, record in original.content.items()]
    if [(name, type(record)) for name, record in decoded.content.items()] != kinds:
        raise SystemExit(f"{path} round trip is wrong: record names, order or kinds differ")
    for name, record in original.content.items():
        other = decoded.content[name]
        if list(other.keys()) != list(record.keys()):
            problems.append(f"keys of record {name!r} differ")
            continue
        for key, value in record.items():
            got = other[key]
            if isinstance(value, Array) and isinstance(got, Array):
                fields = (value.dtype, tuple(value.shape), value.stype, value.data)
                if (got.dtype, tuple(got.shape), got.stype, got.data) != fields:
                    problems.append(f"array {name}/{key} differs")
            elif type(got) is not type(value) or got != value:
                problems.append(f"value {name}/{key}: {got!r} != {value!r}")
    if problems:
        raise SystemExit(f"{path} round trip is wrong: " + "; ".join(problems))


def time_once(message: Message, phases: Phases) -> tuple[float, float, Message]:
    """One timed encode + decode (garbage collector paused): seconds of each, and the result."""
    encode, decode = phases
    gc.collect()
    gc.disable()
    try:
        start = time.perf_counter()
        data = encode(message)
        middle = time.perf_counter()
        decoded = decode(data)
        end = time.perf_counter()
    finally:
        gc.enable()
    return middle - start, end - middle, decoded


def time_paths(message: Message, repeat: int) -> dict[str, tuple[float, float]]:
    """Best (encode, decode) seconds per path, by their sum; every result is verified.

    The paths take turns, so a noisy neighbour on the machine slows both alike.
    """
    best = {path: (float("inf"), float("inf")) for path in PATHS}
    for _ in range(repeat):
        for path, phases in PATHS.items():
            encode_s, decode_s, decoded = time_once(message, phases)
            check_equal(message, decoded, path)
            del decoded
            if encode_s + decode_s < sum(best[path]):
                best[path] = (encode_s, decode_s)
    return best


def _proc_status_kib(field: str) -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    raise RuntimeError(f"{field} missing from /proc/self/status")


def peak_in_this_process(path: str, mib: int) -> int:
    """Run one encode + decode; print how far resident memory rose above the built message.

    Why this way: Flower's protobuf path allocates inside the upb C library, which tracemalloc
    cannot see, so tracemalloc would flatter Flower. The kernel's resident-set high-water mark
    (VmHWM) sees every allocation. Building the message itself has transient peaks (numpy's
    ``np.save`` buffer), so the mark is reset just before the measured work by writing ``5`` to
    ``/proc/self/clear_refs`` (Linux >= 4.0), and the result is VmHWM minus the resident size
    at that moment: the extra memory the path needed at its worst, results included.
    """
    message = build_message(mib)
    encode, decode = PATHS[path]
    gc.collect()
    Path("/proc/self/clear_refs").write_text("5")
    baseline = _proc_status_kib("VmRSS")
    decoded = decode(encode(message))
    peak = _proc_status_kib("VmHWM")
    check_equal(message, decoded, path)
    return (peak - baseline) * 1024


def measure_peak(path: str, mib: int) -> str:
    """Peak extra memory of ``path`` measured in a fresh subprocess, or why it could not be."""
    if not Path("/proc/self/clear_refs").exists():
        return "n/a (needs Linux /proc to reset the peak RSS)"
    result = subprocess.run(
        [sys.executable, __file__, "--mib", str(mib), "--peak-of", path],
        capture_output=True,
        text=True,
        check=False,
    )
    if result.returncode != 0:
        return f"n/a (subprocess failed: {result.stderr.strip().splitlines()[-1:]})"
    return f"{int(result.stdout) / MIB:.1f} MiB"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--mib", type=int, default=100, help="array size in MiB (default 100)")
    parser.add_argument("--repeat", type=int, default=3, help="timed runs per path, best kept")
    parser.add_argument("--peak-of", choices=sorted(PATHS), help=argparse.SUPPRESS)
    add_options(parser)
    args = parser.parse_args()
    if args.smoke:
        args.mib, args.repeat = 4, 1
    if args.peak_of:
        print(peak_in_this_process(args.peak_of, args.mib))
        return

    message = build_message(args.mib)
    payload = array_bytes(message)
    print(
        f"message: {args.mib} MiB float32 ArrayRecord + ConfigRecord + MetricRecord "
        f"({payload} array bytes), best of {args.repeat}"
    )
    best = time_paths(message, args.repeat)
    for path, (encode_s, decode_s) in best.items():
        print(
            f"{path}: {encode_s + decode_s:.3f} s "
            f"(encode {encode_s:.3f} s + decode {decode_s:.3f} s), round trips verified"
        )
    print(f"envelope overhead: {len(encode_message(message)) - payload} bytes")
    for path in PATHS:
        print(f"peak memory above the message, {path}: {measure_peak(path, args.mib)}")
    speedup = sum(best["flwr protobuf"]) / sum(best["syft-flwr wire"])
    report(
        args,
        "serde",
        f"serde speedup vs flwr protobuf: {speedup:.1f}x",
        ratio=speedup,
        ours=sum(best["syft-flwr wire"]),
        baseline=sum(best["flwr protobuf"]),
        unit="s",
        ours_label=f"wire codec encode+decode, {args.mib} MiB",
        baseline_label="Flower's protobuf path",
    )


if __name__ == "__main__":
    main()
