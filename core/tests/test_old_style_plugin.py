"""A plugin written against the first release's hooks still works, and says so once.

``old_style_plugin`` registers a factory by name and answers ``syft_flwr_local_options``,
``syft_flwr_publish_key_document``, ``syft_flwr_fetch_key_document`` and
``syft_flwr_round_finished``; these tests run it through the plugin manager, locally and
encrypted, and count the deprecation warnings.
"""

from __future__ import annotations

import warnings
from collections.abc import Iterator
from pathlib import Path

import pytest

from core.tests import old_style_plugin
from syft_flwr.config import RuntimeSettings
from syft_flwr.crypto.errors import KeyDocumentsUnsupportedError, MissingKeyError
from syft_flwr.crypto.policy import open_channel
from syft_flwr.demo.apps import RoundReport, make_client_app, make_server_app
from syft_flwr.deprecation import SyftFlwrDeprecationWarning
from syft_flwr.hookspecs import hookimpl
from syft_flwr.plugins import create_plugin_manager, get_transport_registry
from syft_flwr.registry import TransportRegistry
from syft_flwr.testing.local import LocalFederation, local_options
from syft_flwr.transport import TransportSettings

DEPRECATED_USES = {
    "syft_flwr_local_options",
    "syft_flwr_publish_key_document",
    "syft_flwr_fetch_key_document",
    "syft_flwr_round_finished",
    "registry.register(name, factory)",
}


def deprecations(caught: list[warnings.WarningMessage]) -> list[str]:
    return [str(w.message) for w in caught if issubclass(w.category, SyftFlwrDeprecationWarning)]


def use_of(message: str) -> str:
    """Which deprecated use a warning is about."""
    if "registry.register(name, factory)" in message:
        return "registry.register(name, factory)"
    (hook,) = [name for name in DEPRECATED_USES if f"the hook {name};" in message]
    return hook


@pytest.fixture(autouse=True)
def fresh_counts() -> Iterator[None]:
    old_style_plugin.calls.clear()
    yield
    old_style_plugin.calls.clear()


@pytest.fixture
def always_warn() -> Iterator[list[warnings.WarningMessage]]:
    """Every warning, with Python's once-per-location filter off: what is left is ours."""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        yield caught


def test_each_deprecated_use_warns_once_naming_plugin_and_replacement(
    always_warn: list[warnings.WarningMessage], tmp_path: Path
) -> None:
    manager = create_plugin_manager(load_entry_points=False, extra_plugins=[old_style_plugin])
    for _ in range(3):  # every caller builds its own registry: still one warning
        registry = get_transport_registry(manager)
    local_options("oldstyle", tmp_path, manager, registry)
    messages = deprecations(always_warn)
    assert sorted(use_of(m) for m in messages) == sorted(DEPRECATED_USES)
    for message in messages:
        assert "removed in syft-flwr 0.2.0" in message
    by_use = {use_of(m): m for m in messages}
    assert "'core.tests.old_style_plugin'" in by_use["syft_flwr_local_options"]
    assert "classmethod local_options(cls, workdir)" in by_use["syft_flwr_local_options"]
    assert "publish_key_document(self, document)" in by_use["syft_flwr_publish_key_document"]
    assert "fetch_key_document(self, datasite)" in by_use["syft_flwr_fetch_key_document"]
    assert "ExchangeFinished" in by_use["syft_flwr_round_finished"]
    # each warning points at the plugin's code to change, not at syft-flwr's
    plugin_file = Path(old_style_plugin.__file__)
    ours = [w for w in always_warn if issubclass(w.category, SyftFlwrDeprecationWarning)]
    assert {Path(w.filename) for w in ours} == {plugin_file}
    register = by_use["registry.register(name, factory)"]
    assert "'oldstyle'" in register and "registry.register(TheTransportClass)" in register
    assert "core.tests.old_style_plugin" in register


def test_the_old_plugin_registers_and_runs_locally(tmp_path: Path) -> None:
    with pytest.warns(SyftFlwrDeprecationWarning):
        manager = create_plugin_manager(load_entry_points=False, extra_plugins=[old_style_plugin])
        registry = get_transport_registry(manager)
    info = registry.get("oldstyle")
    assert info.transport_class is None  # a factory: nothing to ask but the old hooks
    assert info.description == "An in-process transport registered the deprecated way."
    assert local_options("oldstyle", tmp_path, manager, registry) == {
        "medium": f"old-{tmp_path.name}"
    }
    assert old_style_plugin.calls == {"local_options": 1}


def test_an_encrypted_local_run_uses_the_old_key_document_hooks_without_new_warnings(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, always_warn: list[warnings.WarningMessage]
) -> None:
    monkeypatch.setenv("SYFT_FLWR_KEY_DIR", str(tmp_path / "keys"))
    monkeypatch.setenv("SYFT_FLWR_ENCRYPTION_ENABLED", "true")
    manager = create_plugin_manager(load_entry_points=False, extra_plugins=[old_style_plugin])
    reports: list[RoundReport] = []
    with LocalFederation("oldstyle", num_datasites=2, manager=manager) as federation:
        warned_before_run = len(deprecations(always_warn))
        federation.start_clients(lambda index: make_client_app())
        federation.run_server(make_server_app(2, 2, reports.append, round_timeout=30.0))
        federation.join_clients()
        assert federation.stop_reasons == dict.fromkeys(federation.datasites, "Server stopped")
    assert len(reports) == 3 and reports[-1].test_loss < reports[0].test_loss
    assert all((tmp_path / "keys" / ds / "keys.json").is_file() for ds in federation.datasites)
    calls = old_style_plugin.calls
    assert calls["local_options"] == 1
    assert calls["publish_key_document"] == 3  # the server and both datasites
    assert calls["fetch_key_document"] >= 2  # the server fetched both datasites' documents
    assert calls["round_finished"] == 2 * 2  # the alias of exchange_finished: train + evaluate
    assert warned_before_run == len(DEPRECATED_USES)
    assert len(deprecations(always_warn)) == warned_before_run, "a use warned more than once"


class KeylessTransport(old_style_plugin.OldStyleTransport):
    """The same transport registered the new way, without key-document methods."""

    name = "keyless"


class KeylessPlugin:
    @hookimpl
    def syft_flwr_register_transports(self, registry: TransportRegistry) -> None:
        registry.register(KeylessTransport)


def test_an_encrypted_run_over_a_transport_without_key_documents_refuses_to_start(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("SYFT_FLWR_KEY_DIR", str(tmp_path / "keys"))
    monkeypatch.setenv("SYFT_FLWR_ENCRYPTION_ENABLED", "true")
    manager = create_plugin_manager(load_entry_points=False, extra_plugins=[KeylessPlugin()])
    registry = get_transport_registry(manager)
    settings = TransportSettings("a@x.org", {"medium": tmp_path.name})
    with registry.create("keyless", settings) as transport:
        with pytest.raises(KeyDocumentsUnsupportedError) as refused:
            open_channel(transport, RuntimeSettings.from_env(), manager)
        assert isinstance(refused.value, MissingKeyError)  # what the first release raised
        message = str(refused.value)
        assert "KeylessTransport (keyless) does not implement publish_key_document" in message
        assert "SYFT_FLWR_ENCRYPTION_ENABLED=false" in message
        with pytest.raises(KeyDocumentsUnsupportedError, match="fetch_key_document"):
            transport.fetch_key_document("b@x.org")
    assert not (tmp_path / "keys" / "a@x.org").exists(), "keys were saved though unpublished"
