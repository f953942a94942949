"""``[tool.syft_flwr]`` parsing and environment overrides."""

from __future__ import annotations

import pytest

from syft_flwr.config import (
    DEFAULT_MSG_TIMEOUT,
    DEFAULT_TRANSPORT,
    RuntimeSettings,
    load_project_config,
)
from syft_flwr.errors import ConfigError


def write(tmp_path, text: str):
    (tmp_path / "pyproject.toml").write_text(text)
    return tmp_path


def test_full_table_is_read(tmp_path):
    project = write(
        tmp_path,
        """
[tool.syft_flwr]
app_name = "diabetes"
datasites = ["a@x.org", "b@y.org"]
aggregator = "agg@z.org"
transport = "memory"

[tool.syft_flwr.memory]
network = "n1"

[tool.flwr.app.components]
serverapp = "pkg.server:app"
clientapp = "pkg.client:app"
""",
    )
    config = load_project_config(project)
    assert config.app_name == "diabetes"
    assert config.datasites == ("a@x.org", "b@y.org")
    assert config.aggregator == "agg@z.org"
    assert config.transport == "memory"
    assert config.transport_options == {"network": "n1"}
    assert config.flower_components["serverapp"] == "pkg.server:app"
    assert config.source == project / "pyproject.toml"


def test_defaults_without_project_dir():
    config = load_project_config(None)
    assert config.transport == DEFAULT_TRANSPORT
    assert config.datasites == ()
    with pytest.raises(ConfigError, match="app_name"):
        config.require_app_name()


def test_missing_file_names_the_directory(tmp_path):
    with pytest.raises(ConfigError, match=str(tmp_path)):
        load_project_config(tmp_path)


@pytest.mark.parametrize(
    ("body", "key"),
    [
        ('datasites = "a@x.org"', "datasites"),
        ("datasites = [1, 2]", "datasites"),
        ("app_name = 3", "app_name"),
        ('transport = ""', "transport"),
        ('colour = "blue"', "colour"),
        ('transport = "memory"\nmemory = 5', "tool.syft_flwr.memory"),
    ],
)
def test_invalid_values_name_key_and_file(tmp_path, body, key):
    project = write(tmp_path, f"[tool.syft_flwr]\n{body}\n")
    with pytest.raises(ConfigError) as info:
        load_project_config(project)
    assert key in str(info.value)
    assert str(project / "pyproject.toml") in str(info.value)


def test_malformed_toml_is_a_config_error(tmp_path):
    with pytest.raises(ConfigError, match="cannot read"):
        load_project_config(write(tmp_path, "[tool.syft_flwr\n"))


def test_environment_settings():
    settings = RuntimeSettings.from_env(
        {
            "SYFT_FLWR_MSG_TIMEOUT": "7.5",
            "SYFT_FLWR_POLL_INTERVAL": "0.25",
            "SYFTBOX_EMAIL": " me@x.org ",
            "SYFT_FLWR_ENCRYPTION_ENABLED": "false",
        }
    )
    assert settings == RuntimeSettings(7.5, 0.25, "me@x.org", False)
    assert RuntimeSettings.from_env({}).msg_timeout == DEFAULT_MSG_TIMEOUT
    assert RuntimeSettings.from_env({}).encryption_enabled is None


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("SYFT_FLWR_MSG_TIMEOUT", "soon"),
        ("SYFT_FLWR_MSG_TIMEOUT", "-1"),
        ("SYFT_FLWR_POLL_INTERVAL", "nan"),
        ("SYFT_FLWR_ENCRYPTION_ENABLED", "maybe"),
    ],
)
def test_bad_environment_values_name_the_variable(name, value):
    with pytest.raises(ConfigError, match=name):
        RuntimeSettings.from_env({name: value})


def test_a_datasite_trusts_its_own_list_or_the_aggregator(tmp_path):
    from syft_flwr.authorization import aggregator_policy

    base = '[tool.syft_flwr]\naggregator = "Agg@Z.org"\n'
    config = load_project_config(write(tmp_path, base))
    assert aggregator_policy(config).trusted == frozenset({"agg@z.org"})
    assert aggregator_policy(config).emails == ("Agg@Z.org",)
    narrowed = load_project_config(
        write(tmp_path, base + 'trusted_aggregators = ["other@z.org"]\napprove = "manual"\n')
    )
    assert narrowed.approve == "manual"
    policy = aggregator_policy(narrowed)
    assert policy.allows("OTHER@z.org") and not policy.allows("agg@z.org")
    assert aggregator_policy(narrowed, ["x@y.org"]).trusted == frozenset({"x@y.org"})
    with pytest.raises(ConfigError, match="trusts no aggregator"):
        aggregator_policy(load_project_config(write(tmp_path, "[tool.syft_flwr]\n")))
    with pytest.raises(ConfigError, match="trusts no aggregator"):
        aggregator_policy(load_project_config(write(tmp_path, base)), [])


@pytest.mark.parametrize(
    ("line", "message"),
    [
        ('aggregator = "../agg@x.org"', "aggregator in .* path separator"),
        ('datasites = ["a@x.org", "b"]', "datasites in .* exactly one '@'"),
        ('trusted_aggregators = "a@x.org"', "trusted_aggregators .* must be a list"),
        ('trusted_aggregators = ["a@x .org"]', "trusted_aggregators in .* whitespace"),
        ('approve = "sometimes"', 'approve .* must be "auto" or "manual"'),
    ],
)
def test_emails_and_modes_are_checked_naming_key_and_file(tmp_path, line, message):
    project = write(tmp_path, f"[tool.syft_flwr]\n{line}\n")
    with pytest.raises(ConfigError, match=message) as info:
        load_project_config(project)
    assert str(project / "pyproject.toml") in str(info.value)
