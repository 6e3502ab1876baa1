"""No import loop in `auditor/`: the graph is read from the source, so imports inside
functions and under TYPE_CHECKING count too (a loop hidden there still ties the modules
together, and breaks as soon as someone moves the import up)."""

from __future__ import annotations

import ast
from collections.abc import Collection, Mapping
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[2] / "auditor"


def module_names(root: Path) -> dict[str, Path]:
    """Dotted name -> file of every module of the package (a package is its __init__)."""
    names: dict[str, Path] = {}
    for path in sorted(root.rglob("*.py")):
        parts = path.relative_to(root.parent).with_suffix("").parts
        if parts[-1] == "__init__":
            parts = parts[:-1]
        names[".".join(parts)] = path
    return names


def imported(
    node: ast.Import | ast.ImportFrom, module: str, is_package: bool, modules: Collection[str]
) -> set[str]:
    """The modules one import statement runs: `from a import b` runs `a.b` when that is a
    module and `a` otherwise, and importing `a.b` runs the package `a` first, unless the
    importer lies inside `a` (then `a` is already loading)."""
    own = module.split(".") if is_package else module.split(".")[:-1]
    if isinstance(node, ast.Import):
        names = [alias.name for alias in node.names]
    else:
        base = node.module or ""
        if node.level:
            anchor = own[: len(own) - node.level + 1]
            base = ".".join([*anchor, base] if base else anchor)
        names = [
            f"{base}.{alias.name}" if f"{base}.{alias.name}" in modules else base
            for alias in node.names
        ]
    inside = {".".join(own[:n]) for n in range(1, len(own) + 1)}
    parents = {".".join(n.split(".")[:k]) for n in names for k in range(1, n.count(".") + 1)}
    return {m for m in {*names, *(parents - inside)} if m in modules and m != module}


def import_graph(root: Path) -> dict[str, set[str]]:
    modules = module_names(root)
    graph: dict[str, set[str]] = {name: set() for name in modules}
    for name, path in modules.items():
        tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
        is_package = path.name == "__init__.py"
        for node in ast.walk(tree):
            if isinstance(node, (ast.Import, ast.ImportFrom)):
                graph[name] |= imported(node, name, is_package, modules)
    return graph


def tangles(graph: Mapping[str, set[str]]) -> list[list[str]]:
    """The strongly connected components of more than one module (Tarjan): modules that
    import each other, directly or not."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    components: list[list[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for target in sorted(graph[node]):
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


def loop_through(graph: Mapping[str, set[str]], component: list[str]) -> list[str]:
    """A shortest path from the component's first module back to itself, inside it."""
    start = component[0]
    members = set(component)
    paths = {start: [start]}
    queue = [start]
    for node in queue:
        for target in sorted(graph[node] & members):
            if target == start:
                return [*paths[node], start]
            if target not in paths:
                paths[target] = [*paths[node], target]
                queue.append(target)
    raise AssertionError(f"no loop through {component}")  # pragma: no cover


def described(graph: Mapping[str, set[str]], tangle: list[str]) -> str:
    return " -> ".join(loop_through(graph, tangle)) + f" (modules in the loop: {', '.join(tangle)})"


def test_auditor_has_no_import_loop() -> None:
    graph = import_graph(PACKAGE)
    loops = [described(graph, tangle) for tangle in tangles(graph)]
    assert not loops, "import loops in auditor/:\n" + "\n".join(loops)


def test_a_loop_is_named(tmp_path: Path) -> None:
    package = tmp_path / "pkg"
    (package / "sub").mkdir(parents=True)
    (package / "__init__.py").write_text("")
    (package / "a.py").write_text("if TYPE_CHECKING:\n    from pkg.sub import b\n")
    (package / "sub" / "__init__.py").write_text("")
    (package / "sub" / "b.py").write_text("def f():\n    from . import c\n")
    (package / "sub" / "c.py").write_text("import pkg.a\nfrom pkg.sub import X\n")
    (package / "d.py").write_text("from pkg import a\nfrom pkg.sub.b import f\n")

    graph = import_graph(package)

    assert graph["pkg.d"] == {"pkg.a", "pkg.sub", "pkg.sub.b"}
    assert graph["pkg.sub.b"] == {"pkg.sub.c"}
    assert graph["pkg.sub.c"] == {"pkg.a", "pkg.sub"}
    assert tangles(graph) == [["pkg.a", "pkg.sub.b", "pkg.sub.c"]]
    assert described(graph, tangles(graph)[0]) == (
        "pkg.a -> pkg.sub.b -> pkg.sub.c -> pkg.a "
        "(modules in the loop: pkg.a, pkg.sub.b, pkg.sub.c)"
    )
