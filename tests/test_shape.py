"""Functions a reader can hold in their head: none in the product packages is longer than
MAX_LINES (ruff holds their complexity at 15, pyproject.toml)."""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("peer", "generator", "testbed", "analysis")
MAX_LINES = 80


def test_no_function_is_longer_than_the_limit():
    long = []
    for pkg in PACKAGES:
        for path in sorted((ROOT / pkg).rglob("*.py")):
            for node in ast.walk(ast.parse(path.read_text())):
                if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                    size = node.end_lineno - node.lineno + 1
                    if size > MAX_LINES:
                        long.append(f"{path.relative_to(ROOT)}:{node.lineno} {node.name} ({size} lines)")
    assert long == []


def test_no_private_name_is_imported_across_modules():
    """A name with a leading underscore stays in its module (analysis._util, the analysis
    package's private toolbox, is the one shared private module)."""
    crossing = []
    for pkg in PACKAGES:
        for path in sorted((ROOT / pkg).rglob("*.py")):
            for node in ast.walk(ast.parse(path.read_text())):
                if isinstance(node, ast.ImportFrom) and node.module and node.module.split(".")[0] in PACKAGES:
                    if node.module == "analysis._util":
                        continue
                    crossing += [f"{path.relative_to(ROOT)}: {node.module}.{a.name}" for a in node.names
                                 if a.name.startswith("_")]
    assert crossing == []
