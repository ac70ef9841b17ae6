"""The code's shape. The import graph runs one way: no module imports itself through others, no package of moclip
imports another that imports it back, and no import runs up a floor. The library (moclip/) imports neither Prefect
nor Dask. Flows read like the pipeline diagram: no function in flows/ is longer than 40 lines.

    settings -> corpus/video/clip -> indexing/dataset -> models/inference/train -> label/report -> tasks -> flows

Every import counts: at the top of a module, inside a function, or under ``TYPE_CHECKING``.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
LAYERS = [  # lowest first; a module may import its own floor and those below
    ["moclip.config", "moclip.precision", "moclip.files", "moclip.progress", "moclip.vocabulary", "moclip.runplan"],
    ["moclip.corpus", "moclip.video", "moclip.clip", "moclip.demo"],
    ["moclip.indexing", "moclip.sharding", "moclip.dataset", "moclip.zeroshot", "moclip.bundle"],
    ["moclip.models", "moclip.inference", "moclip.train", "moclip.params"],
    ["moclip.label", "moclip.report", "moclip.search", "moclip.review"],
    ["tasks"],
    ["flows"],
]


def modules() -> dict[str, Path]:
    found = {}
    for top in ("moclip", "tasks", "flows"):
        for f in (REPO / top).rglob("*.py"):
            name = ".".join(f.relative_to(REPO).with_suffix("").parts)
            found[name.removesuffix(".__init__")] = f
    return found


def imports(mods: dict[str, Path]) -> dict[str, set[str]]:
    """module -> the project's modules it imports (``from a.b import c``: ``a.b.c`` when that is a module)."""
    def known(name: str) -> str | None:
        while name and name not in mods:
            name = name.rpartition(".")[0]
        return name or None

    graph: dict[str, set[str]] = {m: set() for m in mods}
    for m, f in mods.items():
        package = m if f.name == "__init__.py" else m.rpartition(".")[0]
        for node in ast.walk(ast.parse(f.read_text(), str(f))):
            targets: list[str] = []
            if isinstance(node, ast.Import):
                targets = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom):
                base = node.module or ""
                if node.level:
                    parts = package.split(".")[:len(package.split(".")) - node.level + 1]
                    base = ".".join(parts + ([base] if base else []))
                targets = [f"{base}.{a.name}" if f"{base}.{a.name}" in mods else base for a in node.names]
            graph[m] |= {t for t in map(known, targets) if t and t != m}
    return graph


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components of more than one node (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on: set[str] = set()
    out: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on.add(v)
        for w in graph.get(v, ()):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on.discard(w)
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                out.append(sorted(comp))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return out


def floor(module: str) -> int | None:
    return max((i for i, names in enumerate(LAYERS) for n in names if module == n or module.startswith(n + ".")),
               default=None)


def package(module: str) -> str:
    parts = module.split(".")
    return ".".join(parts[:2]) if parts[0] == "moclip" else parts[0]


@pytest.fixture(scope="module")
def graph() -> dict[str, set[str]]:
    return imports(modules())


def test_no_module_imports_itself_through_others(graph):
    assert cycles(graph) == []


def test_no_two_packages_import_each_other(graph):
    packages: dict[str, set[str]] = {}
    for a, targets in graph.items():
        packages.setdefault(package(a), set()).update(package(b) for b in targets if package(b) != package(a))
    assert cycles(packages) == []


def test_every_module_has_a_floor_and_no_import_runs_up(graph):
    assert [m for m in graph if m != "moclip" and floor(m) is None] == []
    up = [f"{a} (floor {floor(a)}) imports {b} (floor {floor(b)})" for a, targets in graph.items() for b in targets
          if a != "moclip" and b != "moclip" and floor(b) > floor(a)]
    assert up == []


def test_the_library_imports_neither_prefect_nor_dask():
    found = []
    for name, f in modules().items():
        if not name.startswith("moclip"):
            continue
        for node in ast.walk(ast.parse(f.read_text())):
            names = [a.name for a in node.names] if isinstance(node, ast.Import) else (
                [node.module or ""] if isinstance(node, ast.ImportFrom) else [])
            found += [f"{name}: {n}" for n in names if n.split(".")[0] in ("prefect", "dask", "distributed")]
    assert found == []


def test_the_checks_fire_on_a_cycle_and_an_upward_import():
    assert cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]
    assert floor("moclip.config") < floor("moclip.video.extract") < floor("flows.cli")
    assert floor("moclip.nowhere") is None


def long_functions(path: Path, limit: int) -> list[str]:
    tree = ast.parse(path.read_text(), str(path))
    return [f"{path.name}:{n.lineno} {n.name} ({n.end_lineno - n.lineno + 1} lines)" for n in ast.walk(tree)
            if isinstance(n, (ast.FunctionDef, ast.AsyncFunctionDef)) and n.end_lineno - n.lineno + 1 > limit]


def test_no_flow_function_is_longer_than_40_lines(tmp_path):
    assert [f for path in sorted((REPO / "flows").glob("*.py")) for f in long_functions(path, 40)] == []
    long = tmp_path / "long.py"  # the check fires
    long.write_text("def f():\n" + "    x = 1\n" * 41)
    assert long_functions(long, 40) == ["long.py:1 f (42 lines)"]
