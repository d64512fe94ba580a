"""Predictions for every protocol; ``generator.predict`` stays the v1 predictor.

``predict_protocol(graph, spec)`` returns a ``ProtocolPrediction`` from the predictor
registered for ``spec.protocol`` in ``PREDICTORS`` (one per protocol of
``peer.protocols.PROTOCOLS``; an unknown name raises ``SpecError``):

- **v1**: exact (``generator.predict``): one frame per simple path.
- **ttl**: exact: one frame per simple path of at most ``ttl`` links (the v1
  enumeration cut at that depth), per edge, bytes included.
- **gossip**: exact when the spec has a seed. A peer's choice for a copy depends only
  on (seed, peer, hop list) (``peer.protocols.Gossip.choose``), not on arrival order,
  so the host replays the peers' own decision code copy by copy.
- **flood** (classic dedup flood: forward only the first copy of each author's
  message, to every neighbour but its sender): per author the author sends deg(a)
  frames and every other peer deg(v) − 1, so deliveries = N(2|E| − N + 1) exactly on a
  connected graph, whatever the timing. Which copy arrives first decides the hop-list
  lengths, so bytes and per-peer counts are not predicted (peers end on idle), except
  on trees, where flood sends exactly what v1 sends. A receiver may find its own id
  in a flood hop list; for this protocol that is not a protocol error.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass

import networkx as nx

from generator.errors import SpecError
from generator.predict import DEFAULT_CAP, Flow, Prediction, PredictionTooLarge, enumerate_edges, predict
from generator.spec import RunSpec


@dataclass(frozen=True)
class ProtocolPrediction:
    """What is known before a run. ``detail`` (per-edge flows) is set only when everything is exact."""

    protocol: str
    deliveries: int | None  # exact, or None
    deliveries_range: tuple[int, int] | None  # [min, max] deliveries (equal when exact)
    bytes: int | None  # exact, or None
    per_peer_frames: dict[int, int] | None  # exact deliveries per receiving peer, or None
    upper_bound: int | None  # deliveries can not exceed this (for refusing runaway runs)
    detail: Prediction | None = None
    note: str = ""

    @property
    def exact(self) -> bool:
        """Deliveries, bytes and per-peer counts all exact (peers can be given --expect)."""
        return self.detail is not None

    def describe(self) -> str:
        parts = [f"{self.protocol}:"]
        if self.deliveries is not None:
            parts.append(f"{self.deliveries:,} deliveries")
        elif self.deliveries_range is not None:
            lo, hi = self.deliveries_range
            parts.append(f"{lo:,}..{hi:,} deliveries")
        else:
            parts.append("deliveries not predicted" + (f" (at most {self.upper_bound:,})" if self.upper_bound else ""))
        parts.append(f"{self.bytes:,} bytes" if self.bytes is not None else "bytes not predicted")
        if self.note:
            parts.append(f"({self.note})")
        return " ".join(parts)


def predict_protocol(
    graph: nx.Graph,
    spec: RunSpec,
    cap: int = DEFAULT_CAP,
    family: str | None = None,
    full_graph: nx.Graph | None = None,
) -> ProtocolPrediction:
    """Dispatch on ``spec.protocol`` through ``PREDICTORS`` (the predictor then reads the
    protocol's parameters and seed); raises ``PredictionTooLarge`` above ``cap`` deliveries
    and ``SpecError`` for a protocol without a predictor.

    ``graph`` is what the prediction is made on (``spec.graph()``, or
    ``spec.prediction_graph()`` with faults); ``family`` enables v1's closed forms and
    must only be given when ``graph`` is the family's full graph; ``full_graph`` is the
    topology the peers are configured with, when it has more links than ``graph``
    (gossip peers choose among all their configured neighbours).
    """
    try:
        predictor = PREDICTORS[spec.protocol]
    except KeyError:
        raise SpecError(f"no predictor for protocol {spec.protocol!r} "
                        f"(known: {', '.join(sorted(PREDICTORS))})") from None
    return predictor(graph, spec, cap, family, full_graph)


# ---- the registry: protocol name -> predictor -------------------------------------
# Every predictor takes (graph, spec, cap, family, full_graph), as ``predict_protocol``.

Predictor = Callable[[nx.Graph, RunSpec, int, str | None, nx.Graph | None], ProtocolPrediction]


def _predict_v1(graph: nx.Graph, spec: RunSpec, cap: int, family: str | None,
                full_graph: nx.Graph | None) -> ProtocolPrediction:
    return _exact("v1", predict(graph, family, cap=cap))


def _predict_ttl(graph: nx.Graph, spec: RunSpec, cap: int, family: str | None,
                 full_graph: nx.Graph | None) -> ProtocolPrediction:
    ttl = spec.protocol_params()["ttl"]
    per_edge = enumerate_edges(graph, cap, max_hops=ttl)
    return _exact("ttl", _prediction(per_edge), f"simple paths of at most {ttl} links")


def _predict_gossip(graph: nx.Graph, spec: RunSpec, cap: int, family: str | None,
                    full_graph: nx.Graph | None) -> ProtocolPrediction:
    fanout = spec.protocol_params()["fanout"]
    if spec.seed is None:
        return ProtocolPrediction("gossip", None, None, None, None, gossip_bound(graph, fanout),
                                  note="no seed: choices do not replay")
    per_edge = replay(graph, full_graph or graph, spec, cap)
    return _exact("gossip", _prediction(per_edge), f"fanout {fanout}, seed {spec.seed}, replayed")


def _predict_flood(graph: nx.Graph, spec: RunSpec, cap: int, family: str | None,
                   full_graph: nx.Graph | None) -> ProtocolPrediction:
    return predict_flood(graph, cap)


PREDICTORS: dict[str, Predictor] = {
    "v1": _predict_v1,
    "ttl": _predict_ttl,
    "gossip": _predict_gossip,
    "flood": _predict_flood,
}


def _exact(protocol: str, p: Prediction, note: str = "") -> ProtocolPrediction:
    per_peer = {peer: f.frames for peer, f in p.per_peer_received().items()}
    return ProtocolPrediction(protocol, p.deliveries, (p.deliveries, p.deliveries), p.bytes, per_peer, p.deliveries,
                              p, note)


def _prediction(per_edge: dict[tuple[int, int], Flow]) -> Prediction:
    return Prediction(
        deliveries=sum(f.frames for f in per_edge.values()),
        bytes=sum(f.bytes for f in per_edge.values()),
        per_edge=per_edge,
    )


# ---- flood ---------------------------------------------------------------------


def predict_flood(graph: nx.Graph, cap: int = DEFAULT_CAP) -> ProtocolPrediction:
    """Classic dedup flood: per author deg(author) + Σ_{v≠author} (deg(v) − 1) = 2|E| − (N − 1)
    deliveries in each connected component, whatever the timing. Which copy arrives first
    (and so hop-list lengths, bytes and per-peer counts) depends on timing."""
    deliveries = sum(len(c) * (2 * graph.subgraph(c).number_of_edges() - len(c) + 1)
                     for c in nx.connected_components(graph))
    if nx.is_forest(graph):  # one path between any two peers: exactly what v1 sends
        return _exact("flood", predict(graph, cap=cap), "a tree: exactly what v1 sends")
    return ProtocolPrediction(
        "flood", deliveries, (deliveries, deliveries), None, None, deliveries,
        note="N(2|E| - N + 1) deliveries exactly; bytes and per-peer counts depend on which copy arrives first",
    )


# ---- gossip, and any protocol whose choices replay --------------------------------------------------------------------


def gossip_bound(graph: nx.Graph, fanout: int) -> int:
    """At most fanout^j frames with j links per author, j < N."""
    n = graph.number_of_nodes()
    per_author = sum(fanout**j for j in range(1, n)) if fanout > 1 else n - 1
    return n * per_author


def replay(graph: nx.Graph, neighbours_of: nx.Graph, spec: RunSpec, cap: int = DEFAULT_CAP) -> dict[tuple[int, int], Flow]:
    """Replay every peer's decisions with the peers' own protocol code, copy by copy.

    Exact for any protocol whose choices depend only on (seed, peer, hop list), not on
    arrival order (gossip; any deterministic one). Peers choose among their neighbours in
    ``neighbours_of`` (the full topology: a peer also picks a neighbour that is dead);
    frames travel only over edges of ``graph``.
    """
    from peer.protocols import PROTOCOLS

    cls, params = PROTOCOLS[spec.protocol], spec.protocol_params()
    protos = {v: cls(v, list(neighbours_of.neighbors(v)), spec.n, spec.seed, **params) for v in graph.nodes}
    frames: dict[tuple[int, int], int] = defaultdict(int)
    nbytes: dict[tuple[int, int], int] = defaultdict(int)
    count = 0
    for a in graph.nodes:
        payload, targets = protos[a].author()
        stack = [(a, t, [a], payload) for t in targets]
        while stack:
            u, v, hops, payload = stack.pop()
            if not graph.has_edge(u, v):
                continue
            count += 1
            if count > cap:
                raise PredictionTooLarge(f"more than {cap:,} deliveries predicted ({spec.protocol} copies replayed)")
            frames[(u, v)] += 1
            nbytes[(u, v)] += 4 + len(payload)
            fwd, targets = protos[v].receive(a, hops, payload, True)
            if targets:
                nxt = [*hops, v]
                stack.extend((v, t, nxt, fwd) for t in targets)
    return {e: Flow(frames[e], nbytes[e]) for e in frames}
