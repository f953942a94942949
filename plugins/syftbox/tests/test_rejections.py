"""Requests a sync client refused to upload are offered again until they expire.

SyftBox 0.4.x renames a file its server refused (no permission yet) to ``<id>.syftrejected
.request`` and never offers it again. These tests rename files exactly as its sync client does
(``Path.with_suffix(".syftrejected" + suffix)``, the code in ``sync_action.py``) and check that
the sender puts them back, parts first, after the documented wait, backs off when refused
again, stops once the request expired, and cleans the twins up with the exchange.
"""

from __future__ import annotations

import itertools
import logging
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from syft_flwr.transport import ReplyStatus, Request
from syft_flwr_syftbox.layout import FileKind, Layout
from syft_flwr_syftbox.rejections import (
    MAX_RETRY_DELAY,
    refused_original,
    rejected_twins,
    retry_delay,
)

APP, EP = "flwr/demo", "messages"
SERVER, ALICE = "server@sync-a.org", "alice@sync-a.org"
SYNC = 0.1
"""The sync interval these tests declare: a refused request is offered again after 0.5 s."""


MARKS = {
    "syftbox 0.4": lambda path: path.with_suffix(".syftrejected" + path.suffix),
    "go syftbox": lambda path: path.with_suffix(".rejected" + path.suffix),
}
"""How sync clients rename a refused file: SyftBox 0.4.x's ``format_rejected_path``, the Go
SyftBox's ``SetMarker`` (``asMarkedPath``)."""


def rotated(path: Path) -> Path:
    """The Go SyftBox's name for an older twin when the same file is refused again
    (``asRotatedPath``)."""
    return path.with_suffix(".rejected.20261201235959" + path.suffix)


def refuse(folder: Path, mark: str = "syftbox 0.4") -> list[Path]:
    """Do what a sync client does to files its server refused; return the original names."""
    refused = sorted(p for p in folder.iterdir() if p.name.endswith((".request", ".part")))
    for path in refused:
        path.rename(MARKS[mark](path))
    return refused


def sender_dir(data_dir: Path) -> Path:
    return Layout(data_dir / "datasites").sender_dir(ALICE, APP, EP, SERVER)


@pytest.mark.parametrize("mark", MARKS)
@pytest.mark.parametrize("name", ["x.request", "x.request.3.part", "x.response"])
def test_twins_are_recognised_as_sync_clients_name_them(mark: str, name: str) -> None:
    original = Path("a") / name
    twin = MARKS[mark](original)
    assert twin in rejected_twins(original)
    assert refused_original(twin) == original
    assert refused_original(rotated(original)) == original


@pytest.mark.parametrize("name", ["x.request", "x.request.3.part", "rejected.request", "x"])
def test_other_names_are_not_twins(name: str) -> None:
    assert refused_original(Path(name)) is None


@pytest.mark.parametrize("interval", [0.0, 0.1, 1.0, 5.0, 60.0])
def test_the_wait_doubles_from_two_sync_cycles_and_is_capped(interval: float) -> None:
    delays = [retry_delay(interval, refusals) for refusals in range(1, 12)]
    assert delays[0] == max(2 * interval, 0.5)
    assert delays == sorted(delays)
    assert all(later <= 2 * earlier for earlier, later in itertools.pairwise(delays))
    assert delays[-1] == max(MAX_RETRY_DELAY, delays[0])


@pytest.mark.parametrize("mark", MARKS)
@pytest.mark.parametrize("size", [100, 300_000], ids=["one file", "in parts"])
def test_a_refused_request_is_offered_again_and_answered(
    make,
    serving,
    wait_reply,
    later: Callable[..., float],
    data_dir: Path,
    caplog: pytest.LogCaptureFixture,
    size: int,
    mark: str,
    eventually: Callable[..., None],
) -> None:
    server = make(SERVER, poll_interval=0.05, sync_interval=SYNC, part_size=64 * 1024)
    body = bytes(range(256)) * (size // 256 + 1)
    with caplog.at_level(logging.WARNING, "syft_flwr_syftbox.rejections"):
        future = server.send(ALICE, APP, EP, body, later())
        names = refuse(sender_dir(data_dir), mark)
        older = rotated(next(name for name in names if name.suffix == ".request"))
        older.write_bytes(b"an older refused copy: debris once the request is put back")
        assert len(names) == (1 if size < 64 * 1024 else 1 + -(-len(body) // (64 * 1024)))
        refused_at = time.monotonic()
        deadline = refused_at + 10
        while not all(name.exists() for name in names):
            assert time.monotonic() < deadline, "the refused request was never put back"
            time.sleep(0.01)
    assert time.monotonic() - refused_at >= retry_delay(SYNC, 1) - 0.05
    assert not [p for p in sender_dir(data_dir).iterdir() if refused_original(p)]
    assert [r.getMessage() for r in caplog.records if "refused to upload" in r.getMessage()]

    alice = make(ALICE, poll_interval=0.05)
    alice.serve(APP, EP, lambda request: request.body[::-1])
    with serving(alice):
        reply = wait_reply(server, future)
    assert reply.status is ReplyStatus.OK and reply.body == body[::-1]
    server.forget(future)
    folder = sender_dir(data_dir)
    eventually(lambda: not list(folder.iterdir()), "its files and (in the background) its parts")


def test_a_request_refused_again_waits_longer_and_is_warned_of_once(
    make,
    later: Callable[..., float],
    data_dir: Path,
    caplog: pytest.LogCaptureFixture,
) -> None:
    server = make(SERVER, poll_interval=0.02, sync_interval=SYNC)
    folder = sender_dir(data_dir)
    with caplog.at_level(logging.WARNING, "syft_flwr_syftbox.rejections"):
        server.send(ALICE, APP, EP, b"x", later())
        waits = []
        for _ in range(3):
            (request,) = refuse(folder)
            start = time.monotonic()
            while not request.exists():
                assert time.monotonic() - start < 10, "the refused request was never put back"
                time.sleep(0.005)
            waits.append(time.monotonic() - start)
    expected = [retry_delay(SYNC, n) for n in (1, 2, 3)]
    assert all(w >= e - 0.05 for w, e in zip(waits, expected, strict=True)), (waits, expected)
    warnings = [r for r in caplog.records if "refused to upload" in r.getMessage()]
    assert len(warnings) == 1


def test_an_expired_request_is_not_offered_again_and_its_twin_goes_with_it(
    make,
    wait_reply,
    data_dir: Path,
    eventually: Callable[..., None],
) -> None:
    server = make(SERVER, poll_interval=0.02, sync_interval=SYNC)
    future = server.send(ALICE, APP, EP, b"x", time.time() + 0.2)
    (request,) = refuse(sender_dir(data_dir))
    assert wait_reply(server, future).status is ReplyStatus.EXPIRED
    time.sleep(retry_delay(SYNC, 1) + 0.2)
    assert not request.exists()
    server.forget(future)
    folder = sender_dir(data_dir)
    eventually(lambda: not list(folder.iterdir()), "its files and (in the background) its parts")


def test_a_forgotten_stop_signal_is_offered_again(
    make,
    serving,
    later: Callable[..., float],
    data_dir: Path,
) -> None:
    """A stop signal is forgotten right after it is sent; it must still arrive."""
    server = make(SERVER, poll_interval=0.02, sync_interval=SYNC)
    future = server.send(ALICE, APP, EP, b"stop", later())
    server.forget(future)
    refuse(sender_dir(data_dir))
    seen: list[Request] = []

    def handle(request: Request) -> bytes:
        seen.append(request)
        return b""

    alice = make(ALICE, poll_interval=0.02)
    alice.serve(APP, EP, handle)
    with serving(alice):
        deadline = time.monotonic() + 10
        while not seen:
            assert time.monotonic() < deadline, "the refused stop signal never arrived"
            time.sleep(0.01)
    assert seen[0].body == b"stop"


def test_a_twin_that_is_not_a_file_is_left_alone(
    make,
    later: Callable[..., float],
    data_dir: Path,
) -> None:
    server = make(SERVER, poll_interval=0.02, sync_interval=SYNC)
    server.send(ALICE, APP, EP, b"x", later())
    (request,) = sorted(sender_dir(data_dir).glob(f"*{FileKind.REQUEST.value}"))
    request.unlink()
    twin = rejected_twins(request)[0]
    twin.mkdir()
    time.sleep(retry_delay(SYNC, 1) + 0.3)
    assert twin.is_dir() and not request.exists()
