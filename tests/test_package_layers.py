"""No package imports a package that imports it: the import graph between the parts of the code (each subpackage
of `link_fetcher`, each of its top-level modules, and `db`) has no cycle. Read with `ast`, so imports inside
functions and under TYPE_CHECKING count too."""

from __future__ import annotations

import ast
import collections
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
PACKAGES = {"link_fetcher": ROOT / "layers" / "core" / "link_fetcher", "db": ROOT / "layers" / "db" / "db"}

pytestmark = pytest.mark.unit

Graph = dict[str, dict[str, list[str]]]  # part -> imported part -> where ("path:line")


def module_name(path: Path) -> str:
    for package, directory in PACKAGES.items():
        if path.is_relative_to(directory):
            parts = path.relative_to(directory).with_suffix("").parts
            return ".".join((package, *(part for part in parts if part != "__init__")))
    raise AssertionError(path)


def part_of(module: str) -> str | None:
    """The node a module belongs to: `db`, `link_fetcher.<subpackage>` or `link_fetcher.<module>`; None outside."""
    names = module.split(".")
    if names[0] == "db":
        return "db"
    if names[0] != "link_fetcher":
        return None
    if len(names) == 1:
        return "link_fetcher"
    if (PACKAGES["link_fetcher"] / names[1]).is_dir() or (PACKAGES["link_fetcher"] / f"{names[1]}.py").exists():
        return f"link_fetcher.{names[1]}"
    return "link_fetcher"  # a name defined in the package's __init__


def imported_modules(tree: ast.Module, module: str, is_package: bool) -> list[tuple[str, int]]:
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found += [(alias.name, node.lineno) for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:  # relative: resolve against this module's package
                anchor = module.split(".")[: len(module.split(".")) - node.level + (1 if is_package else 0)]
                base = ".".join([*anchor, *([base] if base else [])])
            # `from pkg import name`: `name` may be a module of pkg; part_of() falls back to pkg when it is not.
            found += [(f"{base}.{alias.name}", node.lineno) for alias in node.names]
    return found


def import_graph() -> Graph:
    graph: Graph = collections.defaultdict(lambda: collections.defaultdict(list))
    for directory in PACKAGES.values():
        for path in sorted(directory.rglob("*.py")):
            module = module_name(path)
            source = part_of(module)
            assert source is not None
            tree = ast.parse(path.read_text(encoding="utf-8"), str(path))
            for imported, line in imported_modules(tree, module, path.name == "__init__.py"):
                target = part_of(imported)
                if target is not None and target != source:
                    graph[source][target].append(f"{path.relative_to(ROOT)}:{line}")
    return graph


def cycles(graph: Graph) -> list[list[str]]:
    """The strongly connected components of more than one node (Tarjan), each sorted."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for successor in graph.get(node, {}):
            if successor not in index:
                visit(successor)
                low[node] = min(low[node], low[successor])
            elif successor in on_stack:
                low[node] = min(low[node], index[successor])
        if low[node] == index[node]:
            component = []
            while True:
                member = stack.pop()
                on_stack.discard(member)
                component.append(member)
                if member == node:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for node in sorted(graph):
        if node not in index:
            visit(node)
    return found


def describe(graph: Graph, component: list[str]) -> str:
    members = set(component)
    edges = [
        f"  {source} -> {target} ({', '.join(list(dict.fromkeys(graph[source][target]))[:2])})"
        for source in component
        for target in sorted(graph[source])
        if target in members
    ]
    return " <-> ".join(component) + "\n" + "\n".join(edges)


def test_no_package_imports_a_package_that_imports_it() -> None:
    graph = import_graph()
    assert graph["link_fetcher.cdse"], "the graph was read (cdse imports something)"
    found = cycles(graph)
    assert not found, "import cycles between packages:\n" + "\n".join(describe(graph, c) for c in found)


def test_cdse_imports_no_source_and_db_nothing_of_link_fetcher() -> None:
    """The CDSE adapter sits below every source; `db` below everything."""
    graph = import_graph()
    sources = {"link_fetcher.fetching", "link_fetcher.push", "link_fetcher.subscriptions", "link_fetcher.stac"}
    assert not sources & set(graph["link_fetcher.cdse"])
    assert all(not target.startswith("link_fetcher") for target in graph["db"])


def test_a_cycle_is_found_and_named() -> None:
    graph: Graph = {
        "a": {"b": ["a.py:1"]},
        "b": {"c": ["b.py:2"]},
        "c": {"a": ["c.py:3"], "d": ["c.py:4"]},
        "d": {},
    }
    assert cycles(graph) == [["a", "b", "c"]]
    assert describe(graph, ["a", "b", "c"]).startswith("a <-> b <-> c\n  a -> b (a.py:1)")
