"""Every hookspec is documented in docs/plugins.md and exercised by a test (as datasette does)."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from syft_flwr import hookspecs

ROOT = Path(__file__).resolve().parents[1]
HOOKS = sorted(name for name in dir(hookspecs) if name.startswith("syft_flwr_"))
TEST_FILES = [
    path
    for pattern in (
        "tests/**/*.py",
        "core/tests/**/*.py",
        "plugins/*/tests/**/*.py",
        "examples/*/tests/**/*.py",
    )
    for path in ROOT.glob(pattern)
    if path.name != Path(__file__).name
]


def test_there_are_hooks():
    assert "syft_flwr_register_transports" in HOOKS and len(HOOKS) >= 10


@pytest.mark.parametrize("hook", HOOKS)
def test_hook_is_documented(hook):
    docs = (ROOT / "docs" / "plugins.md").read_text()
    assert re.search(rf"^### {hook}$", docs, re.MULTILINE), f"document {hook} in docs/plugins.md"


@pytest.mark.parametrize("hook", HOOKS)
def test_hook_has_a_docstring_with_params(hook):
    function = getattr(hookspecs, hook)
    assert function.__doc__ and function.__doc__.strip(), f"{hook} needs a docstring"
    for parameter in function.__code__.co_varnames[: function.__code__.co_argcount]:
        assert f":param {parameter}:" in function.__doc__, f"{hook}: document {parameter}"


@pytest.mark.parametrize("hook", HOOKS)
def test_hook_is_exercised_by_a_test(hook):
    assert any(re.search(rf"\b{hook}\b", path.read_text()) for path in TEST_FILES), (
        f"no test implements or calls {hook}"
    )


def test_readme_commands_exist():
    readme = (ROOT / "README.md").read_text()
    for script in re.findall(r"bash (scripts/\S+\.sh)", readme):
        assert (ROOT / script).is_file(), script
    ci = (ROOT / ".ci" / "run").read_text()
    assert "scripts/test.sh" in ci, ".ci/run must call the README's test command"
