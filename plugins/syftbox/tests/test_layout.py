"""The on-disk layout is SyftBox RPC's, and paths parse back to what they encode."""

from __future__ import annotations

from pathlib import Path

import pytest

from syft_flwr.errors import InvalidAddressError
from syft_flwr_syftbox import layout as layout_module
from syft_flwr_syftbox.layout import FileKind, Layout, RpcLocation, syft_url

BASE = Path("/data/SyftBox/datasites")


def test_request_and_response_paths() -> None:
    location = RpcLocation(
        "bob@x.org", "flwr/demo", "messages", "alice@x.org", "r1", FileKind.REQUEST
    )
    expected = BASE / "bob@x.org/app_data/flwr/demo/rpc/messages/alice@x.org/r1.request"
    assert Layout(BASE).file(location) == expected
    response = RpcLocation(**{**location.__dict__, "kind": FileKind.RESPONSE})
    assert Layout(BASE).file(response) == expected.with_suffix(".response")
    assert (
        Layout(BASE).rpc_dir("bob@x.org", "flwr/demo") == BASE / "bob@x.org/app_data/flwr/demo/rpc"
    )


def test_a_sender_folder_is_validated_once_and_a_bad_one_every_time(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Every message's paths go through the same few sender folders: validated once each."""
    checked: list[str] = []
    check = layout_module.check_datasite

    def counting(email: str, **kwargs: bool) -> str:
        checked.append(email)
        return check(email, **kwargs)

    monkeypatch.setattr(layout_module, "check_datasite", counting)
    layout = Layout(BASE)
    folders = {layout.sender_dir("bob@x.org", "flwr/demo", "messages", "a@x.org") for _ in "abc"}
    assert folders == {BASE / "bob@x.org/app_data/flwr/demo/rpc/messages/a@x.org"}
    assert checked == ["bob@x.org", "a@x.org"]
    for _ in range(2):
        with pytest.raises(InvalidAddressError):
            layout.sender_dir("bob@x.org", "flwr/demo", "messages", "../etc")


def test_syft_url_matches_syft_rpc_make_url() -> None:
    assert syft_url("bob@x.org", "flwr/demo", "messages") == (
        "syft://bob@x.org/app_data/flwr/demo/rpc/messages"
    )


def test_app_named_rpc_parses_unambiguously() -> None:
    location = RpcLocation("b@x.org", "rpc/rpc", "rpc", "a@x.org", "id-1", FileKind.RESPONSE)
    assert Layout(BASE).parse(Layout(BASE).file(location)) == location


@pytest.mark.parametrize(
    "relative",
    [
        "bob@x.org/app_data/flwr/demo/rpc/messages/alice@x.org/r1.txt",
        "bob@x.org/app_data/flwr/demo/rpc/messages/r1.request",  # legacy: no sender folder
        "bob@x.org/app_data/flwr/demo/rpc/messages/alice@x.org/.r1.request.syft.tmp.ab.tmp",
        "bob@x.org/public/flwr/demo/rpc/messages/alice@x.org/r1.request",
        "bob@x.org/app_data/flwr/demo/rpc/messages/not-an-email/r1.request",
        "bob@x.org/app_data/flwr/demo/rpc/messages/alice@x.org/r.1.request",
        "bob@x.org/app_data/rpc/messages/alice@x.org/r1.request",  # no app
    ],
)
def test_other_paths_are_not_rpc_files(relative: str) -> None:
    assert Layout(BASE).parse(BASE / relative) is None


def test_paths_outside_the_folder_are_ignored() -> None:
    assert Layout(BASE).parse("/elsewhere/b@x.org/app_data/a/rpc/e/a@x.org/r.request") is None
