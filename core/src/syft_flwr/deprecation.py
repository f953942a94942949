"""Deprecations: the warning class and a per-plugin-manager "warn once" log.

A deprecated plugin API keeps working for one release and says so once per plugin and use,
not on every call (a run calls ``fetch_key_document`` many times). The log lives on the plugin
manager, the one piece of global state syft-flwr keeps, so a fresh manager (a test) warns anew.
"""

from __future__ import annotations

import threading
import warnings
from collections.abc import Callable
from typing import Any

__all__ = ["REMOVED_IN", "DeprecationLog", "SyftFlwrDeprecationWarning"]

REMOVED_IN = "0.2.0"
"""The release that removes what is deprecated now (the next minor release)."""


class SyftFlwrDeprecationWarning(DeprecationWarning):
    """A plugin uses a syft-flwr API that goes away in :data:`REMOVED_IN`; the message names
    the plugin and what to use instead."""


class DeprecationLog:
    """Warns once per key (for example ``(plugin, hook)``)."""

    def __init__(self) -> None:
        self._seen: set[tuple[str, ...]] = set()
        self._lock = threading.Lock()

    def warn(
        self,
        key: tuple[str, ...],
        message: str,
        *,
        stacklevel: int = 2,
        origin: Callable[..., Any] | None = None,
    ) -> bool:
        """Issue a :class:`SyftFlwrDeprecationWarning` unless ``key`` was warned about already.

        :param stacklevel: as for :func:`warnings.warn`, counted from the caller of this method.
        :param origin: attribute the warning to this function's definition instead (a
            plugin's hook implementation), so the warning points at the code to change.
        :return: whether a warning was issued.
        """
        with self._lock:
            if key in self._seen:
                return False
            self._seen.add(key)
        text = f"{message} (deprecated; removed in syft-flwr {REMOVED_IN})"
        code = getattr(origin, "__code__", None)
        if code is None:
            warnings.warn(text, SyftFlwrDeprecationWarning, stacklevel=stacklevel + 1)
        else:
            warnings.warn_explicit(
                text,
                SyftFlwrDeprecationWarning,
                code.co_filename,
                code.co_firstlineno,
                module=getattr(origin, "__module__", None),
            )
        return True
