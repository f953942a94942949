"""Where the SyftBox folder comes from, and the errors that say what to set."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from syft_flwr.errors import ConfigError
from syft_flwr.transport import TransportSettings
from syft_flwr_syftbox import SyftBoxTransport
from syft_flwr_syftbox.options import SyftBoxOptions
from syft_flwr_syftbox.rpcfile import WireFormat

ME = "alice@x.org"


def resolve(options=None, env=None, project_dir=None) -> SyftBoxOptions:
    settings = TransportSettings(ME, options or {}, project_dir=project_dir)
    return SyftBoxOptions.resolve(settings, env or {})


def folder(tmp_path: Path, name: str) -> Path:
    path = tmp_path / name
    path.mkdir()
    return path


def test_option_wins_and_is_relative_to_the_project(tmp_path: Path) -> None:
    box = folder(tmp_path, "box")
    env = {"SYFTBOX_FOLDER": str(folder(tmp_path, "other"))}
    assert resolve({"data_dir": "box"}, env, project_dir=tmp_path).data_dir == box
    assert resolve({"data_dir": str(box)}, env).datasites == box / "datasites"


@pytest.mark.parametrize("variable", ["SYFTBOX_FOLDER", "SYFTBOX_DATA_DIR"])
def test_environment(tmp_path: Path, variable: str) -> None:
    box = folder(tmp_path, "box")
    assert resolve(env={variable: str(box)}).data_dir == box


def test_conflicting_environment(tmp_path: Path) -> None:
    env = {
        "SYFTBOX_FOLDER": str(folder(tmp_path, "a")),
        "SYFTBOX_DATA_DIR": str(folder(tmp_path, "b")),
    }
    with pytest.raises(ConfigError, match="name different folders"):
        resolve(env=env)


def test_client_config_file(tmp_path: Path) -> None:
    box = folder(tmp_path, "box")
    config = tmp_path / "config.json"
    config.write_text(json.dumps({"data_dir": str(box), "email": ME}))
    assert resolve(env={"SYFTBOX_CLIENT_CONFIG_PATH": str(config)}).data_dir == box
    config.write_text(json.dumps({"sync_folder": str(box)}))  # the legacy key
    assert resolve(env={"SYFTBOX_CLIENT_CONFIG_PATH": str(config)}).data_dir == box


def test_default_config_file_under_home(tmp_path: Path, monkeypatch) -> None:
    box = folder(tmp_path, "box")
    (tmp_path / ".syftbox").mkdir()
    (tmp_path / ".syftbox" / "config.json").write_text(json.dumps({"data_dir": str(box)}))
    monkeypatch.setenv("HOME", str(tmp_path))
    assert resolve().data_dir == box


def test_config_file_of_another_user(tmp_path: Path) -> None:
    config = tmp_path / "config.json"
    config.write_text(json.dumps({"data_dir": str(folder(tmp_path, "box")), "email": "bob@x.org"}))
    with pytest.raises(ConfigError, match=r"belongs to 'bob@x\.org'.*SYFTBOX_EMAIL"):
        resolve(env={"SYFTBOX_CLIENT_CONFIG_PATH": str(config)})


def test_nothing_set_says_what_to_set(tmp_path: Path) -> None:
    missing = str(tmp_path / "nope.json")
    with pytest.raises(ConfigError, match="data_dir or SYFTBOX_FOLDER"):
        resolve(env={"SYFTBOX_CLIENT_CONFIG_PATH": missing})
    with pytest.raises(ConfigError, match="does not exist"):
        resolve({"data_dir": str(tmp_path / "absent")})


def test_email_option_must_match_the_identity(tmp_path: Path) -> None:
    box = str(folder(tmp_path, "box"))
    assert resolve({"data_dir": box, "email": "ALICE@x.org"}).data_dir
    with pytest.raises(ConfigError, match=r"acts as 'alice@x\.org'"):
        resolve({"data_dir": box, "email": "bob@x.org"})


@pytest.mark.parametrize(
    ("key", "value", "message"),
    [
        ("wire", "grpc", "choose one of"),
        ("max_body_size", 0, "positive number of bytes"),
        ("max_body_size", True, "positive number of bytes"),
        ("fsync", "yes", "true or false"),
        ("cleanup_interval", -1, "positive"),
        ("cleanup_interval", 0, "positive"),
        ("sync_interval", -0.5, "zero or more"),
        ("sync_interval", "1s", "number of seconds"),
        ("sync_interval", False, "number of seconds"),
        ("stale_after", float("inf"), "number of seconds"),
        ("colour", "blue", "unknown key"),
    ],
)
def test_bad_values(tmp_path: Path, key: str, value: object, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        resolve({"data_dir": str(folder(tmp_path, "box")), key: value})


def test_defaults_and_values(tmp_path: Path) -> None:
    box = str(folder(tmp_path, "box"))
    default = resolve({"data_dir": box})
    assert (
        default.wire is WireFormat.NATIVE and not default.fsync and default.max_body_size == 2**30
    )
    custom = resolve({"data_dir": box, "wire": "syft-rpc", "max_body_size": 10, "fsync": True})
    assert (custom.wire, custom.max_body_size, custom.fsync) == (WireFormat.SYFT_RPC, 10, True)
    assert default.state_dir("Alice@X.org") == Path(box) / ".syft-flwr" / "alice@x.org"


@pytest.mark.parametrize(("interval", "latency"), [(None, 2.0), (0, 0.0), (0.25, 0.5), (5, 10.0)])
def test_the_sync_interval_sets_the_delivery_latency(
    tmp_path: Path, interval: float | None, latency: float
) -> None:
    """About two sync cycles per hop: the core's key waits grow with it."""
    table: dict[str, object] = {"data_dir": str(folder(tmp_path, "box"))}
    if interval is not None:
        table["sync_interval"] = interval
    transport = SyftBoxTransport(TransportSettings(identity="alice@x.org", options=table))
    try:
        assert transport.capabilities.delivery_latency == latency
    finally:
        transport.close()
