"""The module graph: no import cycles (a lazy import inside a function counts too), and the
runtime reads the compiler only through the Plan and the compiled artifact."""

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PACKAGES = {"genbac": "genbac", "genbac.spec": "spec", "genbac.compiler": "compiler",
            "genbac.compiler.targets": "compiler/targets", "genbac.runtime": "runtime"}
RUNTIME_MAY_IMPORT = {"genbac.compiler.plan", "genbac.compiler.artifact"}


def modules() -> dict[str, Path]:
    found = {}
    for package, folder in PACKAGES.items():
        for file in (ROOT / folder).glob("*.py"):
            found[package if file.stem == "__init__" else f"{package}.{file.stem}"] = file
    return found


def imports() -> dict[str, set[str]]:
    mods = modules()
    graph: dict[str, set[str]] = {name: set() for name in mods}
    for name, file in mods.items():
        package = name if file.stem == "__init__" else name.rsplit(".", 1)[0]
        for node in ast.walk(ast.parse(file.read_text())):
            if isinstance(node, ast.ImportFrom):
                base = package
                for _ in range(max(node.level - 1, 0)):
                    base = base.rsplit(".", 1)[0]
                target = (f"{base}.{node.module}" if node.module else base) if node.level \
                    else node.module
                # `from pkg import module` imports the module; `from pkg import name`, pkg
                candidates = [f"{target}.{a.name}" if f"{target}.{a.name}" in mods else target
                              for a in node.names]
            elif isinstance(node, ast.Import):
                candidates = [a.name for a in node.names]
            else:
                continue
            graph[name] |= {c for c in candidates if c in mods and c != name}
    return graph


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components of more than one module (Tarjan)."""
    index, low, stack, on, out, counter = {}, {}, [], set(), [], [0]

    def visit(v):
        index[v] = low[v] = counter[0]
        counter[0] += 1
        stack.append(v)
        on.add(v)
        for w in sorted(graph[v]):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                out.append(sorted(component))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return out


def test_the_graph_sees_imports():
    graph = imports()
    assert "genbac.compiler.artifact" in graph["genbac.runtime.executor"]
    assert "genbac.runtime.steps" in graph["genbac.runtime.executor"]
    assert cycles({"a": {"b"}, "b": {"a"}, "c": set()}) == [["a", "b"]]


def test_no_import_cycles():
    assert cycles(imports()) == []


def test_the_runtime_reads_the_compiler_through_the_plan_and_the_artifact():
    graph = imports()
    used = {target for name, targets in graph.items() if name.startswith("genbac.runtime.")
            for target in targets if target.startswith("genbac.compiler")}
    assert used <= RUNTIME_MAY_IMPORT, used - RUNTIME_MAY_IMPORT
