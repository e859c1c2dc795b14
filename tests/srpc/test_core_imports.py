"""The SRPC core's import graph: pure modules stay pure, and no module imports in a circle."""

from __future__ import annotations

import ast
from pathlib import Path

import meshsrpc.srpc

SRPC = Path(meshsrpc.srpc.__file__).parent
PACKAGE = "meshsrpc.srpc"

PURE = ["protocol", "bytestream_book", "frames", "messagecodec", "protowire"]
"""Modules without I/O: no event loop, no clock, no socket."""
ID_SOURCE = "ids"
"""uuid7 request ids read the clock: the protocol's default id source, replaceable."""
IO_MODULES = {"asyncio", "time", "socket", "selectors", "threading"}

# None left: the transports reach the server through transports/base.py alone.
KNOWN_CYCLES: list[set[str]] = []


def module_name(path: Path) -> str:
    parts = path.relative_to(SRPC).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def imports_of(path: Path) -> set[str]:
    """Every module of the package that ``path`` imports, TYPE_CHECKING and local ones too."""
    name = module_name(path)
    package = name.split(".")[:-1] if path.name != "__init__.py" else name.split(".")
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.level:
            base = package[: len(package) - node.level + 1] if node.level > 1 else package
            target = ".".join([*base, *([node.module] if node.module else [])])
            for alias in node.names:
                found.add(f"{target}.{alias.name}".strip("."))
                found.add(target)
        elif isinstance(node, ast.ImportFrom) and (node.module or "").startswith(PACKAGE + "."):
            found.add(node.module[len(PACKAGE) + 1 :])  # type: ignore[index]
    return found


def graph() -> dict[str, set[str]]:
    modules = {module_name(path): path for path in SRPC.rglob("*.py")}
    return {
        name: {other for other in imports_of(path) if other in modules and other != name}
        for name, path in modules.items()
    }


def strongly_connected(edges: dict[str, set[str]]) -> list[set[str]]:
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    found: list[set[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        for other in edges[node]:
            if other not in index:
                visit(other)
                low[node] = min(low[node], low[other])
            elif other in stack:
                low[node] = min(low[node], index[other])
        if low[node] == index[node]:
            component = set()
            while True:
                top = stack.pop()
                component.add(top)
                if top == node:
                    break
            if len(component) > 1:
                found.append(component)

    for node in edges:
        if node not in index:
            visit(node)
    return found


def test_no_module_of_the_srpc_package_imports_in_a_circle() -> None:
    cycles = strongly_connected(graph())
    assert [cycle for cycle in cycles if cycle not in KNOWN_CYCLES] == []


def test_bytestream_and_session_do_not_import_each_other() -> None:
    edges = graph()
    assert "session" not in edges["bytestream"]
    assert "bytestream" in edges["session"]


def test_pure_modules_import_no_io() -> None:
    for name in PURE:
        tree = ast.parse((SRPC / f"{name}.py").read_text())
        imported = {
            alias.name.split(".")[0]
            for node in ast.walk(tree)
            if isinstance(node, ast.Import)
            for alias in node.names
        } | {
            (node.module or "").split(".")[0]
            for node in ast.walk(tree)
            if isinstance(node, ast.ImportFrom) and not node.level
        }
        assert imported & IO_MODULES == set(), name


def test_pure_modules_import_only_pure_modules_of_the_package() -> None:
    edges = graph()
    for name in PURE:
        assert edges[name] <= {*PURE, ID_SOURCE}, name
