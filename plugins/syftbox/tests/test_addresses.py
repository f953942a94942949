"""Nothing that reaches the filesystem can escape its folder or be read two ways.

The rules are the core's :mod:`syft_flwr.addresses` with the options this transport uses
(emails a ``syft://`` URL can carry, apps at most ``MAX_APP_SEGMENTS`` deep), checked here
through :class:`Layout`, which applies them to every path it builds or parses.
"""

from __future__ import annotations

from functools import partial
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from syft_flwr import addresses
from syft_flwr.addresses import check_endpoint, check_request_id
from syft_flwr.errors import InvalidAddressError
from syft_flwr_syftbox.layout import MAX_APP_SEGMENTS, FileKind, Layout, RpcLocation

check_datasite = partial(addresses.check_datasite, syft_url=True)
check_app = partial(addresses.check_app, max_segments=MAX_APP_SEGMENTS)

GOOD_EMAILS = ["alice@x.org", "a.b+c_d-e@sub.example.co.uk", "aggregator@demo.syft-flwr.local"]
BAD_EMAILS = [
    "",
    "alice",
    "alice@localhost",  # syft:// URLs need a dot in the domain
    "@x.org",
    "a@@x.org",
    "a@b@x.org",
    ".alice@x.org",
    "al..ice@x.org",
    "alice@x..org",
    "../alice@x.org",
    "alice/../@x.org",
    "al/ice@x.org",
    "al\\ice@x.org",
    "/alice@x.org",
    "alice@x.org/",
    "al\x00ice@x.org",
    "alice@x.org\n",
    " alice@x.org",
    "a" * 250 + "@x.org",
]


@pytest.mark.parametrize("email", GOOD_EMAILS)
def test_good_emails(email: str) -> None:
    assert check_datasite(email) == email


@pytest.mark.parametrize("email", BAD_EMAILS)
def test_bad_emails(email: str) -> None:
    with pytest.raises(InvalidAddressError, match="datasite"):
        check_datasite(email)
    with pytest.raises(InvalidAddressError):  # the layout applies the same rule
        Layout(Path("/srv/SyftBox/datasites")).rpc_dir(email, "flwr/demo")


@pytest.mark.parametrize("app", ["flwr/demo", "flwr", "a.b/c-d/e_f", "flwr/rpc"])
def test_good_apps(app: str) -> None:
    assert check_app(app) == app


@pytest.mark.parametrize(
    "app",
    [
        "",
        "/flwr",
        "flwr/",
        "flwr//demo",
        ".",
        "..",
        "flwr/..",
        "flwr/.hidden",
        "a\\b",
        "a\x00",
        "/".join("a" * 9),
        "flwr/de mo",
    ],
)
def test_bad_apps(app: str) -> None:
    with pytest.raises(InvalidAddressError):
        check_app(app)


@pytest.mark.parametrize("endpoint", ["", ".", "..", "a/b", ".hidden", "a\x00", "x" * 129])
def test_bad_endpoints(endpoint: str) -> None:
    with pytest.raises(InvalidAddressError):
        check_endpoint(endpoint)


@pytest.mark.parametrize("request_id", ["", "a.b", "../x", "-x", "x/y", "a" * 129, "x.request"])
def test_bad_request_ids(request_id: str) -> None:
    with pytest.raises(InvalidAddressError):
        check_request_id(request_id)


def test_uuid_request_ids_pass() -> None:
    assert check_request_id("ec2aa543-5bca-4cf6-845f-275087c2de64")


def _accepted(check, value: str) -> bool:
    try:
        check(value)
    except InvalidAddressError:
        return False
    return True


@given(
    recipient=st.text(max_size=30),
    app=st.text(max_size=30),
    endpoint=st.text(max_size=12),
    sender=st.text(max_size=30),
    request_id=st.text(max_size=12),
)
def test_accepted_names_stay_inside_their_folder(
    recipient: str, app: str, endpoint: str, sender: str, request_id: str
) -> None:
    """Any combination that passes every check is a path strictly below the datasites folder,
    and parses back to exactly the same parts."""
    parts = (recipient, app, endpoint, sender, request_id)
    checks = (check_datasite, check_app, check_endpoint, check_datasite, check_request_id)
    if not all(_accepted(check, value) for check, value in zip(checks, parts, strict=True)):
        return
    base = Path("/srv/SyftBox/datasites")
    location = RpcLocation(recipient, app, endpoint, sender, request_id, FileKind.REQUEST)
    path = Layout(base).file(location)
    assert path.resolve().is_relative_to(base)
    assert Layout(base).parse(path) == location


@given(st.text(max_size=40))
def test_datasite_check_never_lets_a_separator_through(value: str) -> None:
    if _accepted(check_datasite, value):
        assert "/" not in value and "\\" not in value and ".." not in value and "\x00" not in value
