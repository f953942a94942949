"""Unsafe addresses, oversized bodies and malformed options fail loudly and say why."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from syft_flwr.addresses import check_datasite
from syft_flwr.errors import BodyTooLargeError, ConfigError, InvalidAddressError
from syft_flwr.transport import ReplyStatus, TransportSettings
from syft_flwr_memory import MemoryTransport

APP, EP = "flwr/demo", "messages"

# A timer or run loop that dies in its thread must fail the test, not just warn.
pytestmark = pytest.mark.filterwarnings("error::pytest.PytestUnhandledThreadExceptionWarning")


@pytest.mark.parametrize(
    "datasite",
    [
        "",
        "bob",
        "../x",
        "a/b@c",
        "bob@x/../y",
        "bob@x..y",
        "bo b@x.org",
        "bob@x.org\n",
        "a\\b@x.org",
        "a@b@x.org",
        "@x.org",
        "bob@",
        "bob\x00@x.org",
        "b" * 250 + "@x.org",
    ],
)
def test_bad_datasite_is_rejected(make, datasite, later) -> None:
    alice = make("alice@x.org")
    with pytest.raises(InvalidAddressError, match="datasite"):
        alice.send(datasite, APP, EP, b"", later())


@pytest.mark.parametrize(
    "app",
    ["", "../x", "/flwr", "flwr/", "flwr//demo", "flwr/../etc", "flwr/.hidden", "a b", "a\\b"],
)
def test_bad_app_is_rejected(make, app, later) -> None:
    alice = make("alice@x.org")
    with pytest.raises(InvalidAddressError, match=r"app .*") as excinfo:
        alice.send("bob@x.org", app, EP, b"", later())
    assert repr(app) in str(excinfo.value)
    with pytest.raises(InvalidAddressError):
        alice.serve(app, EP, lambda request: b"")


@pytest.mark.parametrize("endpoint", ["", "..", "a/b", " x", "x\n", "x" * 200])
def test_bad_endpoint_is_rejected(make, endpoint, later) -> None:
    alice = make("alice@x.org")
    with pytest.raises(InvalidAddressError, match="endpoint"):
        alice.send("bob@x.org", APP, endpoint, b"", later())
    with pytest.raises(InvalidAddressError):
        alice.serve(APP, endpoint, lambda request: b"")


def test_bad_identity_is_rejected(network) -> None:
    with pytest.raises(InvalidAddressError, match=r"datasite '\.\./evil'"):
        MemoryTransport(TransportSettings(identity="../evil"), network=network)


@settings(deadline=None)  # a loaded CI machine must not turn slowness into failure
@given(
    prefix=st.text(max_size=20),
    trick=st.sampled_from(["/", "\\", "..", " ", "\t", "\n", "@"]),
    suffix=st.text(max_size=20),
)
def test_addresses_with_path_tricks_never_pass(prefix: str, trick: str, suffix: str) -> None:
    with pytest.raises(InvalidAddressError):
        check_datasite(f"{prefix}{trick}{suffix}@x.org")


def test_good_addresses_pass(make, serving, wait_reply, later) -> None:
    alice, bob = make("alice.smith+fl@uni-x.org"), make("b_o-b@x.org")
    bob.serve("flwr/my_app-2.0", "msg.v1", lambda request: b"ok")
    with serving(bob):
        future_id = alice.send("b_o-b@x.org", "flwr/my_app-2.0", "msg.v1", b"", later())
        assert wait_reply(alice, future_id).status is ReplyStatus.OK


def test_max_body_size_is_inclusive(make, later) -> None:
    alice = make("alice@x.org", max_body_size=10)
    assert alice.capabilities.max_body_size == 10
    alice.send("bob@x.org", APP, EP, b"x" * 10, later())
    with pytest.raises(BodyTooLargeError, match=r"11 bytes .* 10 bytes"):
        alice.send("bob@x.org", APP, EP, b"x" * 11, later())


def test_oversized_reply_is_rejected(make, serving, wait_reply, later) -> None:
    alice, bob = make("alice@x.org"), make("bob@x.org", max_body_size=4)
    bob.serve(APP, EP, lambda request: b"too long")
    with serving(bob):
        reply = wait_reply(alice, alice.send("bob@x.org", APP, EP, b"", later()))
    assert reply.status is ReplyStatus.REJECTED
    assert "8 bytes" in reply.detail


def test_capabilities(make) -> None:
    caps = make("alice@x.org").capabilities
    assert (caps.notifies, caps.max_body_size, caps.persistent, caps.encrypted) == (
        True,
        None,
        False,
        False,
    )


@pytest.mark.parametrize(
    "options",
    [
        {"max_body_size": -1},
        {"max_body_size": "1MB"},
        {"max_body_size": True},
        {"network": ""},
        {"network": 3},
        {"faults": [0.1]},
    ],
)
def test_bad_options_raise_config_error(options) -> None:
    with pytest.raises(ConfigError):
        MemoryTransport(TransportSettings(identity="alice@x.org", options=options))


def test_non_bytes_body_is_a_type_error(make, later) -> None:
    with pytest.raises(TypeError, match="str"):
        make("alice@x.org").send("bob@x.org", APP, EP, "text", later())
