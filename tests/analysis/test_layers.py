"""analysis/ imports in one direction: no module imports one that (transitively) imports it,
counting imports inside functions and under TYPE_CHECKING too, and no module imports another's
private (underscore) names, except from analysis._util, the package's private toolbox."""

from __future__ import annotations

import ast
from pathlib import Path

import networkx as nx

PKG = Path(__file__).resolve().parents[2] / "analysis"


def imports(path: Path) -> list[tuple[str, list[str]]]:
    """(module, names) for every `import analysis.x` / `from analysis.x import a, b` in the file."""
    out = []
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("analysis"):
            if node.module == "analysis":  # from analysis import logs
                out += [(f"analysis.{a.name}", []) for a in node.names]
            else:
                out.append((node.module, [a.name for a in node.names]))
        elif isinstance(node, ast.Import):
            out += [(a.name, []) for a in node.names if a.name.startswith("analysis.")]
    return out


def graph() -> nx.DiGraph:
    g = nx.DiGraph()
    for path in PKG.glob("*.py"):
        me = "analysis" if path.stem == "__init__" else f"analysis.{path.stem}"
        g.add_node(me)
        for mod, _ in imports(path):
            if mod != me:
                g.add_edge(me, mod)
    return g


def test_analysis_modules_import_in_one_direction():
    g = graph()
    cycles = list(nx.simple_cycles(g))
    assert cycles == [], cycles
    # The model and the text know nothing of the computation, the pictures or the files.
    for base in ("analysis.model", "analysis.text"):
        assert not set(nx.descendants(g, base)) & {"analysis.stats", "analysis.plots", "analysis.outputs"}


def test_no_private_names_across_modules():
    bad = []
    for path in PKG.glob("*.py"):
        for mod, names in imports(path):
            if mod == "analysis._util":
                continue
            bad += [f"{path.name}: from {mod} import {n}" for n in names if n.startswith("_")]
    assert bad == []
