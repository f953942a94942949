"""The syftbox transport passes the core's conformance kit, hostile-file rules included."""

from pathlib import Path

import pytest

from syft_flwr.testing.hostile_files import HostileFileTests, RequestPath
from syft_flwr.testing.transport_suite import TransportSuite
from syft_flwr.transport import Transport
from syft_flwr_syftbox import SyftBoxTransport
from syft_flwr_syftbox.layout import FileKind, RpcLocation


class TestSyftBoxTransport(TransportSuite, HostileFileTests):
    transport_name = "syftbox"
    transport_options = {"max_body_size": 256 * 1024}  # so the size-limit tests run

    @pytest.fixture
    def request_path(self) -> RequestPath:
        def path(
            recipient: Transport, sender: str, app: str, endpoint: str, request_id: str
        ) -> Path:
            assert isinstance(recipient, SyftBoxTransport)
            location = RpcLocation(
                recipient.identity, app, endpoint, sender, request_id, FileKind.REQUEST
            )
            return recipient.layout.file(location)

        return path
