"""The typed registry that plugins fill with transport classes.

A plugin registers a :class:`~syft_flwr.transport.Transport` subclass, which names and
describes itself (``registry.register(MemoryTransport)``); the class is the factory. The
``register(name, factory)`` form of the first release still works, with a deprecation warning,
until syft-flwr 0.2.0.
"""

from __future__ import annotations

import importlib.metadata
import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass

from syft_flwr.deprecation import DeprecationLog
from syft_flwr.errors import PluginError, UnknownTransportError
from syft_flwr.transport import Transport, TransportSettings

ENTRY_POINT_GROUP = "syft_flwr"
"""The entry-point group plugins register in; its entry-point names are plugin names."""

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
    """A registered transport and where it comes from.

    :param transport_class: the registered class; ``None`` for a factory registered the
        deprecated way (``register(name, factory)``), whose local options and key documents
        come from the deprecated hooks.
    """

    name: str
    factory: TransportFactory
    distribution: str | None
    version: str | None
    description: str
    transport_class: type[Transport] | None = None


class TransportRegistry:
    """Transport classes by name; plugins add to it in ``syft_flwr_register_transports``.

    :param deprecations: where deprecated registrations are warned about once (the plugin
        manager's log); a private log when ``None``.
    """

    def __init__(self, deprecations: DeprecationLog | None = None) -> None:
        self._entries: dict[str, TransportInfo] = {}
        self._deprecations = deprecations or DeprecationLog()

    def register(
        self,
        transport: type[Transport] | str,
        factory: TransportFactory | None = None,
        *,
        description: str = "",
    ) -> None:
        """Register a transport class under its :attr:`~syft_flwr.transport.Transport.name`.

        ``register(name, factory, description=...)`` (a name and any callable taking
        :class:`~syft_flwr.transport.TransportSettings`) is the deprecated form; it warns once
        and is removed in syft-flwr 0.2.0.

        :raises PluginError: not a ``Transport`` subclass, the name is missing or malformed,
            or it is already taken by another class or factory.
        """
        if isinstance(transport, str):
            self._register_factory(transport, factory, description)
            return
        if factory is not None or description:
            raise PluginError(
                f"registry.register({_qualname(transport)}, ...): a transport class describes "
                "itself; set its `description` class attribute instead of passing arguments"
            )
        if not (isinstance(transport, type) and issubclass(transport, Transport)):
            raise PluginError(
                f"registry.register({transport!r}): pass a syft_flwr.transport.Transport "
                "subclass (with a `name` class attribute)"
            )
        if not transport.name:
            raise PluginError(
                f"transport class {_qualname(transport)} has no name: set the class attribute "
                '`name = "<what users write in [tool.syft_flwr] transport>"`'
            )
        self._add(transport.name, transport, transport.summary(), transport)

    def _register_factory(
        self, name: str, factory: TransportFactory | None, description: str
    ) -> None:
        """The deprecated ``register(name, factory)`` form."""
        if factory is None or not callable(factory):
            raise PluginError(f"transport {name!r}: factory {factory!r} is not callable")
        plugin = _distribution_of(factory)[0] or getattr(factory, "__module__", None) or "?"
        self._deprecations.warn(
            ("register", name),
            f"plugin {plugin!r} registers transport {name!r} as registry.register(name, "
            "factory); register the Transport subclass instead: set `name` (and "
            "`description`) on the class and call registry.register(TheTransportClass)",
            stacklevel=3,  # the plugin's line calling register
        )
        transport_class = factory if isinstance(factory, type) else None
        if transport_class is not None and not issubclass(transport_class, Transport):
            transport_class = None
        summary = description or _first_line(factory.__doc__)
        self._add(name, factory, summary, transport_class)

    def _add(
        self,
        name: str,
        factory: TransportFactory,
        summary: str,
        transport_class: type[Transport] | None,
    ) -> None:
        if not _NAME_RE.match(name):
            raise PluginError(
                f"transport name {name!r} is invalid: use lowercase letters, digits, '-' or '_'"
            )
        existing = self._entries.get(name)
        if existing is not None and existing.factory is not factory:
            raise PluginError(
                f"transport {name!r} is registered twice (by {existing.distribution or '?'} "
                f"and by {_distribution_of(factory)[0] or '?'}); uninstall one or block it "
                "with SYFT_FLWR_DISABLED_PLUGINS"
            )
        distribution, version = _distribution_of(factory)
        self._entries[name] = TransportInfo(
            name, factory, distribution, version, summary, transport_class
        )

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


def _qualname(obj: object) -> str:
    return getattr(obj, "__qualname__", None) or repr(obj)


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
