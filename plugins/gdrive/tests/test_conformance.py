"""The gdrive transport passes the core's conformance kit, against the fake Drive that the
``GDriveTransport.local_options`` start (each participant its own account)."""

from __future__ import annotations

import pytest

from syft_flwr.testing.transport_suite import TransportSuite

pytestmark = pytest.mark.slow


class TestGDriveTransport(TransportSuite):
    transport_name = "gdrive"
    transport_options = {
        "max_body_size": 256 * 1024,  # so the size-limit tests run
        "retry_base_delay": 0.005,
        "retry_max_delay": 0.1,
        "poll_interval": 0.02,  # the fake has no quota to protect: keep the suite quick
        "max_poll_interval": 0.1,
    }
