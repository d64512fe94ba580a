"""Fault timeline of a run spec: kill, pause, resume, restart peers; partition, heal edges.

Spelling (CLI ``--fault``, repeatable)::

    ACTION:TARGETS@WHEN
    kill:3@0                  kill peer 3 right after it is started (before it can author)
    kill:3@deliveries=20000   kill peer 3 once the run has made 20,000 deliveries
    pause:2@0.5  resume:2@1.5 freeze / thaw peer 2 (seconds after the first peer started)
    restart:3@2               kill peer 3 if alive and start it again
    partition:0-1,2-3@0.2     drop every frame over edges 0–1 and 2–3 ...
    heal:0-1@1                ... until healed
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import networkx as nx

from generator.errors import SpecError
from peer.emulation import is_number, show_value

PEER_ACTIONS = ("kill", "pause", "resume", "restart")
EDGE_ACTIONS = ("partition", "heal")


def _is_int(x: object) -> bool:
    return isinstance(x, int) and not isinstance(x, bool)


@dataclass(frozen=True)
class Fault:
    """One timed fault. Exactly one of ``at`` (seconds) and ``after_deliveries`` is set."""

    action: str
    peers: tuple[int, ...] = ()
    edges: tuple[tuple[int, int], ...] = ()
    at: float | None = None
    after_deliveries: int | None = None

    def __post_init__(self) -> None:
        if self.action not in PEER_ACTIONS + EDGE_ACTIONS:
            raise SpecError(f"unknown fault action {self.action!r}; known: {', '.join(PEER_ACTIONS + EDGE_ACTIONS)}")
        if (self.at is None) == (self.after_deliveries is None):
            raise SpecError(f"fault {self.action}: give exactly one of a time or a delivery count")
        if self.action in PEER_ACTIONS and (not self.peers or self.edges):
            raise SpecError(f"fault {self.action} takes peers, e.g. {self.action}:3@1")
        if self.action in EDGE_ACTIONS and (not self.edges or self.peers):
            raise SpecError(f"fault {self.action} takes edges, e.g. {self.action}:0-1,2-3@1")
        if self.at is not None and (not is_number(self.at) or not math.isfinite(self.at) or self.at < 0):
            raise SpecError(f"--fault {self._spelling()}: time must be a finite number >= 0 (seconds from the "
                            f"start), got {show_value(self.at)}")
        if self.after_deliveries is not None and (not _is_int(self.after_deliveries) or self.after_deliveries < 0):
            raise SpecError(f"--fault {self._spelling()}: delivery count must be an integer >= 0, "
                            f"got {show_value(self.after_deliveries)}")
        for p in self.peers:
            if not _is_int(p) or p < 0:
                raise SpecError(f"--fault {self._spelling()}: peer ids must be integers >= 0, got {show_value(p)}")
        for e in self.edges:
            if len(e) != 2 or not all(_is_int(x) and x >= 0 for x in e):
                raise SpecError(f"--fault {self._spelling()}: edges must be pairs of peer ids >= 0, "
                                f"got {show_value(e)}")

    def _spelling(self) -> str:
        """The CLI spelling, for messages about values that may be of any type."""
        targets = ",".join(map(str, self.peers)) or ",".join("-".join(map(str, e)) for e in self.edges)
        when = show_value(self.at) if self.at is not None else f"deliveries={show_value(self.after_deliveries)}"
        return f"{self.action}:{targets}@{when}"

    @property
    def at_start(self) -> bool:
        """A kill at time 0: the peer never takes part."""
        return self.action == "kill" and self.at == 0

    @classmethod
    def parse(cls, text: str) -> Fault:
        try:
            action, rest = text.split(":", 1)
            targets, when = rest.rsplit("@", 1)
            action = action.strip().lower()
            at = after = None
            if when.startswith("deliveries="):
                after = int(when.removeprefix("deliveries="))
            else:
                at = float(when)
            if action in EDGE_ACTIONS:
                edges = tuple(tuple(sorted(int(x) for x in e.split("-"))) for e in targets.split(","))
                if any(len(e) != 2 for e in edges):
                    raise ValueError("edges are written u-v")
                return cls(action, edges=edges, at=at, after_deliveries=after)  # type: ignore[arg-type]
            return cls(action, peers=tuple(int(p) for p in targets.split(",")), at=at, after_deliveries=after)
        except ValueError as e:
            raise SpecError(f"cannot parse fault {text!r} ({e}); expected e.g. kill:3@0, pause:2@0.5, "
                            "kill:3@deliveries=1000, partition:0-1@0.2") from e

    @classmethod
    def from_dict(cls, data: dict) -> Fault:
        return cls(
            action=data["action"],
            peers=tuple(data.get("peers", ())),
            edges=tuple(tuple(e) for e in data.get("edges", ())),
            at=data.get("at"),
            after_deliveries=data.get("after_deliveries"),
        )

    def check(self, graph: nx.Graph) -> None:
        for p in self.peers:
            if p not in graph:
                raise SpecError(f"--fault {self}: no peer {p} in the topology ({graph.number_of_nodes()} peers)")
        for u, v in self.edges:
            if not graph.has_edge(u, v):
                raise SpecError(f"--fault {self}: no edge {u}-{v} in the topology")

    def __str__(self) -> str:
        targets = ",".join(map(str, self.peers)) or ",".join(f"{u}-{v}" for u, v in self.edges)
        when = f"{self.at:g}" if self.at is not None else f"deliveries={self.after_deliveries}"
        return f"{self.action}:{targets}@{when}"


def _cut_from_start(faults: tuple[Fault, ...]) -> set[tuple[int, int]]:
    """Edges partitioned at time 0 and never healed."""
    healed = {e for f in faults if f.action == "heal" for e in f.edges}
    return {e for f in faults if f.action == "partition" and f.at == 0 for e in f.edges} - healed


def surviving_graph(graph: nx.Graph, faults: tuple[Fault, ...]) -> nx.Graph:
    """The graph that can be predicted exactly: without the peers killed at start and
    the edges partitioned from the start for good."""
    gone = {p for f in faults if f.at_start for p in f.peers}
    cut = _cut_from_start(faults)
    if not gone and not cut:
        return graph
    g = graph.subgraph(n for n in graph.nodes if n not in gone).copy()
    g.remove_edges_from(cut)
    return g


def exactly_predictable(faults: tuple[Fault, ...]) -> bool:
    """True when every fault takes effect before the first frame and lasts (kills at
    start, partitions from the start never healed): the rest is plain v1 on what is left."""
    cut = _cut_from_start(faults)
    return all(f.at_start or (f.action == "partition" and set(f.edges) <= cut) for f in faults)
