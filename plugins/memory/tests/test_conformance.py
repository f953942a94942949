"""The memory transport passes the conformance kit."""

from syft_flwr.testing.transport_suite import TransportSuite


class TestMemoryTransport(TransportSuite):
    transport_name = "memory"
    transport_options = {"max_body_size": 256 * 1024}  # so the size-limit tests run
    supports_restart = True  # mailboxes and futures outlive instances within a process
