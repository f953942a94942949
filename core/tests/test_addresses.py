"""The one address module: its default rules and the stricter options transports ask for."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from syft_flwr.addresses import (
    check_app,
    check_datasite,
    check_endpoint,
    check_request_id,
    is_datasite,
)
from syft_flwr.errors import InvalidAddressError

PATH_TRICKS = ["../a@x.org", "a/b@x.org", "a\\b@x.org", "a..b@x.org", "a@x.org/..", "a\x00@x.org"]


@pytest.mark.parametrize("email", [*PATH_TRICKS, "", "a", "@x.org", "a@", "a@b@x.org", " a@x.org"])
def test_path_tricks_and_non_emails_are_refused_by_default(email: str) -> None:
    with pytest.raises(InvalidAddressError, match="datasite"):
        check_datasite(email)
    assert not is_datasite(email)


def test_a_dotless_domain_passes_by_default_but_not_as_a_syft_url() -> None:
    assert check_datasite("alice@localhost") == "alice@localhost"
    with pytest.raises(InvalidAddressError, match="syft:// URL"):
        check_datasite("alice@localhost", syft_url=True)


@pytest.mark.parametrize("email", ["a#b@x.org", ".alice@x.org", "al'ice@x.org"])
def test_syft_url_emails_are_a_whitelist(email: str) -> None:
    assert check_datasite(email) == email
    assert not is_datasite(email, syft_url=True)


def test_forbidden_characters_are_named() -> None:
    with pytest.raises(InvalidAddressError, match='"\'"'):
        check_datasite("o'brien@x.org", forbid="'")
    assert check_datasite("obrien@x.org", forbid="'") == "obrien@x.org"


def test_app_depth_is_an_option() -> None:
    deep = "/".join("a" * 9)
    assert check_app(deep) == deep
    with pytest.raises(InvalidAddressError, match="at most 8"):
        check_app(deep, max_segments=8)


@pytest.mark.parametrize("app", ["", "/a", "a/", "a//b", "..", "a/..", "a/.x", "a b", "a" * 256])
def test_bad_apps(app: str) -> None:
    with pytest.raises(InvalidAddressError, match="app"):
        check_app(app)


@pytest.mark.parametrize("endpoint", ["", ".", "..", "a/b", ".x", "a\x00", "x" * 129])
def test_bad_endpoints(endpoint: str) -> None:
    with pytest.raises(InvalidAddressError, match="endpoint"):
        check_endpoint(endpoint)


@pytest.mark.parametrize("request_id", ["", "a.b", "../x", "-x", "x/y", "a" * 129])
def test_bad_request_ids(request_id: str) -> None:
    with pytest.raises(InvalidAddressError, match="request id"):
        check_request_id(request_id)


@given(st.text(max_size=40), st.booleans())
def test_no_accepted_email_has_a_separator(value: str, syft_url: bool) -> None:
    if is_datasite(value, syft_url=syft_url):
        assert not {"/", "\\", "\x00"} & set(value) and ".." not in value
