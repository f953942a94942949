"""The sqlite transport passes the syft-flwr conformance kit."""

from syft_flwr.testing.transport_suite import TransportSuite


class TestSqliteTransport(TransportSuite):
    transport_name = "sqlite"
    transport_options = {"max_body_size": 256 * 1024}  # so the size-limit tests run
