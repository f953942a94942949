"""The first release's ``syft_flwr.engine`` paths, kept for one release.

The engine's modules moved into the layers (see ``docs/architecture.md``):
``syft_flwr.engine.server_engine`` is :mod:`syft_flwr.server.engine`,
``syft_flwr.engine.workspace`` is :mod:`syft_flwr.server.workspace` and
``syft_flwr.engine.events`` is :mod:`syft_flwr.events`. Importing an old path still works and
warns once with a :class:`~syft_flwr.deprecation.SyftFlwrDeprecationWarning`; the paths go in
syft-flwr 0.2.0. Nothing inside the library imports this package.
"""

from __future__ import annotations

import warnings

from syft_flwr.deprecation import REMOVED_IN, SyftFlwrDeprecationWarning

__all__ = ["warn_moved"]


def warn_moved(old: str, new: str) -> None:
    """Warn that module ``old`` is now ``new`` (called once, when ``old`` is first imported)."""
    warnings.warn(
        f"{old} moved to {new}; import it from there (the old path goes in syft-flwr {REMOVED_IN})",
        SyftFlwrDeprecationWarning,
        stacklevel=3,
    )
