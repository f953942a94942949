"""The syftbox transport passes the core's conformance kit."""

from syft_flwr.testing.transport_suite import TransportSuite


class TestSyftBoxTransport(TransportSuite):
    transport_name = "syftbox"
    transport_options = {"max_body_size": 256 * 1024}  # so the size-limit tests run
