"""pytest plugin (entry point ``pytest11``) giving plugin authors syft-flwr fixtures.

Installed with ``syft-flwr-core``; pytest loads it automatically. Fixtures:

- ``syft_flwr_plugin_manager``: a fresh plugin manager loading the installed plugins, so a
  test can register observer plugins without touching the process-wide one;
- ``syft_flwr_federation``: a factory building a :class:`~syft_flwr.testing.local.LocalFederation`
  over any locally runnable transport, closed after the test.

Imports are deferred to the fixtures so that merely having the plugin installed costs
pytest nothing.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING, Any

import pytest

if TYPE_CHECKING:
    import pluggy

    from syft_flwr.testing.local import LocalFederation


@pytest.fixture
def syft_flwr_plugin_manager() -> pluggy.PluginManager:
    """A fresh plugin manager with every installed plugin loaded."""
    from syft_flwr.plugins import create_plugin_manager

    return create_plugin_manager()


@pytest.fixture
def syft_flwr_federation(
    syft_flwr_plugin_manager: pluggy.PluginManager,
) -> Iterator[Callable[..., LocalFederation]]:
    """``syft_flwr_federation(transport="memory", num_datasites=3, **kwargs)`` builds a
    local federation (server and clients in threads) that is closed after the test."""
    from syft_flwr.testing.local import LocalFederation

    built: list[LocalFederation] = []

    def build(transport: str = "memory", num_datasites: int = 3, **kwargs: Any) -> LocalFederation:
        kwargs.setdefault("manager", syft_flwr_plugin_manager)
        federation = LocalFederation(transport, num_datasites, **kwargs)
        built.append(federation)
        return federation

    yield build
    for federation in built:
        federation.close()
