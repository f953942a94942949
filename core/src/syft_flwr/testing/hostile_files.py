"""Hostile files: the conformance kit's bar for transports whose medium is a synced folder.

On SyftBox-like media every user can write its own sender folder in every other datasite, and
sync clients copy whatever a peer put there. So the object at a request's path may be a symlink
(to a valid request elsewhere, to ``/etc/passwd``), a FIFO (an ``open`` that never returns), a
folder, or a 200 MiB sparse file; and the sender folder itself may be a symlink out of the
synced tree, through which a naive transport would write its reply. :class:`HostileFileTests`
places each of these where the transport under test looks, and checks that it neither follows,
blocks on, reads nor writes through it, and that a normal request is served afterwards.

Use it next to :class:`~syft_flwr.testing.transport_suite.TransportSuite` for transports that
keep requests as files on a local filesystem (the ``syftbox`` transport does); it does not
apply to object stores or networks. It needs one fixture from the implementation, fsspec-style:
``request_path`` (see :meth:`HostileFileTests.request_path`)::

    class TestPigeonTransport(TransportSuite, HostileFileTests):
        transport_name = "pigeon"

        @pytest.fixture
        def request_path(self) -> RequestPath:
            return lambda recipient, sender, app, endpoint, request_id: (
                recipient.inbox / app / endpoint / sender / f"{request_id}.request"
            )

Requires the ``test`` extra of ``syft-flwr-core`` (pytest).
"""

from __future__ import annotations

import os
import shutil
import tracemalloc
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import ClassVar

import pytest

from syft_flwr.testing.fixtures import APP, ENDPOINT, MakeTransport, TransportFixtures
from syft_flwr.transport import ReplyStatus, Request, RequestHandler, Transport

__all__ = ["HostileFileTests", "RequestPath"]

RequestPath = Callable[[Transport, str, str, str, str], Path]
"""``request_path(recipient, sender, app, endpoint, request_id) -> Path``: where ``recipient``
finds the request ``request_id`` from ``sender``; its parent is that sender's folder."""


def _recording(bodies: list[bytes]) -> RequestHandler:
    """Answers ``b"served"`` and records every body it was handed."""

    def handle(request: Request) -> bytes:
        bodies.append(bytes(request.body))
        return b"served"

    return handle


class HostileFileTests(TransportFixtures):
    """Objects a peer can place in a synced folder never crash, block or redirect serving.

    :cvar hostile_file_size: size of the sparse file the size test plants; at least four
        times the transport's ``max_body_size`` is used, so it is always oversized.
    :cvar max_traced_peak: the most Python memory (``tracemalloc`` peak, all threads) the
        transport may allocate while it refuses that file.
    """

    hostile_file_size: ClassVar[int] = 200 * 2**20
    max_traced_peak: ClassVar[int] = 10 * 2**20

    @pytest.fixture
    def request_path(self) -> RequestPath:
        """Where a request file lives; **required**.

        Return ``path(recipient, sender, app, endpoint, request_id) -> pathlib.Path``: the
        file in which ``recipient`` (a transport built by ``make_transport``) would find the
        request ``request_id`` that ``sender`` (an email) sent to ``endpoint`` of ``app``. Its
        parent must be the folder only that sender writes. ``request_id`` is either what
        ``send()`` returned or a fresh ``str(uuid.uuid4())`` for a file the test plants.
        """
        raise NotImplementedError(
            f"{type(self).__name__}: implement the `request_path` fixture, returning "
            "`path(recipient, sender, app, endpoint, request_id) -> pathlib.Path`, the file "
            "where `recipient` would find that sender's request (its parent is the sender's "
            "folder)"
        )

    # -- helpers ----------------------------------------------------------------------

    def _pair(self, make_transport: MakeTransport) -> tuple[Transport, Transport]:
        return make_transport(self.identity("sender")), make_transport(self.identity("client"))

    def _still_serves(self, sender: Transport, client: Transport, what: str) -> None:
        future = sender.send(client.identity, APP, ENDPOINT, b"normal", self.later())
        reply = self.wait_reply(sender, future)
        assert (reply.status, bytes(reply.body)) == (ReplyStatus.OK, b"served"), (
            f"run(): after {what}, a normal request must still be served"
        )

    def _parked_request(
        self, sender: Transport, client: Transport, request_path: RequestPath, body: bytes
    ) -> Path:
        """A real request from ``sender``, sent before ``client`` serves; its path."""
        future = sender.send(client.identity, APP, ENDPOINT, body, self.later())
        path = request_path(client, sender.identity, APP, ENDPOINT, future)
        assert path.is_file(), f"request_path(): no request file at {path} after send()"
        return path

    # -- the rules --------------------------------------------------------------------

    def test_a_symlinked_request_file_is_not_followed(
        self, make_transport: MakeTransport, request_path: RequestPath, tmp_path: Path
    ) -> None:
        sender, client = self._pair(make_transport)
        parked = self._parked_request(sender, client, request_path, b"through a symlink")
        outside = tmp_path / "outside"
        outside.mkdir()
        target = outside / "passwd"  # a valid request now: following the link delivers it
        shutil.move(parked, target)
        os.symlink(target, parked)
        bodies: list[bytes] = []
        client.serve(APP, ENDPOINT, _recording(bodies))
        with self.serving(client) as thread:
            self._still_serves(sender, client, "a symlinked request file")
            assert thread.is_alive(), "run() ended on a symlinked request file"
        assert b"through a symlink" not in bodies, (
            "serve()/run(): a request file that is a symlink must not be followed"
        )

    def test_a_fifo_named_like_a_request_does_not_block(
        self, make_transport: MakeTransport, request_path: RequestPath
    ) -> None:
        sender, client = self._pair(make_transport)
        path = request_path(client, self.identity("peer"), APP, ENDPOINT, str(uuid.uuid4()))
        path.parent.mkdir(parents=True, exist_ok=True)
        os.mkfifo(path)
        client.serve(APP, ENDPOINT, _recording([]))
        with self.serving(client) as thread:
            self._still_serves(sender, client, "a FIFO named like a request (never opened)")
            assert thread.is_alive(), "run() ended on a FIFO named like a request"

    def test_a_folder_named_like_a_request_is_skipped(
        self, make_transport: MakeTransport, request_path: RequestPath
    ) -> None:
        sender, client = self._pair(make_transport)
        path = request_path(client, self.identity("peer"), APP, ENDPOINT, str(uuid.uuid4()))
        path.mkdir(parents=True)
        (path / "inside").write_bytes(b"x")
        client.serve(APP, ENDPOINT, _recording([]))
        with self.serving(client) as thread:
            self._still_serves(sender, client, "a folder named like a request")
            assert thread.is_alive(), "run() ended on a folder named like a request"

    def test_an_oversized_sparse_request_is_refused_before_it_is_read(
        self, make_transport: MakeTransport, request_path: RequestPath
    ) -> None:
        sender, client = self._pair(make_transport)
        limit = client.capabilities.max_body_size
        if limit is None:
            pytest.skip("the transport declares no max_body_size")
        size = max(self.hostile_file_size, 4 * limit)
        path = request_path(client, sender.identity, APP, ENDPOINT, str(uuid.uuid4()))
        path.parent.mkdir(parents=True, exist_ok=True)
        with open(path, "wb") as handle:
            handle.truncate(size)  # sparse: nothing on disk, all of it for a reader
        bodies: list[bytes] = []
        client.serve(APP, ENDPOINT, _recording(bodies))
        tracemalloc.start()
        try:
            with self.serving(client) as thread:
                self._still_serves(sender, client, f"a sparse request file of {size} bytes")
                assert thread.is_alive(), "run() ended on an oversized request file"
                _, peak = tracemalloc.get_traced_memory()
        finally:
            tracemalloc.stop()
        assert bodies == [b"normal"], "serve(): an oversized request file reached the handler"
        assert peak < self.max_traced_peak, (
            f"serve()/run(): a {size}-byte request file over max_body_size={limit} must be "
            f"refused by its size before it is read, but serving it allocated {peak} bytes"
        )

    def test_no_reply_is_written_through_a_symlinked_sender_folder(
        self, make_transport: MakeTransport, request_path: RequestPath, tmp_path: Path
    ) -> None:
        sender, client = self._pair(make_transport)
        parked = self._parked_request(sender, client, request_path, b"through a folder")
        outside = tmp_path / "outside"
        shutil.move(parked.parent, outside)  # the sender's folder now lives outside...
        os.symlink(outside, parked.parent)  # ...and a symlink takes its place
        before = sorted(os.listdir(outside))
        other = make_transport(self.identity("other"))
        bodies: list[bytes] = []
        client.serve(APP, ENDPOINT, _recording(bodies))
        with self.serving(client) as thread:
            self._still_serves(other, client, "a symlinked sender folder")
            assert thread.is_alive(), "run() ended on a symlinked sender folder"
        assert sorted(os.listdir(outside)) == before, (
            "serve()/run(): a reply must never be written through a symlinked sender folder"
        )
        assert b"through a folder" not in bodies, (
            "serve()/run(): a request must never be read through a symlinked sender folder"
        )
