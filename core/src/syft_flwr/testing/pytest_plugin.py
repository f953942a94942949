"""pytest plugin (entry point ``pytest11``) giving plugin authors syft-flwr fixtures.

Installed with ``syft-flwr-core``; pytest loads it automatically. Fixtures:

- bounded waits for any transport test, from :mod:`syft_flwr.testing.helpers` (one copy for
  every test folder): ``serving`` (``with serving(transport):`` runs ``run()`` in a thread),
  ``wait_reply(transport, future_id)``, ``wait_all(transport, future_ids)``,
  ``later(seconds=60.0)`` (an ``expires_at``), ``eventually(condition, what)`` and
  ``bounded(function, *args)``. Each is bounded by ``syft_flwr_timeout``, the base fixture a
  ``conftest.py`` overrides to widen every bound at once (a slow medium);
- ``syft_flwr_plugin_manager``: a fresh plugin manager loading the installed plugins, so a
  test can register observer plugins without touching the process-wide one;
- ``syft_flwr_federation``: a factory building a :class:`~syft_flwr.testing.local.LocalFederation`
  over any locally runnable transport, closed after the test.

Imports beyond the stdlib-only helpers are deferred to the fixtures so that merely having the
plugin installed costs pytest nothing.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING, Any

import pytest

from syft_flwr.testing import helpers

if TYPE_CHECKING:
    import pluggy

    from syft_flwr.testing.local import LocalFederation


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers",
        "syft_flwr_budget(attribute): the kit test's time budget is that class attribute",
    )


@pytest.fixture
def syft_flwr_timeout() -> float:
    """Upper bound, in seconds, of every wait the helper fixtures make (override to widen)."""
    return helpers.TIMEOUT


@pytest.fixture
def serving(syft_flwr_timeout: float) -> helpers.Serving:
    """``with serving(transport):`` runs ``transport.run()`` in a thread, stopped after."""
    return functools.partial(helpers.serving, timeout=syft_flwr_timeout)


@pytest.fixture
def wait_reply(syft_flwr_timeout: float) -> helpers.WaitReply:
    """``wait_reply(transport, future_id)``: the future's reply, waiting at most the bound."""
    return functools.partial(helpers.wait_reply, timeout=syft_flwr_timeout)


@pytest.fixture
def wait_all(syft_flwr_timeout: float) -> helpers.WaitAll:
    """``wait_all(transport, future_ids)``: wait (bounded) until every future has a reply."""
    return functools.partial(helpers.wait_all, timeout=syft_flwr_timeout)


@pytest.fixture
def later() -> helpers.Later:
    """``later(seconds=60.0)``: an ``expires_at`` that many seconds from now."""
    return helpers.later


@pytest.fixture
def eventually(syft_flwr_timeout: float) -> helpers.Eventually:
    """``eventually(condition, what)``: wait (bounded) for an effect no event announces."""
    return functools.partial(helpers.eventually, timeout=syft_flwr_timeout)


@pytest.fixture
def bounded(syft_flwr_timeout: float) -> helpers.Bounded:
    """``bounded(function, *args)``: call it in a thread; fail instead of hanging."""
    return functools.partial(helpers.bounded, timeout=syft_flwr_timeout)


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
