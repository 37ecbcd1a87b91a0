"""The import map of ARCHITECTURE.md, checked statically (``ast``; nothing is imported).

Every ``import`` of a project module counts, at the top of a module or inside a function:
a function-local import still makes a cycle, only a later one.  Run as a script
(``python tests/test_architecture.py``) it prints the cycles and the function-local imports of
project modules, the figures ARCHITECTURE.md and the closing notes cite.
"""

from __future__ import annotations

import ast
import functools
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
#: The project's packages, in the order imports may run: each may import only those after it.
PACKAGES = ("workflows", "public_data", "models")


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def project_modules() -> dict[str, Path]:
    """Every module of the project's packages, by dotted name."""
    return {_module_name(path): path
            for package in PACKAGES if (ROOT / package).is_dir()
            for path in sorted((ROOT / package).rglob("*.py"))}


def _is_type_checking(node: ast.If) -> bool:
    test = node.test
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING")


def _imports(tree: ast.AST, in_function: bool = False):
    """(node, in_function) for every import that runs, skipping ``if TYPE_CHECKING:`` blocks."""
    for node in ast.iter_child_nodes(tree):
        if isinstance(node, ast.If) and _is_type_checking(node):
            continue
        if isinstance(node, (ast.Import, ast.ImportFrom)):
            yield node, in_function
        inner = in_function or isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef,
                                                 ast.Lambda))
        yield from _imports(node, inner)


def _targets(node: ast.Import | ast.ImportFrom, modules: dict[str, Path],
             importer: str) -> set[str]:
    """The project modules an import statement loads (a package's submodules by name)."""
    if isinstance(node, ast.Import):
        names = [alias.name for alias in node.names]
    else:
        base = node.module or ""
        if node.level:
            package = importer.split(".")
            if modules[importer].name != "__init__.py":
                package = package[:-1]
            package = package[:len(package) - (node.level - 1)]
            base = ".".join(package + ([base] if base else []))
        names = [f"{base}.{alias.name}" if f"{base}.{alias.name}" in modules else base
                 for alias in node.names]
    found = set()
    for name in names:
        while name and name not in modules:
            name = name.rpartition(".")[0]
        if name and name != importer:
            found.add(name)
    return found


@functools.lru_cache(maxsize=1)
def import_graph() -> tuple[dict[str, set[str]], list[tuple[str, int, str]]]:
    """Edges importer -> imported among project modules, and the function-local imports
    (importer, line, imported)."""
    modules = project_modules()
    graph: dict[str, set[str]] = {name: set() for name in modules}
    local: list[tuple[str, int, str]] = []
    for name, path in modules.items():
        tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
        for node, in_function in _imports(tree):
            for target in sorted(_targets(node, modules, name)):
                graph[name].add(target)
                if in_function:
                    local.append((name, node.lineno, target))
    return graph, local


def import_cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected components with more than one module (Tarjan), each sorted."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    cycles: list[list[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for succ in sorted(graph[node]):
            if succ not in index:
                visit(succ)
                low[node] = min(low[node], low[succ])
            elif succ in on_stack:
                low[node] = min(low[node], index[succ])
        if low[node] == index[node]:
            component = []
            while True:
                member = stack.pop()
                on_stack.discard(member)
                component.append(member)
                if member == node:
                    break
            if len(component) > 1:
                cycles.append(sorted(component))

    for node in sorted(graph):
        if node not in index:
            visit(node)
    return sorted(cycles)


def test_no_import_cycles():
    graph, _ = import_graph()
    assert import_cycles(graph) == []


#: The workbench's file-safety pieces that the public-data builds use too; they import nothing
#: of the project but each other, so using them makes no cycle.
SHARED = ("workflows.atomic", "workflows.errors", "workflows.paths")


def test_models_never_import_workflows_or_public_data():
    graph, _ = import_graph()
    assert sorted((importer, target) for importer, targets in graph.items() if importer.startswith("models")
                  for target in targets if not target.startswith("models")) == []


def test_imports_run_one_way():
    """workflows -> public_data -> models; public_data uses only the shared pieces of workflows."""
    graph, _ = import_graph()
    rank = {package: i for i, package in enumerate(PACKAGES)}
    backwards = sorted((importer, target) for importer, targets in graph.items()
                       for target in targets
                       if rank[target.split(".")[0]] < rank[importer.split(".")[0]]
                       and not (importer.startswith("public_data") and target in SHARED))
    assert backwards == []
    assert all(target in SHARED for shared in SHARED for target in graph[shared])


def test_the_graph_sees_the_project():
    """The checks above are empty for the right reason: the modules and edges are found."""
    graph, _ = import_graph()
    assert "workflows.cli" in graph and "models.sampling" in graph
    assert "public_data.panel" in graph
    assert "models.vocabulary" in graph["models.extract_schema"]


if __name__ == "__main__":
    graph, local = import_graph()
    cycles = import_cycles(graph)
    print(f"{len(graph)} modules, {sum(map(len, graph.values()))} import edges")
    print(f"import cycles: {len(cycles)}")
    for cycle in cycles:
        print("  " + " <-> ".join(cycle))
    print(f"function-local imports of project modules: {len(local)}")
    for importer, line, target in local:
        print(f"  {importer}:{line} -> {target}")
