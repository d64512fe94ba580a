"""World views (docs/design.md, "World view"): what each peer can tell about the topology from its log.

Peer p's world view is the graph on the hop lists it received: for each message
with hops [h1..hk], the edges h1–h2, …, hk–p. It is compared with the true
topology: *missing* edges are in the topology but not in the view, *extra* edges
are in the view but not in the topology.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import networkx as nx

from analysis._util import atomic_write, dump_json

if TYPE_CHECKING:
    from analysis.model import Analysis

Edge = tuple[int, int]


@dataclass(frozen=True)
class ViewDiff:
    peer: int
    edges: int
    missing: tuple[Edge, ...]
    extra: tuple[Edge, ...]

    @property
    def complete(self) -> bool:
        return not self.missing and not self.extra


def canonical_edges(graph: nx.Graph) -> set[Edge]:
    return {(a, b) if a < b else (b, a) for a, b in graph.edges}


def compare_views(graph: nx.Graph, views: dict[int, frozenset[Edge]]) -> dict[int, ViewDiff]:
    """Missing and extra edges of each peer's view against ``graph``."""
    true = canonical_edges(graph)
    return {
        p: ViewDiff(p, len(v), tuple(sorted(true - v)), tuple(sorted(v - true)))
        for p, v in views.items()
    }


def view_graph(analysis: Analysis, peer: int) -> nx.Graph:
    """Peer's view as a graph; each edge has ``status`` 'seen' or 'extra'."""
    true = canonical_edges(analysis.graph)
    g = nx.Graph(name=f"world view of peer {peer}")
    g.add_nodes_from(sorted({peer, *(x for e in analysis.views[peer] for x in e)}))
    for a, b in sorted(analysis.views[peer]):
        g.add_edge(a, b, status="seen" if (a, b) in true else "extra")
    return g


def topology_graph(analysis: Analysis) -> nx.Graph:
    """The true topology with observed traffic per edge (a < b; 'ab' = a→b)."""
    g = nx.Graph(name=f"{analysis.name} topology")
    g.add_nodes_from(range(analysis.n))
    for a, b in sorted(canonical_edges(analysis.graph)):
        ab = analysis.observed.get((a, b))
        ba = analysis.observed.get((b, a))
        g.add_edge(
            a,
            b,
            frames_ab=ab.frames if ab else 0,
            bytes_ab=ab.bytes if ab else 0,
            frames_ba=ba.frames if ba else 0,
            bytes_ba=ba.bytes if ba else 0,
            bytes=(ab.bytes if ab else 0) + (ba.bytes if ba else 0),
        )
    return g


def worldview_dict(analysis: Analysis) -> dict[str, Any]:
    diffs = compare_views(analysis.graph, analysis.views)
    true = sorted(canonical_edges(analysis.graph))
    return {
        "run_id": analysis.run_id,
        "topology": analysis.topology,
        "n": analysis.n,
        "topology_edges": [list(e) for e in true],
        "peers": [
            {
                "id": p,
                "complete": d.complete,
                "edges": [list(e) for e in sorted(analysis.views[p])],
                "missing": [list(e) for e in d.missing],
                "extra": [list(e) for e in d.extra],
            }
            for p, d in sorted(diffs.items())
        ],
    }


def _graphml(g: nx.Graph) -> str:
    return "\n".join(nx.generate_graphml(g)) + "\n"


def write_worldview(analysis: Analysis) -> list[Path]:
    """worldview.json, worldview/topology.graphml and worldview/peer-<id>.graphml."""
    run_dir = analysis.run_dir
    written = [atomic_write(run_dir / "worldview.json", dump_json(worldview_dict(analysis)))]
    wv = run_dir / "worldview"
    written.append(atomic_write(wv / "topology.graphml", _graphml(topology_graph(analysis))))
    for p in sorted(analysis.views):
        written.append(atomic_write(wv / f"peer-{p}.graphml", _graphml(view_graph(analysis, p))))
    return written
