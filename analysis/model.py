"""What an analysis of one run is: the shared model of analysis/ (computed by stats,
written by outputs, drawn by plots, worldview and report, formatted by text)."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import networkx as nx

from generator.predict import Flow, Prediction
from generator.spec import RunSpec

Edge = tuple[int, int]
VERDICTS = ("OK", "EXPLAINED", "NOT OK", "NOT CHECKED")


@dataclass(frozen=True)
class Analysis:
    """The result of analysing one run. ``summary`` is exactly what summary.json holds."""

    run_dir: Path
    log_dir: Path
    summary: dict[str, Any]
    spec: RunSpec | None
    graph: nx.Graph  # the true topology (from the spec), or the inferred one
    prediction: Prediction | None
    observed: dict[Edge, Flow]  # directed edge (sender, receiver) -> frames, bytes
    views: dict[int, frozenset[Edge]]  # peer -> undirected edges (a < b) of its world view
    timeline: dict[int, list[tuple[float, int]]]  # peer -> (seconds since run start, cumulative recv)
    notes: list[str] = field(default_factory=list)  # what was skipped, and why
    files: list[Path] = field(default_factory=list)  # output files written so far

    @property
    def ok(self) -> bool:
        return bool(self.summary["ok"])

    @property
    def run_id(self) -> str:
        return self.summary["run_id"]

    @property
    def topology(self) -> str:
        return self.summary["topology"]

    @property
    def n(self) -> int:
        return self.summary["n"]

    @property
    def name(self) -> str:
        """``mesh-5`` style label; a real network's name follows, e.g. ``zoo-11 Abilene``."""
        network = dict(self.spec.params).get("name") if self.spec is not None else None
        return f"{self.topology}-{self.n}" + (f" {network}" if network else "")


def verdict_of(s: dict[str, Any]) -> tuple[str, bool]:
    """``(verdict, explained)`` of a summary: its own, or derived for a summary.json
    written before the analysis stored them."""
    verdict = s.get("verdict")
    if verdict is None:
        exp = s.get("expected_deliveries")
        if s.get("ok"):
            verdict = "OK"
        elif exp is None:
            verdict = "NOT CHECKED"
        elif s.get("prediction") == "upper_bound" and s["deliveries"] <= exp:
            verdict = "EXPLAINED"
        else:
            verdict = "NOT OK"
    explained = s.get("explained")
    if explained is None:
        explained = verdict in ("OK", "EXPLAINED")
    return verdict, bool(explained)
