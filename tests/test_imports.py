"""The import graph of our packages, read from the source with ``ast``: every ``import``
and ``from ... import`` statement, those inside functions included (a lazy import is
still a dependency).

Layers: peer <- generator <- (analysis, testbed). peer imports none of the others,
generator imports only peer (never testbed, analysis or docker), analysis never imports
testbed; testbed may import analysis (``p2p run`` and ``p2p analyse`` analyse a run).
"""

from __future__ import annotations

import ast
from collections import defaultdict
from functools import cache
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("peer", "generator", "testbed", "analysis")

# (importer, imported) package pairs that are allowed; anything else between our packages fails.
ALLOWED = {
    ("generator", "peer"),
    ("analysis", "peer"),
    ("analysis", "generator"),
    ("testbed", "peer"),
    ("testbed", "generator"),
    ("testbed", "analysis"),
}


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


@cache
def _modules() -> dict[str, Path]:
    return {_module_name(p): p for pkg in PACKAGES for p in sorted((ROOT / pkg).rglob("*.py"))}


def _imported(module: str, path: Path) -> set[str]:
    """Every name ``module`` imports: modules (``from pkg import sub`` gives ``pkg.sub``)."""
    modules = _modules()
    is_package = path.name == "__init__.py"
    out: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
        if isinstance(node, ast.Import):
            out.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:  # relative: resolve against this module's package
                base = module.split(".")
                if not is_package:
                    base = base[:-1]
                base = base[: len(base) - (node.level - 1)]
                source = ".".join(base + ([node.module] if node.module else []))
            else:
                source = node.module or ""
            out.add(source)
            for alias in node.names:
                if f"{source}.{alias.name}" in modules:
                    out.add(f"{source}.{alias.name}")
    return out


@cache
def module_graph() -> dict[str, frozenset[str]]:
    """Our module -> the modules of ours (and external top-level names) it imports."""
    return {m: frozenset(_imported(m, p)) for m, p in _modules().items()}


def package_graph() -> dict[str, set[str]]:
    graph: dict[str, set[str]] = defaultdict(set)
    for module, imports in module_graph().items():
        src = module.split(".")[0]
        for target in imports:
            dst = target.split(".")[0]
            if dst in PACKAGES and dst != src:
                graph[src].add(dst)
    return graph


def _cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """One cycle of ``graph`` as a path (first node repeated at the end), or None."""
    state: dict[str, int] = {}  # 1: on the stack, 2: done
    stack: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = 1
        stack.append(node)
        for nxt in sorted(graph.get(node, ())):
            if state.get(nxt) == 1:
                return stack[stack.index(nxt):] + [nxt]
            if nxt not in state:
                found = visit(nxt)
                if found:
                    return found
        stack.pop()
        state[node] = 2
        return None

    for node in sorted(graph):
        if node not in state:
            found = visit(node)
            if found:
                return found
    return None


def test_every_package_is_read():
    modules = module_graph()
    for pkg in PACKAGES:
        assert pkg in modules, pkg
    assert "generator.expect" in modules and "testbed.cli" in modules and "testbed.sweep" in modules


def test_package_graph_follows_the_layers():
    graph = package_graph()
    edges = {(src, dst) for src, dsts in graph.items() for dst in dsts}
    assert edges - ALLOWED == set(), f"imports against the layers peer <- generator <- (analysis, testbed): {edges}"
    assert _cycle(graph) is None
    assert not graph.get("peer")
    assert graph.get("generator", set()) <= {"peer"}


def test_generator_imports_neither_testbed_nor_docker():
    for module, imports in module_graph().items():
        if module.split(".")[0] in ("generator", "peer"):
            bad = {m for m in imports if m.split(".")[0] in ("testbed", "analysis", "docker")}
            assert not bad, f"{module} imports {sorted(bad)}"


def test_cli_and_sweep_do_not_import_each_other():
    graph = module_graph()
    assert "testbed.cli" not in graph["testbed.sweep"]
    assert not ("testbed.sweep" in graph["testbed.cli"] and "testbed.cli" in graph["testbed.sweep"])


def test_prediction_has_one_entry_point_outside_the_cli():
    graph = module_graph()
    for module in ("testbed.cli", "testbed.sweep"):
        assert "generator.expect" in graph[module], module


def test_no_module_cycle_in_peer_generator_testbed():
    """Module-level cycles inside peer, generator and testbed (analysis/ is checked on its own)."""
    ours = module_graph()
    # ``from pkg import sub`` also names pkg/__init__.py; that edge from a submodule to its
    # own package's __init__ is not a cycle of interest.
    graph = {m: {t for t in imports if t in ours and t != m and not (t == m.split(".")[0] and "." in m)}
             for m, imports in ours.items() if m.split(".")[0] != "analysis"}
    assert _cycle(graph) is None, _cycle(graph)


def test_the_cycle_finder_finds_cycles():
    assert _cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert _cycle({"a": {"b"}, "b": set(), "c": {"a", "b"}}) is None
