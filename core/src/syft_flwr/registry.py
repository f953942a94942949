"""The typed registry that plugins fill with transport factories by name."""

from __future__ import annotations

import importlib.metadata
import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass

from syft_flwr.errors import PluginError, UnknownTransportError
from syft_flwr.hookspecs import ENTRY_POINT_GROUP
from syft_flwr.transport import Transport, TransportSettings

TransportFactory = Callable[[TransportSettings], Transport]

_NAME_RE = re.compile(r"^[a-z][a-z0-9_-]{0,63}$")

# Where the transports this project publishes live, so an error can say what to install.
# Only names and distribution names: the core never imports a plugin by name.
KNOWN_DISTRIBUTIONS = {
    "memory": "syft-flwr-memory",
    "syftbox": "syft-flwr-syftbox",
    "gdrive": "syft-flwr-gdrive",
}


@dataclass(frozen=True)
class TransportInfo:
    """A registered transport and where it comes from."""

    name: str
    factory: TransportFactory
    distribution: str | None
    version: str | None
    description: str


class TransportRegistry:
    """Transport factories by name; plugins add to it in ``syft_flwr_register_transports``."""

    def __init__(self) -> None:
        self._entries: dict[str, TransportInfo] = {}

    def register(self, name: str, factory: TransportFactory, *, description: str = "") -> None:
        """Register ``factory`` under ``name``.

        :raises PluginError: the name is malformed or already taken by another factory.
        """
        if not _NAME_RE.match(name):
            raise PluginError(
                f"transport name {name!r} is invalid: use lowercase letters, digits, '-' or '_'"
            )
        if not callable(factory):
            raise PluginError(f"transport {name!r}: factory {factory!r} is not callable")
        existing = self._entries.get(name)
        if existing is not None and existing.factory is not factory:
            raise PluginError(
                f"transport {name!r} is registered twice (by {existing.distribution or '?'} "
                f"and by {_distribution_of(factory)[0] or '?'}); uninstall one or block it "
                "with SYFT_FLWR_DISABLED_PLUGINS"
            )
        distribution, version = _distribution_of(factory)
        summary = description or _first_line(factory.__doc__)
        self._entries[name] = TransportInfo(name, factory, distribution, version, summary)

    def names(self) -> list[str]:
        """Registered transport names, sorted."""
        return sorted(self._entries)

    def __iter__(self) -> Iterator[TransportInfo]:
        return iter(self._entries[name] for name in self.names())

    def __contains__(self, name: object) -> bool:
        return name in self._entries

    def get(self, name: str) -> TransportInfo:
        """Look up a transport.

        :raises UnknownTransportError: no plugin registered ``name``; the message lists the
            installed transports and says which distribution provides ``name``.
        """
        try:
            return self._entries[name]
        except KeyError:
            raise UnknownTransportError(_unknown_message(name, self.names())) from None

    def create(self, name: str, settings: TransportSettings) -> Transport:
        """Build a transport instance by name."""
        info = self.get(name)
        transport = info.factory(settings)
        if not isinstance(transport, Transport):
            raise PluginError(
                f"transport {name!r} factory from {info.distribution or '?'} returned "
                f"{type(transport).__name__}, not a syft_flwr.transport.Transport"
            )
        return transport


def _unknown_message(name: str, installed: list[str]) -> str:
    have = ", ".join(installed) if installed else "none"
    dist = KNOWN_DISTRIBUTIONS.get(name)
    hint = (
        f"install the '{dist}' distribution (pip install {dist})"
        if dist
        else f"install the distribution that provides transport {name!r} "
        f"(by convention 'syft-flwr-{name}') or fix the name in [tool.syft_flwr] transport"
    )
    return f"unknown transport {name!r}; installed transports: {have}. To use it, {hint}."


def _first_line(text: str | None) -> str:
    lines = (text or "").strip().splitlines()
    return lines[0] if lines else ""


def _distribution_of(factory: object) -> tuple[str | None, str | None]:
    """The distribution (and its version) that ships ``factory``'s top-level package.

    ``packages_distributions()`` misses editable installs (their RECORD lists only a ``.pth``
    file), so plugins' own entry points, which always name their distribution, are asked too.
    """
    module = getattr(factory, "__module__", None) or ""
    top = module.split(".", 1)[0]
    dist = _entry_point_distributions().get(top)
    if dist is None:
        found = importlib.metadata.packages_distributions().get(top, [])
        dist = found[0] if found else None
    if dist is None:
        return None, None
    try:
        return dist, importlib.metadata.version(dist)
    except importlib.metadata.PackageNotFoundError:
        return dist, None


def _entry_point_distributions() -> dict[str, str]:
    mapping: dict[str, str] = {}
    for entry_point in importlib.metadata.entry_points(group=ENTRY_POINT_GROUP):
        if entry_point.dist is not None:
            mapping.setdefault(entry_point.module.split(".", 1)[0], entry_point.dist.name)
    return mapping
