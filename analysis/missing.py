"""Which deliveries are missing: the (author, path) pairs predicted but never logged.

Under v1 every simple path is one delivery, so the missing ones are the predicted
paths minus the hop lists the receivers logged. Enumeration costs one set entry per
predicted delivery, so it is done only for runs up to ``MAX_PATHS``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import networkx as nx

from analysis.logs import LineError, parse_line

MAX_PATHS = 1_000_000
LIST_LIMIT = 10_000

Delivery = tuple[int, tuple[int, ...]]  # (receiver, hops)


def expected_deliveries(graph: nx.Graph, cap: int = MAX_PATHS) -> set[Delivery] | None:
    """Every (receiver, hops) v1 makes on ``graph``; None when there are more than ``cap``."""
    adj = {u: sorted(graph.neighbors(u)) for u in graph.nodes}
    out: set[Delivery] = set()
    for author in graph.nodes:
        path = [author]
        stack = [iter(adj[author])]
        while stack:
            v = next(stack[-1], None)
            if v is None:
                stack.pop()
                path.pop()
                continue
            if v in path:
                continue
            out.add((v, tuple(path)))
            if len(out) > cap:
                return None
            path.append(v)
            stack.append(iter(adj[v]))
    return out


def observed_deliveries(log_dir: Path, ids: list[int], n: int) -> tuple[set[Delivery], int]:
    """Logged (receiver, hops) and how many lines were logged more than once."""
    seen: set[Delivery] = set()
    repeats = 0
    for p in ids:
        path = log_dir / f"{p}.txt"
        if not path.exists():
            continue
        with open(path, "rb") as f:
            for line in f:
                if not line.endswith(b"\n"):
                    continue  # a torn last line is reported elsewhere
                try:
                    _, hops = parse_line(line[:-1], p, n)
                except LineError:
                    continue
                key = (p, tuple(hops))
                if key in seen:
                    repeats += 1
                seen.add(key)
    return seen, repeats


def missing_report(graph: nx.Graph, log_dir: Path, n: int) -> dict[str, Any] | None:
    """Counts and a listing of missing and unexpected deliveries, or None if too large."""
    expected = expected_deliveries(graph)
    if expected is None:
        return None
    observed, repeats = observed_deliveries(log_dir, sorted(graph.nodes), n)
    missing = sorted(expected - observed)
    unexpected = sorted(observed - expected)
    return {
        "missing_count": len(missing),
        "unexpected_count": len(unexpected),
        "repeated_lines": repeats,
        "missing": [{"author": hops[0], "receiver": r, "path": [*hops, r]} for r, hops in missing[:LIST_LIMIT]],
        "unexpected": [{"author": hops[0], "receiver": r, "path": [*hops, r]} for r, hops in unexpected[:LIST_LIMIT]],
        "listed_up_to": LIST_LIMIT,
    }
