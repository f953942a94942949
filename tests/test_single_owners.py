"""One home for what every transport shares: the Flower bridge and the address checks.

Transports move opaque bytes, so no plugin imports Flower or protobuf (compatibility with
syft-flwr 0.5.x goes through :mod:`syft_flwr.wire.flower_proto`), and every address check is
:mod:`syft_flwr.addresses` with options, never a plugin's own copy with other rules.
"""

from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
TRANSPORT_SOURCES = [
    *sorted(ROOT.glob("plugins/*/src/*")),
    *sorted(ROOT.glob("examples/*/src/*")),
]
BRIDGE = ROOT / "core/src/syft_flwr/wire/flower_proto.py"
ADDRESSES = ROOT / "core/src/syft_flwr/addresses.py"
ADDRESS_CHECKS = {"check_datasite", "check_app", "check_endpoint", "check_request_id"}


def modules(*folders: Path) -> Iterator[tuple[Path, ast.Module]]:
    for folder in folders:
        for path in sorted(folder.rglob("*.py")):
            yield path, ast.parse(path.read_text(encoding="utf-8"), str(path))


def imported(tree: ast.Module) -> set[str]:
    names: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module:
            names.add(node.module)
    return names


def test_there_are_transport_sources_to_check() -> None:
    assert len(TRANSPORT_SOURCES) >= 4, TRANSPORT_SOURCES


def test_no_transport_imports_flower_or_protobuf() -> None:
    offenders = {
        f"{path.relative_to(ROOT)}: {name}"
        for path, tree in modules(*TRANSPORT_SOURCES)
        for name in imported(tree)
        if name.split(".")[0] == "flwr" or name.startswith("google.protobuf")
    }
    assert not offenders, f"use syft_flwr.wire.flower_proto instead: {sorted(offenders)}"


def test_flowers_protobuf_serde_is_used_in_one_core_module() -> None:
    users = {
        path.relative_to(ROOT)
        for path, tree in modules(ROOT / "core/src/syft_flwr")
        if any(name in ("flwr.common.serde", "flwr.proto.message_pb2") for name in imported(tree))
    }
    assert users == {BRIDGE.relative_to(ROOT)}


def test_address_checks_are_defined_once() -> None:
    definitions = {
        f"{path.relative_to(ROOT)}: {node.name}"
        for path, tree in modules(ROOT / "core/src", *TRANSPORT_SOURCES)
        for node in ast.walk(tree)
        if isinstance(node, ast.FunctionDef) and node.name in ADDRESS_CHECKS
    }
    expected = {f"{ADDRESSES.relative_to(ROOT)}: {name}" for name in ADDRESS_CHECKS}
    assert definitions == expected, "use syft_flwr.addresses (with options) instead of a copy"
