"""Shared fixtures: a local federation over the memory transport, found through its entry point."""

from __future__ import annotations

from collections.abc import Callable

import pytest

from syft_flwr.testing.local import LocalFederation


@pytest.fixture
def federation(syft_flwr_federation: Callable[..., LocalFederation]) -> LocalFederation:
    """Three datasites over the memory transport (``syft_flwr_federation`` from the kit)."""
    return syft_flwr_federation("memory", 3)
