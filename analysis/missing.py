"""Which deliveries are missing, unexpected or repeated, and what explains each one.

Under v1 every simple path is one delivery, so the missing ones are the predicted
(receiver, hop list) pairs that no receiver logged, and the unexpected ones are
logged pairs that are not predicted. Every one of them is listed, one JSON object
per line, in ``missing.jsonl`` (``missing.jsonl.gz`` past ``GZIP_FROM`` entries);
``missing.json`` holds the counts, the counts per explanation and the listing's
name. Enumeration costs one set entry per predicted delivery, so it is done only
for runs up to ``MAX_PATHS``.

Restart semantics: a restarted peer is a new incarnation of the same id. It authors
again, so each of its paths may be delivered once per incarnation: a repeated line
whose author was restarted r times is explained up to r repeats (and the prediction,
an upper bound, counts those floods too). Every other repeat is unexplained.
"""

from __future__ import annotations

import gzip
import json
import os
from collections import Counter
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import networkx as nx

from analysis.explain import FaultContext
from analysis.logs import LineError, parse_line
from peer.logfiles import messages_file

MAX_PATHS = 1_000_000
GZIP_FROM = 100_000  # entries: past this the listing is compressed
LISTING = "missing.jsonl"

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


def observed_deliveries(log_dir: Path, ids: list[int], n: int) -> tuple[dict[Delivery, int], Counter]:
    """Logged (receiver, hops) -> the number of its first line in the receiver's log (1-based),
    and how many times each line was logged more than once."""
    seen: dict[Delivery, int] = {}
    repeats: Counter = Counter()
    for p in ids:
        path = messages_file(log_dir, p)
        if not path.exists():
            continue
        with open(path, "rb") as f:
            for number, line in enumerate(f, start=1):
                if not line.endswith(b"\n"):
                    continue  # a torn last line is reported elsewhere
                try:
                    _, hops = parse_line(line[:-1], p, n)
                except LineError:
                    continue  # reported by the log reader
                key = (p, tuple(hops))
                if key in seen:
                    repeats[key] += 1
                else:
                    seen[key] = number
    return seen, repeats


def _entry(kind: str, key: Delivery, explained_by: str | None, times: int | None = None) -> dict[str, Any]:
    receiver, hops = key
    entry = {"kind": kind, "author": hops[0], "receiver": receiver, "path": [*hops, receiver],
             "explained_by": explained_by}
    if times is not None:
        entry["times"] = times
    return entry


def missing_report(graph: nx.Graph, log_dir: Path, n: int, ctx: FaultContext | None = None,
                   out_dir: Path | None = None) -> dict[str, Any] | None:
    """Count, explain and (with ``out_dir``) list every missing, unexpected and repeated delivery.

    Returns the index that goes to missing.json, or None when the prediction is too large
    to enumerate.
    """
    ctx = ctx or FaultContext()
    expected = expected_deliveries(graph)
    if expected is None:
        return None
    observed, repeats = observed_deliveries(log_dir, sorted(graph.nodes), n)
    restarts = ctx.restarts
    missing, unexpected = sorted(expected - observed.keys()), sorted(observed.keys() - expected)

    def entries():
        for key in missing:
            yield _entry("missing", key, ctx.path([*key[1], key[0]], observed))
        for key in unexpected:
            yield _entry("unexpected", key, None)
        for key, times in sorted(repeats.items()):
            author = key[1][0]
            why = f"restart of peer {author} (a new incarnation authors again)" if times <= restarts[author] else None
            yield _entry("repeated", key, why, times)

    by_reason: Counter = Counter()
    counts: Counter = Counter()
    unexplained: Counter = Counter()

    def counted():
        for e in entries():
            times = e.get("times", 1)
            counts[e["kind"]] += times
            counts["listed"] += 1
            if e["explained_by"] is None:
                unexplained[e["kind"]] += times
            else:
                by_reason[e["explained_by"]] += times
            yield e

    listed = len(missing) + len(unexpected) + len(repeats)
    listing = None
    if out_dir is not None:
        listing = _write_listing(Path(out_dir), counted(), gz=listed > GZIP_FROM)
    else:
        for _ in counted():
            pass
    return {
        "missing_count": counts["missing"],
        "unexpected_count": counts["unexpected"],
        "repeated_count": counts["repeated"],
        "unexplained": {k: unexplained[k] for k in ("missing", "unexpected", "repeated")},
        "explained_by": dict(sorted(by_reason.items(), key=lambda kv: (-kv[1], kv[0]))),
        "listing": listing,
        "listed": counts["listed"],
        "faults": ctx.to_dict(),
    }


def _write_listing(out_dir: Path, entries: Iterable[dict[str, Any]], gz: bool) -> str:
    """Stream every entry, one JSON object a line, to a file made atomically; return its name."""
    name = LISTING + (".gz" if gz else "")
    for stale in (LISTING, LISTING + ".gz"):
        if stale != name:
            (out_dir / stale).unlink(missing_ok=True)
    tmp = out_dir / f".{name}.tmp"
    opener = gzip.open if gz else open
    with opener(tmp, "wt") as f:
        for e in entries:
            f.write(json.dumps(e, separators=(",", ":")) + "\n")
    os.replace(tmp, out_dir / name)
    return name


def read_listing(run_dir: Path) -> list[dict[str, Any]]:
    """Every entry of a run's missing.jsonl(.gz) (for tests and tools)."""
    for name in (LISTING, LISTING + ".gz"):
        path = Path(run_dir) / name
        if path.exists():
            opener = gzip.open if name.endswith(".gz") else open
            with opener(path, "rt") as f:
                return [json.loads(line) for line in f if line.strip()]
    return []
