"""Configuration and address errors say what is wrong and which option or address."""

from __future__ import annotations

from pathlib import Path

import pytest
from syft_flwr.addresses import check_app, check_datasite, check_endpoint
from syft_flwr.errors import ConfigError, InvalidAddressError
from syft_flwr.transport import TransportSettings

from syft_flwr_sqlite import SqliteOptions, SqliteTransport


def options(**table: object) -> SqliteOptions:
    return SqliteOptions.from_settings(TransportSettings("a@x.org", table))


def test_database_is_required() -> None:
    with pytest.raises(ConfigError, match="needs the option 'database'"):
        options()


def test_defaults(tmp_path: Path) -> None:
    parsed = options(database=str(tmp_path / "db.sqlite3"))
    assert parsed == SqliteOptions(database=tmp_path / "db.sqlite3")
    assert parsed.max_body_size == 64 * 1024 * 1024


def test_a_relative_database_is_resolved_against_the_project(tmp_path: Path) -> None:
    settings = TransportSettings("a@x.org", {"database": "fl.sqlite3"}, project_dir=tmp_path)
    assert SqliteOptions.from_settings(settings).database == tmp_path / "fl.sqlite3"


def test_the_database_directory_must_exist(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="does not exist"):
        options(database=str(tmp_path / "missing" / "db.sqlite3"))


@pytest.mark.parametrize(
    ("table", "message"),
    [
        ({"databse": "x"}, "unknown sqlite transport option"),
        ({"database": ""}, "database=''"),
        ({"database": 3}, "database=3"),
        ({"max_body_size": -1}, "max_body_size=-1"),
        ({"max_body_size": True}, "max_body_size=True"),
        ({"max_body_size": 2_000_000_000}, "SQLite's largest BLOB"),
        ({"busy_timeout": "soon"}, "busy_timeout='soon'"),
        ({"retention": -1}, "retention=-1 must not be negative"),
        ({"cleanup_interval": float("inf")}, "cleanup_interval=inf"),
    ],
)
def test_malformed_options_name_the_option(tmp_path: Path, table: dict, message: str) -> None:
    with pytest.raises(ConfigError, match=message.replace("(", r"\(")):
        options(**{"database": str(tmp_path / "db.sqlite3"), **table})


def test_the_identity_must_be_a_safe_email(tmp_path: Path) -> None:
    settings = TransportSettings("../etc@x.org", {"database": str(tmp_path / "db")})
    with pytest.raises(InvalidAddressError, match="datasite"):
        SqliteTransport(settings)


@pytest.mark.parametrize("datasite", ["a@x.org", "first.last+tag@sub.example.co"])
def test_good_datasites(datasite: str) -> None:
    assert check_datasite(datasite) == datasite


@pytest.mark.parametrize(
    "datasite",
    [
        "",
        "nobody",
        "a@b@c",
        "@x.org",
        "a@",
        "a b@x.org",
        "a\n@x.org",
        "a/b@x.org",
        "a\\b@x.org",
        "a..b@x.org",
        "x" * 250 + "@x.org",
    ],
)
def test_bad_datasites(datasite: str) -> None:
    with pytest.raises(InvalidAddressError):
        check_datasite(datasite)


@pytest.mark.parametrize("app", ["flwr/demo", "flwr/x", "single", "a/b.c/d_e-f"])
def test_good_apps(app: str) -> None:
    assert check_app(app) == app


@pytest.mark.parametrize("app", ["", "/flwr", "flwr/", "flwr//x", "flwr/../x", "flwr/.x", "a b"])
def test_bad_apps(app: str) -> None:
    with pytest.raises(InvalidAddressError):
        check_app(app)


@pytest.mark.parametrize("endpoint", ["", "a/b", "..", ".hidden", "sp ace", "x" * 200])
def test_bad_endpoints(endpoint: str) -> None:
    with pytest.raises(InvalidAddressError):
        check_endpoint(endpoint)
