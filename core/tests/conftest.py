"""Fixtures shared by the core's tests."""

from __future__ import annotations

from collections.abc import Iterator

import pytest


@pytest.fixture
def quiet_syft_crypto() -> Iterator[None]:
    """Silence syft-crypto's loguru output (to stderr) for tests that drive the real package.

    loguru keeps the stream it found at import, which under pytest's capture may be closed by
    the time a later test logs.
    """
    loguru = pytest.importorskip("loguru")
    loguru.logger.disable("syft_crypto")
    yield
    loguru.logger.enable("syft_crypto")
