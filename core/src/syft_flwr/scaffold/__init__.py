"""``syft-flwr plugin new NAME``: a ready-to-fill transport plugin package.

The generated package installs, registers its transport through the ``syft_flwr`` entry
point group, and runs the conformance kit at once; the kit's tests fail with messages that
say which method to implement until the transport is written.
"""

from __future__ import annotations

import re
import string
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

from syft_flwr import __version__
from syft_flwr.errors import ConfigError

__all__ = ["PluginNames", "create_plugin_package"]

_NAME_RE = re.compile(r"^[a-z][a-z0-9]*(?:[-_][a-z0-9]+)*$")

# template file -> path in the generated package ($package is substituted)
_FILES = {
    "pyproject.toml.tmpl": "pyproject.toml",
    "README.md.tmpl": "README.md",
    "init.py.tmpl": "src/$package/__init__.py",
    "plugin.py.tmpl": "src/$package/plugin.py",
    "transport.py.tmpl": "src/$package/transport.py",
    "py.typed.tmpl": "src/$package/py.typed",
    "test_conformance.py.tmpl": "tests/test_conformance.py",
}


@dataclass(frozen=True)
class PluginNames:
    """Every name derived from the transport name."""

    transport: str
    distribution: str
    package: str
    class_name: str

    @classmethod
    def from_transport(cls, name: str) -> PluginNames:
        """Derive the names.

        :raises ConfigError: ``name`` is not a valid transport name.
        """
        if not _NAME_RE.match(name) or len(name) > 40:
            raise ConfigError(
                f"plugin name {name!r} is invalid: use lowercase letters and digits, "
                "optionally separated by '-' or '_'"
            )
        parts = re.split(r"[-_]", name)
        return cls(
            transport=name,
            distribution=f"syft-flwr-{name.replace('_', '-')}",
            package=f"syft_flwr_{name.replace('-', '_')}",
            class_name="".join(part.capitalize() for part in parts) + "Transport",
        )


def create_plugin_package(name: str, destination: Path) -> list[Path]:
    """Write a new plugin package for transport ``name`` into ``destination``.

    :return: the files written.
    :raises ConfigError: the name is invalid or ``destination`` exists and is not empty.
    """
    names = PluginNames.from_transport(name)
    if destination.exists() and any(destination.iterdir()):
        raise ConfigError(f"{destination} already exists and is not empty; choose another --dir")
    values = {
        "transport": names.transport,
        "distribution": names.distribution,
        "package": names.package,
        "class_name": names.class_name,
        "core_version": __version__,
    }
    templates = resources.files("syft_flwr.scaffold") / "template"
    written: list[Path] = []
    for template_name, target in _FILES.items():
        text = (templates / template_name).read_text(encoding="utf-8")
        path = destination / string.Template(target).substitute(values)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(string.Template(text).substitute(values), encoding="utf-8")
        written.append(path)
    return written
