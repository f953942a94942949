"""The core's layers import only downward, and nothing imports in a cycle.

The import graph is read from the source (every ``import``, including those inside functions
and under ``TYPE_CHECKING``: a lazy import that dodges a cycle is still a cycle in the design).
Every module must be placed in a layer below, so a new module is a conscious decision about
what it may depend on.
"""

from __future__ import annotations

import ast
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

import syft_flwr

PACKAGE_DIR = Path(syft_flwr.__file__).parent

LAYERS: list[tuple[str, tuple[str, ...]]] = [
    (
        "foundation",
        (
            "syft_flwr.errors",
            "syft_flwr.deprecation",
            "syft_flwr.files",
            "syft_flwr.kill_points",
            "syft_flwr.addresses",
            "syft_flwr.node_ids",
            "syft_flwr.message_factory",
            "syft_flwr.stop_signal",
            "syft_flwr.events",
            "syft_flwr.config",
            "syft_flwr.flower_config",
            "syft_flwr.syftbox_client_config",
            "syft_flwr.workspace_location",
        ),
    ),
    (
        "bottom",
        ("syft_flwr.wire", "syft_flwr.transport", "syft_flwr.crypto", "syft_flwr.body_buffer"),
    ),
    ("policy", ("syft_flwr.audit", "syft_flwr.approvals", "syft_flwr.authorization")),
    (
        "plugins",
        (
            "syft_flwr",  # the package itself: exports hookimpl and the base error
            "syft_flwr.hookspecs",
            "syft_flwr.registry",
            "syft_flwr.plugins",
            "syft_flwr.builtin_plugin",
            "syft_flwr.legacy_hooks",
            "syft_flwr.transport_setup",
            "syft_flwr.crypto.policy",
        ),
    ),
    ("grid", ("syft_flwr.grid",)),
    ("services", ("syft_flwr.services",)),
    ("roles", ("syft_flwr.server", "syft_flwr.client")),
    ("api", ("syft_flwr.fl_orchestrator", "syft_flwr.run")),
    (
        "applications",
        (
            "syft_flwr.cli",
            "syft_flwr.__main__",
            "syft_flwr.demo",
            "syft_flwr.scaffold",
            "syft_flwr.testing",
            "syft_flwr.engine",  # the first release's paths, deprecated re-exports
        ),
    ),
]
"""Bottom first. A module belongs to the layer of the longest prefix naming it (the package
itself, ``syft_flwr``, names only its ``__init__``)."""

PACKAGE = "syft_flwr"

SIBLINGS_THAT_NEVER_MEET = ("syft_flwr.server", "syft_flwr.client")


def _modules() -> dict[str, Path]:
    found = {}
    for path in sorted(PACKAGE_DIR.rglob("*.py")):
        parts = path.relative_to(PACKAGE_DIR.parent).with_suffix("").parts
        if parts[-1] == "__init__":
            parts = parts[:-1]
        found[".".join(parts)] = path
    return found


MODULES = _modules()


def _imports(module: str, path: Path) -> Iterator[str]:
    """Every syft_flwr module ``module`` imports, resolved to module names."""
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            for alias in node.names:
                if alias.name.split(".")[0] == "syft_flwr":
                    yield _existing(alias.name)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")[: len(package.split(".")) - node.level + 1]
                target = ".".join([*base, *([node.module] if node.module else [])])
            else:
                target = node.module or ""
            if target.split(".")[0] != "syft_flwr":
                continue
            for alias in node.names:
                submodule = f"{target}.{alias.name}"
                yield submodule if submodule in MODULES else _existing(target)


def _existing(name: str) -> str:
    while name not in MODULES:
        name = name.rpartition(".")[0]
    return name


def _layer_of(module: str) -> int:
    best, best_len = None, -1
    for index, (_, prefixes) in enumerate(LAYERS):
        for prefix in prefixes:
            inside = module == prefix or (prefix != PACKAGE and module.startswith(prefix + "."))
            if inside and len(prefix) > best_len:
                best, best_len = index, len(prefix)
    if best is None:
        raise AssertionError(f"{module} is in no layer: add it to LAYERS in {__file__}")
    return best


GRAPH = {module: sorted(set(_imports(module, path)) - {module}) for module, path in MODULES.items()}


def test_every_module_has_a_layer() -> None:
    unplaced = []
    for module in MODULES:
        try:
            _layer_of(module)
        except AssertionError:
            unplaced.append(module)
    assert not unplaced, f"modules in no layer (add them to LAYERS): {unplaced}"


def test_imports_only_go_down() -> None:
    upward = [
        f"{module} ({LAYERS[_layer_of(module)][0]}) imports {target} "
        f"({LAYERS[_layer_of(target)][0]})"
        for module, targets in GRAPH.items()
        for target in targets
        if _layer_of(target) > _layer_of(module)
    ]
    assert not upward, "imports against the layering:\n" + "\n".join(upward)


def test_server_and_client_never_import_each_other() -> None:
    def side(module: str) -> str | None:
        return next(
            (s for s in SIBLINGS_THAT_NEVER_MEET if module == s or module.startswith(s + ".")),
            None,
        )

    crossing = [
        f"{module} imports {target}"
        for module, targets in GRAPH.items()
        for target in targets
        if side(module) and side(target) and side(module) != side(target)
    ]
    assert not crossing, "the two roles import each other:\n" + "\n".join(crossing)


def _cycles(graph: dict[str, list[str]]) -> list[list[str]]:
    """Strongly connected components with more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    components: list[list[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for target in graph.get(node, []):
            if target not in index:
                visit(target)
                low[node] = min(low[node], low[target])
            elif target in on_stack:
                low[node] = min(low[node], index[target])
        if low[node] == index[node]:
            component = []
            while True:
                member = stack.pop()
                on_stack.discard(member)
                component.append(member)
                if member == node:
                    break
            if len(component) > 1:
                components.append(sorted(component))

    for node in sorted(graph):
        if node not in index:
            visit(node)
    return components


def test_no_import_cycles() -> None:
    # a package's __init__ importing its own submodules is how packages export: not a cycle
    graph = {
        module: [t for t in targets if not t.startswith(module + ".")]
        for module, targets in GRAPH.items()
    }
    assert _cycles(graph) == [], "import cycles"


def test_the_cycle_finder_finds_cycles() -> None:
    assert _cycles({"a": ["b"], "b": ["c"], "c": ["a"], "d": ["a"]}) == [["a", "b", "c"]]


@pytest.mark.parametrize(
    "statement",
    [
        "from syft_flwr.server.engine import ServerEngine",
        "from syft_flwr.grid.syft_grid import SyftGrid",
        "from syft_flwr.client.runner import ClientRunner",
        "from syft_flwr.fl_orchestrator.syft_grid import SyftGrid",
        "from syft_flwr.fl_orchestrator import syftbox_flwr_server, syftbox_flwr_client",
        "from syft_flwr.services.auxiliary import AuxSender",
    ],
)
def test_documented_imports_work_on_a_fresh_interpreter(statement: str) -> None:
    result = subprocess.run(
        [sys.executable, "-c", statement], capture_output=True, text=True, timeout=120
    )
    assert result.returncode == 0, result.stderr


@pytest.mark.parametrize(
    ("old", "name", "new"),
    [
        ("syft_flwr.engine.server_engine", "ServerEngine", "syft_flwr.server.engine"),
        ("syft_flwr.engine.workspace", "Workspace", "syft_flwr.server.workspace"),
        ("syft_flwr.engine.workspace", "workspace_root", "syft_flwr.workspace_location"),
        ("syft_flwr.engine.events", "EngineEvent", "syft_flwr.events"),
        ("syft_flwr.engine.events", "EventBus", "syft_flwr.server.event_bus"),
    ],
)
def test_the_first_release_paths_still_work_and_warn(old: str, name: str, new: str) -> None:
    program = (
        "import importlib, warnings\n"
        "from syft_flwr.deprecation import SyftFlwrDeprecationWarning\n"
        "warnings.simplefilter('error', SyftFlwrDeprecationWarning)\n"
        f"try:\n    importlib.import_module({old!r})\n"
        "except DeprecationWarning as w:\n    print('WARNED', w)\n"
        "warnings.simplefilter('ignore')\n"
        f"old = getattr(importlib.import_module({old!r}), {name!r})\n"
        f"new = getattr(importlib.import_module({new!r}), {name!r})\n"
        "print('SAME', old is new)\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", program], capture_output=True, text=True, timeout=120
    )
    assert result.returncode == 0, result.stderr
    assert f"WARNED {old} moved to" in result.stdout, result.stdout
    assert "0.2.0" in result.stdout
    assert "SAME True" in result.stdout


def test_the_architecture_page_names_every_layer_and_module() -> None:
    page = (PACKAGE_DIR.parents[2] / "docs" / "architecture.md").read_text(encoding="utf-8")
    rows = {line.split("|")[1].strip(): line for line in page.splitlines() if line.startswith("| ")}
    for layer, modules in LAYERS:
        assert layer in rows, f"docs/architecture.md has no row for the layer {layer!r}"
        for module in modules:
            short = "syft_flwr" if module == "syft_flwr" else module.removeprefix("syft_flwr.")
            assert f"`{short}`" in rows[layer], f"docs/architecture.md: {short} not in {layer}"
