"""Exact prediction of protocol-v1 deliveries and bytes.

Under v1 a frame crosses directed edge u→v once for every simple path that ends
with that edge, and its hop list is that path up to u. With ``d(x)`` the number of
decimal digits of ``x``, a frame with hops ``[h1..hk]`` is

    4 + len('{"id":h1,"hops":[h1,...,hk]}') = 20 + k + d(h1) + Σ d(hi)  bytes.

Closed forms exist for cycle and mesh; any other graph is enumerated path by path,
up to a cap (simple paths grow factorially).
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass
from math import perm

import networkx as nx

from generator.errors import P2PError

DEFAULT_CAP = 20_000_000


class PredictionTooLarge(P2PError):
    """Raised when enumeration would exceed the cap."""


@dataclass(frozen=True)
class Flow:
    """Frames and bytes over one directed edge, or into/out of one peer."""

    frames: int = 0
    bytes: int = 0

    def __add__(self, other: Flow) -> Flow:
        return Flow(self.frames + other.frames, self.bytes + other.bytes)


@dataclass(frozen=True)
class Prediction:
    """Exact v1 figures for one graph."""

    deliveries: int
    bytes: int
    per_edge: dict[tuple[int, int], Flow]

    def received(self, peer: int) -> Flow:
        return sum((f for (_, v), f in self.per_edge.items() if v == peer), Flow())

    def sent(self, peer: int) -> Flow:
        return sum((f for (u, _), f in self.per_edge.items() if u == peer), Flow())

    def per_peer_received(self) -> dict[int, Flow]:
        out: dict[int, Flow] = defaultdict(Flow)
        for (_, v), f in self.per_edge.items():
            out[v] = out[v] + f
        return dict(out)


def digits(x: int) -> int:
    return len(str(x))


def frame_size(hops: list[int]) -> int:
    """Bytes on the wire (length prefix included) of a v1 frame with these hops."""
    return 20 + len(hops) + digits(hops[0]) + sum(digits(h) for h in hops)


def mesh_deliveries(n: int) -> int:
    """Deliveries of v1 on K_n: n · Σ_{k=1..n-1} (n-1)!/(n-1-k)!."""
    return n * sum(perm(n - 1, k) for k in range(1, n))


def cycle_deliveries(n: int) -> int:
    return 2 * n * (n - 1)


def quick_deliveries(graph: nx.Graph, family: str | None = None, cap: int = DEFAULT_CAP) -> int:
    """Deliveries only; cheap for cycle and mesh even when huge (no per-edge detail)."""
    n = graph.number_of_nodes()
    if family == "mesh":
        return mesh_deliveries(n)
    if family == "cycle":
        return cycle_deliveries(n)
    return predict(graph, cap=cap).deliveries


def predict(graph: nx.Graph, family: str | None = None, cap: int = DEFAULT_CAP) -> Prediction:
    """Exact v1 prediction; raises ``PredictionTooLarge`` above ``cap`` deliveries."""
    n = graph.number_of_nodes()
    if family == "mesh":
        total = mesh_deliveries(n)
        _check_cap(total, cap)
        per_edge = _mesh_edges(n)
    elif family == "cycle":
        per_edge = _cycle_edges(n)
    else:
        per_edge = enumerate_edges(graph, cap)
    return Prediction(
        deliveries=sum(f.frames for f in per_edge.values()),
        bytes=sum(f.bytes for f in per_edge.values()),
        per_edge=per_edge,
    )


def _check_cap(total: int, cap: int) -> None:
    if total > cap:
        raise PredictionTooLarge(f"more than {cap:,} deliveries predicted ({total:,})")


def _mesh_edges(n: int) -> dict[tuple[int, int], Flow]:
    # Frames on u→v: hop lists (h1..h_j, u) with h's an ordered selection from the
    # m = n-2 other peers. Each peer appears in each position of P(m-1, j-1) of them.
    d = [digits(x) for x in range(n)]
    total_d = sum(d)
    m = n - 2
    out = {}
    for u in range(n):
        for v in range(n):
            if u == v:
                continue
            others = total_d - d[u] - d[v]
            frames = 1
            nbytes = 21 + 2 * d[u]
            for j in range(1, m + 1):
                k = j + 1
                c = perm(m, j)
                per_slot = perm(m - 1, j - 1) * others
                frames += c
                nbytes += c * (20 + k + d[u]) + (1 + j) * per_slot
            out[(u, v)] = Flow(frames, nbytes)
    return out


def _cycle_edges(n: int) -> dict[tuple[int, int], Flow]:
    d = [digits(x) for x in range(n)]
    out = {}
    for u in range(n):
        for step in (1, -1):
            v = (u + step) % n
            frames = nbytes = 0
            digit_sum = 0
            # hops = (u - (k-1)·step, ..., u - step, u), walking backwards from u
            for k in range(1, n):
                h = (u - (k - 1) * step) % n
                digit_sum += d[h]
                frames += 1
                nbytes += 20 + k + d[h] + digit_sum
            out[(u, v)] = Flow(frames, nbytes)
    return out


def enumerate_edges(
    graph: nx.Graph, cap: int = DEFAULT_CAP, max_hops: int | None = None, authors: list[int] | None = None
) -> dict[tuple[int, int], Flow]:
    """Brute force: walk every simple path from every author (reference and fallback).

    ``max_hops`` (protocol ttl): only frames whose hop list has at most that many
    entries, i.e. simple paths of at most ``max_hops`` links. ``authors``: only the
    floods of these peers (default: every peer).
    """
    adj = {u: sorted(graph.neighbors(u)) for u in graph.nodes}
    d = {u: digits(u) for u in graph.nodes}
    frames: dict[tuple[int, int], int] = defaultdict(int)
    nbytes: dict[tuple[int, int], int] = defaultdict(int)
    count = 0
    for author in graph.nodes if authors is None else authors:
        on_path = {author}
        # Stack of (node, digit_sum_of_path_to_node, path_length, neighbour iterator).
        stack = [(author, d[author], 1, iter(adj[author]))]
        while stack:
            u, dsum, k, it = stack[-1]
            v = next(it, None)
            if v is None:
                stack.pop()
                on_path.discard(u)
                continue
            if v in on_path:
                continue
            count += 1
            if count > cap:
                raise PredictionTooLarge(f"more than {cap:,} deliveries predicted (simple paths enumerated)")
            frames[(u, v)] += 1
            nbytes[(u, v)] += 20 + k + d[author] + dsum
            if max_hops is not None and k >= max_hops:
                continue  # v receives hops of length k and does not forward them
            on_path.add(v)
            stack.append((v, dsum + d[v], k + 1, iter(adj[v])))
    return {e: Flow(frames[e], nbytes[e]) for e in frames}


def with_restarts(prediction: Prediction, graph: nx.Graph, restarts: dict[int, int],
                  cap: int = DEFAULT_CAP) -> Prediction:
    """The v1 upper bound when peers were restarted: a restarted peer is a new incarnation
    that authors again, so each restart adds one more flood of that peer's message."""
    per_edge = dict(prediction.per_edge)
    for peer, times in sorted(restarts.items()):
        if peer not in graph or times < 1:
            continue
        for e, f in enumerate_edges(graph, cap=cap, authors=[peer]).items():
            per_edge[e] = per_edge.get(e, Flow()) + Flow(f.frames * times, f.bytes * times)
    return Prediction(
        deliveries=sum(f.frames for f in per_edge.values()),
        bytes=sum(f.bytes for f in per_edge.values()),
        per_edge=per_edge,
    )
