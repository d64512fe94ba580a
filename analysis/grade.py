"""``p2p grade RUN_DIR``: each implementation of a run judged against the exact prediction.

A run may mix implementations of the peer (spec.json ``implementations``; the rest run
ours, named ``p2p``). For each one the grade checks, from the logs alone:

- **counts**: every one of its peers received exactly the predicted deliveries and bytes;
- **edges**: every directed edge with an endpoint among its peers carried exactly the
  predicted frames and bytes (an edge out of peer s is counted in the receiver's log);
- **duplicates**: no receiver of its logged the same message (line) twice;
- **protocol violations**: frames that break v1's forwarding rule, charged to the
  implementation of the frame's sender (its last hop): a hop list that holds the
  receiver (sent back to a peer already in hops), that repeats a peer, that is no path of
  the graph, whose first hop is not the author, or whose sender is no neighbour of the
  receiver; also the frames our peers refused (their ``error`` events name the sender),
  and log lines that are no message at all (charged to the peer that wrote them);
- **link set-up**: every edge of its peers carried frames both ways when the prediction
  says it should, and our peers' handshake complaints (a second connection for an edge,
  a connection after the deadline) against its peers;
- **exits**: a non-zero exit that is not a stop at quiescence, and a peer whose adapter
  says it exits by itself but that had to be stopped.

One verdict per implementation: PASS when every check holds, FAIL with the reasons,
NOT CHECKED when the run has no exact prediction. ``grade.json`` keeps it all.
"""

from __future__ import annotations

import json
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import networkx as nx

from analysis import logs as L
from analysis._util import AnalysisError
from generator.adapter import OURS
from generator.spec import RunSpec
from peer.logfiles import messages_file, traffic_file

# Errors our peers log about a neighbour's frames (peer/wire.py, peer/node.py): the sender broke the protocol.
FRAME_REASONS = frozenset({"bad_hops", "bad_sender", "bad_id", "bad_json", "bad_type", "bad_utf8", "oversize",
                           "eof_mid_frame"})
# Errors about how a neighbour set up its link.
LINK_REASONS = frozenset({"duplicate_link", "late_link"})
MAX_LISTED = 10  # examples kept per kind of violation


@dataclass
class ImplGrade:
    """What the grade found for one implementation."""

    name: str
    peers: tuple[int, ...]
    counts: list[dict[str, Any]] = field(default_factory=list)  # receivers off the prediction
    edges: list[dict[str, Any]] = field(default_factory=list)  # directed edges off the prediction
    duplicates: dict[int, int] = field(default_factory=dict)  # receiver -> repeated lines
    violations: Counter = field(default_factory=Counter)  # kind -> count
    examples: dict[str, list[str]] = field(default_factory=dict)
    link_problems: list[str] = field(default_factory=list)
    exits: list[str] = field(default_factory=list)
    log_problems: list[str] = field(default_factory=list)
    hostile: dict[str, Any] | None = None  # p2p grade --hostile: the battery and the replay's outcome
    hostile_problems: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)  # context, not reasons (e.g. what other implementations broke)
    checked: bool = True
    received: int = 0
    expected: int | None = 0

    def violation(self, kind: str, example: str, count: int = 1) -> None:
        self.violations[kind] += count
        shown = self.examples.setdefault(kind, [])
        if len(shown) < MAX_LISTED:
            shown.append(example)

    @property
    def reasons(self) -> list[str]:
        out = []
        if self.counts:
            short = ", ".join(f"{c['peer']}: {c['received']}/{c['expected']}" for c in self.counts[:MAX_LISTED])
            out.append(f"{len(self.counts)} peer(s) off the predicted deliveries/bytes (received/predicted: {short})")
        if self.edges:
            out.append(f"{len(self.edges)} directed edge(s) off the predicted frames/bytes")
        if self.duplicates:
            out.append(f"{sum(self.duplicates.values())} duplicate deliveries (same message logged twice) at "
                       f"peer(s) {sorted(self.duplicates)}")
        for kind, count in sorted(self.violations.items()):
            out.append(f"protocol violation: {count} × {kind}")
        out += [f"link set-up: {p}" for p in self.link_problems]
        out += [f"exit: {e}" for e in self.exits]
        out += [f"logs: {e}" for e in self.log_problems]
        out += [f"hostile input: {e}" for e in self.hostile_problems]
        return out

    @property
    def verdict(self) -> str:
        if self.reasons:
            return "FAIL"
        return "PASS" if self.checked else "NOT CHECKED"

    def to_dict(self) -> dict[str, Any]:
        return {"name": self.name, "peers": list(self.peers), "verdict": self.verdict, "reasons": self.reasons,
                "received": self.received, "expected": self.expected, "counts": self.counts, "edges": self.edges,
                "duplicates": {str(k): v for k, v in self.duplicates.items()},
                "violations": dict(self.violations), "examples": self.examples,
                "link_problems": self.link_problems, "exits": self.exits, "log_problems": self.log_problems, "notes": self.notes,
                "hostile": self.hostile}


def grade(run_dir: Path, write: bool = True, attacked: frozenset[int] = frozenset()) -> list[ImplGrade]:
    """Grade every implementation of the run in ``run_dir``; write ``grade.json`` (with ``write``).

    ``attacked``: peers the hostile battery hit (testbed/hostile.py): their complaints about
    connections are the battery's, not a neighbour's."""
    from analysis.stats import analyse

    run_dir = Path(run_dir)
    spec_path = run_dir / "spec.json"
    if not spec_path.is_file():
        raise AnalysisError(f"no spec.json in {run_dir}: grading needs the run's spec (which peer is which)")
    spec = RunSpec.load(spec_path)
    summary = analyse(run_dir, write=False).summary
    graph = spec.graph()
    log_dir = L.find_log_dir(run_dir)
    owner = {p: OURS for p in range(spec.n)}
    for impl in spec.implementations:
        owner.update({p: impl.name for p in impl.ids})
    names = [OURS] if any(v == OURS for v in owner.values()) else []
    names += [i.name for i in spec.implementations]
    grades = {name: ImplGrade(name, tuple(p for p in range(spec.n) if owner[p] == name)) for name in names}
    exact = summary.get("prediction") == "exact"
    _counts(summary, owner, grades, exact)
    _edges(summary, owner, grades, exact)
    for p in range(spec.n):
        _scan_log(log_dir, p, spec, graph, owner, grades)
    _peer_errors(summary, owner, grades, attacked)
    _traffic_files(log_dir, spec, owner, grades)
    for dis in summary.get("disagreements") or []:  # a peer's own counters against what its neighbours logged
        if dis.get("peer") in owner and dis.get("source") == "traffic file":
            grades[owner[dis["peer"]]].log_problems.append(
                f"peer {dis['peer']}'s traffic file says {dis['what']} {dis['logged']} for neighbour {dis['nbr']}, "
                f"its neighbours' logs say {dis['observed']}")
    _exits(run_dir, spec, owner, grades)
    _blame_notes(graph, grades)
    out = [grades[name] for name in names]
    if write:
        data = {"run_id": run_dir.resolve().name, "implementations": [g.to_dict() for g in out]}
        (run_dir / "grade.json").write_text(json.dumps(data, indent=1) + "\n")
    return out


def _counts(summary: dict[str, Any], owner: dict[int, str], grades: dict[str, ImplGrade], exact: bool) -> None:
    for row in summary["peers"]:
        g = grades[owner[row["id"]]]
        g.received += row["received"]
        if not exact or row["expected_received"] is None:
            g.checked, g.expected = False, None
            continue
        g.expected = None if g.expected is None else g.expected + row["expected_received"]
        if row["received"] != row["expected_received"] or row["bytes_in"] != row["expected_bytes_in"]:
            g.counts.append({"peer": row["id"], "received": row["received"], "expected": row["expected_received"],
                             "bytes": row["bytes_in"], "expected_bytes": row["expected_bytes_in"]})


def _edges(summary: dict[str, Any], owner: dict[int, str], grades: dict[str, ImplGrade], exact: bool) -> None:
    if not exact:
        return
    for e in summary["edges"]:
        if e["frames"] == e["expected_frames"] and e["bytes"] == e["expected_bytes"]:
            continue
        row = {k: e[k] for k in ("src", "dst", "frames", "expected_frames", "bytes", "expected_bytes")}
        for name in {owner.get(e["src"]), owner.get(e["dst"])} - {None}:
            grades[name].edges.append(row)
        if e["expected_frames"] and not e["frames"]:
            for name in {owner.get(e["src"]), owner.get(e["dst"])} - {None}:
                grades[name].link_problems.append(
                    f"no frame from {e['src']} to {e['dst']} ({e['expected_frames']} predicted): link never "
                    "carried traffic that way")


def _scan_log(log_dir: Path, p: int, spec: RunSpec, graph: nx.Graph, owner: dict[int, str],
              grades: dict[str, ImplGrade]) -> None:
    """Every line of ``p.txt``: duplicates (charged to p) and forwarding-rule violations (to the sender)."""
    path = messages_file(log_dir, p)
    try:
        data = path.read_bytes()
    except OSError:
        return
    seen: Counter = Counter(data.splitlines())
    repeats = sum(c - 1 for c in seen.values() if c > 1)
    if repeats:
        grades[owner[p]].duplicates[p] = repeats
    own_ok = L.receiver_in_hops_ok(spec.protocol)
    for line, count in seen.items():
        kind, sender, why = _check_line(line, p, spec.n, graph, own_ok)
        if kind is None:
            continue
        blamed = owner.get(sender, owner[p]) if sender is not None else owner[p]
        grades[blamed].violation(kind, f"peer {p} logged {line[:120].decode(errors='replace')}: {why}", count)


def _check_line(line: bytes, p: int, n: int, graph: nx.Graph, own_ok: bool) -> tuple[str | None, int | None, str]:
    """(kind of violation or None, the sender it is charged to (None: the receiver), why)."""
    try:
        obj = json.loads(line)
        author, hops = obj["id"], obj["hops"]
        if not isinstance(hops, list) or not hops or not all(type(h) is int for h in [author, *hops]):
            raise ValueError("not integers")
    except (ValueError, KeyError, TypeError, RecursionError):
        return "log line that is no message", None, "not {\"id\":A,\"hops\":[...]}"
    sender = hops[-1] if 0 <= hops[-1] < n else None
    if any(not 0 <= h < n for h in hops):
        return "unknown peer id in hops", sender, f"ids must be 0..{n - 1}"
    if hops[0] != author:
        return "first hop is not the author", sender, f"first hop {hops[0]}, author {author}"
    if p in hops and not own_ok:
        return "sent back to a peer already in hops", sender, f"receiver {p} is in the hop list"
    if len(set(hops)) != len(hops):
        return "hop list repeats a peer", sender, "a peer forwarded a copy it had already forwarded"
    if not graph.has_edge(hops[-1], p):
        return "wrong sender (not a neighbour of the receiver)", sender, f"{hops[-1]} is no neighbour of {p}"
    for a, b in zip(hops, hops[1:]):
        if not graph.has_edge(a, b):
            return "hops not a path of the graph", sender, f"{a}-{b} is no link"
    return None, None, ""


def _peer_errors(summary: dict[str, Any], owner: dict[int, str], grades: dict[str, ImplGrade],
                 attacked: frozenset[int]) -> None:
    """Our peers' complaints about a neighbour: refused frames and bad link set-ups, charged to that neighbour."""
    for err in summary.get("errors") or []:
        nbr, reason = err.get("nbr"), err.get("reason")
        if not isinstance(nbr, int) or nbr not in owner or err.get("peer") in attacked:
            continue
        g = grades[owner[nbr]]
        text = f"peer {err['peer']} refused a frame from {nbr}: {reason} {err.get('detail', '')}".strip()
        if reason in FRAME_REASONS:
            g.violation(f"frame refused by the receiver ({reason})", text, err.get("count", 1))
        elif reason in LINK_REASONS:
            g.link_problems.append(f"peer {err['peer']} reports {reason} from {nbr} ({err.get('detail', '')})")


def _blame_notes(graph: nx.Graph, grades: dict[str, ImplGrade]) -> None:
    """An implementation short of the prediction next to one that broke the protocol: say so (a note;
    the counts still fail, as they must)."""
    for g in grades.values():
        if not (g.counts or g.edges):
            continue
        mine = set(g.peers)
        for other in grades.values():
            if other is g or not other.violations:
                continue
            if any(graph.has_edge(p, q) for p in mine for q in other.peers):
                g.notes.append(f"{other.name} broke the protocol ({sum(other.violations.values())} violation(s)) on "
                               "links in this network: links it broke cut paths through them")


def _traffic_files(log_dir: Path, spec: RunSpec, owner: dict[int, str], grades: dict[str, ImplGrade]) -> None:
    """A foreign peer must leave ``<id>.traffic.txt`` (the original format's second file)."""
    for impl in spec.implementations:
        for p in impl.ids:
            if not traffic_file(log_dir, p).is_file():
                grades[owner[p]].log_problems.append(f"peer {p} wrote no {p}.traffic.txt (the original format has one "
                                                     "per peer, written at exit or on the stop signal)")


def _exits(run_dir: Path, spec: RunSpec, owner: dict[int, str], grades: dict[str, ImplGrade]) -> None:
    try:
        data = json.loads((run_dir / "exits.json").read_text())
        codes = data["exit_codes"]
    except (OSError, ValueError, KeyError, TypeError):
        return
    quiet = set(data.get("quiescence_stops") or ())
    runaway = set(data.get("runaway_stops") or ())
    for key, code in codes.items():
        if not str(key).isdigit() or int(key) not in owner:
            continue
        p = int(key)
        impl = spec.implementation_of(p)
        if p in runaway:
            grades[owner[p]].exits.append(f"peer {p} was stopped as a runaway: its logs grew past 4x its prediction")
        elif p in quiet:
            if impl is not None and impl.adapter.exit_mode == "self":
                grades[owner[p]].exits.append(f"peer {p} did not exit by itself (adapter exit.mode = \"self\"): "
                                              "stopped at quiescence")
        elif code != 0:
            grades[owner[p]].exits.append(f"peer {p} exited with code {code}")


def format_grade(grades: list[ImplGrade]) -> str:
    """The terminal text: one block per implementation, its verdict first."""
    lines = []
    for g in grades:
        ids = _ranges(g.peers)
        exp = "no exact prediction" if g.expected is None else f"{g.expected:,} predicted"
        lines.append(f"{g.name} (peers {ids}): {g.verdict} -- {g.received:,} deliveries received, {exp}")
        for reason in g.reasons:
            lines.append(f"  - {reason}")
        for note in g.notes:
            lines.append(f"  note: {note}")
        if g.hostile is not None:
            h = g.hostile
            lines.append(f"  hostile input against peer {h['peer']}: {len(h['sent'])} cases sent, "
                         f"{h['silent_connections']} silent connections; replay {h['replay_verdict']}"
                         + ("" if not g.hostile_problems else " (see reasons)"))
        for kind, shown in sorted(g.examples.items()):
            for text in shown[:3]:
                lines.append(f"      {kind}: {text}")
        for e in g.edges[:5]:
            lines.append(f"      edge {e['src']}->{e['dst']}: {e['frames']} frames / {e['bytes']} B, predicted "
                         f"{e['expected_frames']} / {e['expected_bytes']} B")
    return "\n".join(lines)


def _ranges(ids: tuple[int, ...]) -> str:
    out, start = [], None
    for i, p in enumerate(ids):
        if start is None:
            start = p
        if i + 1 == len(ids) or ids[i + 1] != p + 1:
            out.append(str(start) if start == p else f"{start}-{p}")
            start = None
    return ",".join(out) or "none"
