"""The rules the conformance kit checks, as shipped with the wheel (``RULES.md`` here).

``python -m syft_flwr.testing.rules`` prints them, so a plugin author reading a kit failure
or a scaffold's message has the page at hand whatever was installed, without the repository.
"""

from __future__ import annotations

import sys
from importlib import resources

__all__ = ["RULES_COMMAND", "rules_text"]

RULES_COMMAND = "python -m syft_flwr.testing.rules"
"""How messages tell a plugin author to read the rules."""


def rules_text() -> str:
    """The text of ``RULES.md``, the one source of the rules (docs/plugins.md links to it)."""
    return resources.files("syft_flwr.testing").joinpath("RULES.md").read_text(encoding="utf-8")


if __name__ == "__main__":
    sys.stdout.write(rules_text())
