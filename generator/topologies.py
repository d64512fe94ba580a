"""Topology families: pure functions ``<name>_graph(n, seed=None) -> nx.Graph``.

Nodes are the peer ids ``0..n-1``. A size that makes a family degenerate is a
``TopologyError``, never a silent fix.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import networkx as nx

from generator.errors import TopologyError


def cycle_graph(n: int, seed: int | None = None) -> nx.Graph:
    """Ring: peer i linked to (i-1)%n and (i+1)%n. Needs n >= 3."""
    _require(n >= 3, "cycle", n, "a cycle needs at least 3 peers")
    return nx.cycle_graph(n)


def mesh_graph(n: int, seed: int | None = None) -> nx.Graph:
    """Complete graph K_n. Needs n >= 2."""
    _require(n >= 2, "mesh", n, "a mesh needs at least 2 peers")
    return nx.complete_graph(n)


def starfish_graph(n: int, seed: int | None = None) -> nx.Graph:
    """Circulant C_n(2,3): peer i linked to (i+2)%n and (i+3)%n.

    For n=5 this is the pentagram 0-2-4-1-3-0; degree 4 for n >= 7 (n=6 has degree 3
    because +3 and -3 coincide). n <= 3 would need self-loops (3 % 3 == 0) and is
    rejected.
    """
    _require(n >= 4, "starfish", n, "jump 3 would link a peer to itself; starfish needs at least 4 peers")
    g = nx.Graph()
    g.add_nodes_from(range(n))
    for i in range(n):
        g.add_edge(i, (i + 2) % n)
        g.add_edge(i, (i + 3) % n)
    return g


@dataclass(frozen=True)
class Family:
    """A named topology constructor and what it needs."""

    name: str
    build: Callable[..., nx.Graph]
    min_n: int
    description: str


FAMILIES: dict[str, Family] = {
    "cycle": Family("cycle", cycle_graph, 3, "ring; peer i linked to i±1"),
    "mesh": Family("mesh", mesh_graph, 2, "complete graph"),
    "starfish": Family("starfish", starfish_graph, 4, "circulant C_N(2,3); pentagram for N=5"),
}


def parse_topology(text: str, n: int | None = None) -> tuple[str, int]:
    """Parse ``"mesh,7"`` / ``"mesh"`` (+ n) into ``(family, n)``."""
    name, _, size = text.partition(",")
    name = name.strip().lower()
    if name not in FAMILIES:
        raise TopologyError(f"unknown topology {name!r}; known: {', '.join(sorted(FAMILIES))}")
    if size:
        try:
            parsed = int(size)
        except ValueError as e:
            raise TopologyError(f"topology size must be an integer, got {size!r}") from e
        if n is not None and n != parsed:
            raise TopologyError(f"conflicting sizes: {text!r} and -n {n}")
        n = parsed
    return name, 5 if n is None else n


def build_graph(name: str, n: int, seed: int | None = None) -> nx.Graph:
    """Look up a family by name and build it; the result is checked to be connected."""
    try:
        family = FAMILIES[name]
    except KeyError as e:
        raise TopologyError(f"unknown topology {name!r}; known: {', '.join(sorted(FAMILIES))}") from e
    g = family.build(n, seed=seed)
    if not nx.is_connected(g):
        raise TopologyError(f"{name}-{n} is not connected")
    return g


def _require(cond: bool, name: str, n: int, why: str) -> None:
    if not cond:
        raise TopologyError(f"{name}-{n} is degenerate: {why}")
