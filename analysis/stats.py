"""Observed vs predicted: read a run directory, count, compare, write summary.json and stats.txt.

Counting comes from the ``<id>.txt`` lines only: a line in ``p.txt`` whose last hop
is ``s`` is one frame over the directed edge s→p of ``4 + len(line)`` bytes. The
bytes a peer sent over an edge are therefore the bytes its neighbour logged. The
peers' own counters (``summary`` events, ``<id>.traffic.txt``) are only
cross-checked against that, and any disagreement is reported.
"""

from __future__ import annotations

import json
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import networkx as nx

from analysis import logs as L
from analysis._util import AnalysisError, fmt_int
from analysis.explain import FaultContext, fault_context
from analysis.model import Analysis, Edge
from analysis.text import format_summary  # noqa: F401 - re-exported: the public entry
from generator.adapter import OURS
from generator.errors import P2PError
from generator.predict import Flow, Prediction, PredictionTooLarge, predict, with_restarts
from generator.spec import RunSpec
from generator.topologies import FAMILIES, build_graph

PREDICTION_CAP = 1_000_000  # path enumeration budget (at least 4x the deliveries observed)


@dataclass
class _Work:
    """What the stages of ``analyse`` hand on to each other (filled in stage by stage)."""

    run_dir: Path
    log_dir: Path
    found: L.LogDir
    spec: RunSpec | None
    inferred: list[str] = field(default_factory=list)  # facts taken from the logs rather than a spec
    notes: list[str] = field(default_factory=list)  # about the prediction
    problems: list[L.LogProblem] = field(default_factory=list)
    n: int | None = None
    ids: list[int] = field(default_factory=list)
    peers: dict[int, L.PeerLogs] = field(default_factory=dict)
    protocol: str = "v1"
    graph: nx.Graph | None = None
    topology: str = "unknown"
    ctx: FaultContext = field(default_factory=FaultContext)
    prediction: Prediction | None = None
    prediction_kind: str | None = None
    deliveries_only: int | None = None  # exact deliveries when nothing else is predicted (flood)
    pgraph: nx.Graph | None = None  # the graph the prediction was made on
    observed: dict[Edge, Flow] = field(default_factory=dict)
    edges: list[dict[str, Any]] = field(default_factory=list)
    views: dict[int, frozenset[Edge]] = field(default_factory=dict)
    diffs: dict = field(default_factory=dict)
    peer_rows: list[dict[str, Any]] = field(default_factory=list)
    errors: list[dict[str, Any]] = field(default_factory=list)
    link_failures: list[dict[str, Any]] = field(default_factory=list)
    disagreements: list[dict[str, Any]] = field(default_factory=list)

    @property
    def original(self) -> bool:
        return self.found.original_format


def analyse(
    run_dir: Path,
    plots: bool = False,
    *,
    write: bool = True,
    workers: int | None = None,
    progress: Callable[[str], Any] | None = None,
) -> Analysis:
    """Analyse ``run_dir``; write summary.json, stats.txt and the world-view files.

    ``plots=True`` also draws the PNG and HTML pictures (analysis.plots);
    ``write=False`` only computes. ``workers`` is the number of reading processes
    (None: automatic, 1: serial). The stages below run in order, each on what the
    ones before it found.
    """
    say = progress or (lambda _msg: None)
    t_start = time.perf_counter()
    w = _read(Path(run_dir), workers)
    t_read = time.perf_counter()
    _identify(w)
    _predict(w)
    _observe(w)
    _per_peer(w)
    timeline, ttq = _timeline(w.peers)
    summary, missing = _judge_and_sum_up(w, ttq, write)
    analysis = Analysis(run_dir=w.run_dir, log_dir=w.log_dir, summary=summary, spec=w.spec, graph=w.graph,
                        prediction=w.prediction, observed=w.observed, views=w.views, timeline=timeline)
    say(
        f"analysed {w.run_dir}: {fmt_int(summary['deliveries'])} deliveries from {len(w.ids)} peers "
        f"(read {t_read - t_start:.2f} s, total {time.perf_counter() - t_start:.2f} s)"
    )
    if write or plots:
        from analysis.outputs import write_outputs

        analysis.files.extend(write_outputs(analysis, missing if write else None, files=write, plots=plots,
                                            say=say))
    return analysis


# ---- stages --------------------------------------------------------------------


def _read(run_dir: Path, workers: int | None) -> _Work:
    """Find the logs and the spec, and read every peer's logs."""
    if not run_dir.is_dir():
        raise AnalysisError(f"no such run directory: {run_dir}")
    log_dir = L.find_log_dir(run_dir)
    found = L.scan(log_dir)
    if not found.ids:
        raise AnalysisError(f"no peer logs (<id>.txt, <id>.traffic.txt, <id>.events.jsonl) in {log_dir}")
    spec_path = run_dir / "spec.json"
    spec = RunSpec.load(spec_path) if spec_path.exists() else None
    w = _Work(run_dir=run_dir, log_dir=log_dir, found=found, spec=spec)
    w.n = spec.n if spec else None
    if spec is None:
        w.inferred.append("no spec.json: topology, n and protocol inferred from the logs")
        w.n = _n_from_start_events(found)
    w.ids = sorted(set(found.ids) | set(range(w.n or 0)))
    with L.receiver_in_hops_allowed(spec is not None and L.receiver_in_hops_ok(spec.protocol)):
        w.peers = L.read_all(log_dir, w.ids, w.n, workers=workers)
    for p in w.ids:
        w.problems.extend(w.peers[p].problems)
    return w


def _identify(w: _Work) -> None:
    """n, the protocol and the topology: from the spec, else inferred from the logs."""
    peers = w.peers
    if w.n is None:
        w.n = 1 + max(
            list(w.ids)
            + [pl.messages.max_id for pl in peers.values()]
            + [nb for pl in peers.values() for nb in pl.traffic.links]
        )
        w.inferred.append(f"n = {w.n}: the highest peer id seen in file names, hop lists and traffic files, plus one")
        w.ids = sorted(set(w.ids) | set(range(w.n)))
        for p in w.ids:
            if p not in peers:
                peers[p] = L.read_peer(w.log_dir, p, w.n)
    elif w.spec is None:
        w.inferred.append(f"n = {w.n}: from the peers' start events")
    for p in (p for p in w.ids if p >= w.n):
        w.problems.append(L.LogProblem(f"{p}.*", None, f"logs of peer {p}, which is not in the run (n={w.n})"))
    starts = {p: pl.events.start for p, pl in peers.items() if pl.events.start}
    if w.spec is not None:
        w.protocol, w.graph, w.topology = w.spec.protocol, w.spec.graph(), w.spec.topology
    else:
        protos = sorted({str(s.get("protocol")) for s in starts.values()})
        if len(protos) == 1:
            w.protocol = protos[0]
            w.inferred.append(f"protocol {w.protocol}: from the peers' start events")
        else:
            why = "no start events" if not protos else f"start events disagree ({', '.join(protos)})"
            w.inferred.append(f"protocol v1 assumed ({why}; the original tool's protocol)")
        w.graph, how = _infer_graph(w.n, peers, starts)
        w.topology = _recognise(w.graph)
        w.inferred.append(
            f"topology {how}; "
            + (f"it is exactly {w.topology}-{w.n}" if w.topology != "unknown" else "it matches no known family")
        )
    if w.original:
        w.inferred.append(
            "original tool's format (no events logs): errors, exit reasons, durations and "
            "time to quiescence are unavailable"
        )


def _predict(w: _Work) -> None:
    """What fired (faults.jsonl) and what the prediction says: exact, an upper bound, or none."""
    w.ctx, fault_log_problems = fault_context(w.run_dir, w.spec)
    w.problems.extend(L.LogProblem("faults.jsonl", None, text) for text in fault_log_problems)
    if w.protocol == "v1":
        _predict_v1(w)
    elif w.spec is not None:
        _predict_protocol(w)
    else:
        w.notes.append(f"no prediction for protocol {w.protocol} without a spec")
    if w.prediction is not None and w.spec is None:
        w.notes.append("expected values are computed on the inferred topology")
    if w.ctx.not_fired:
        w.notes.append(f"faults that never fired (their trigger was not reached): {', '.join(w.ctx.not_fired)}")


def _unplanned_faults(w: _Work) -> list[str]:
    """Faults that fired without the spec asking for them: a runner recorded what happened to
    its peers (a swarm node that left the swarm mid-run is the kill of its peers). They make
    the prediction an upper bound, as a fault of the spec's timeline would."""
    planned = Counter(str(f) for f in w.spec.faults) if w.spec is not None else Counter()
    out = []
    for a in w.ctx.applied:
        if planned[str(a.fault)]:
            planned[str(a.fault)] -= 1
        else:
            out.append(str(a.fault))
    if out:
        w.notes.append(f"faults the spec did not ask for happened (faults.jsonl): {', '.join(out)}")
    return out


def _predict_v1(w: _Work) -> None:
    # Faults declared at start (kills, partitions for good) leave plain v1 on the
    # surviving graph; any later fault makes that prediction an upper bound.
    if w.spec is not None:
        w.pgraph, family = w.spec.prediction_input()
    else:
        w.pgraph, family = w.graph, (w.topology if w.topology in FAMILIES else None)
    same = w.pgraph is w.graph or family is not None
    # Enumerating paths (no closed form) costs about as much per delivery as
    # reading one; past a cap tied to what was observed, give up on a prediction.
    seen = sum(pl.messages.deliveries for pl in w.peers.values())
    cap = max(PREDICTION_CAP, 4 * seen)
    try:
        w.prediction = predict(w.pgraph, family=family, cap=cap)
        if w.ctx.restarts:
            w.prediction = with_restarts(w.prediction, w.pgraph, w.ctx.restarts, cap=cap)
            w.notes.append("restarted peers author again (a new incarnation): the bound counts one more "
                           "flood of their message per restart")
    except PredictionTooLarge as e:
        w.notes.append(f"no prediction: {e}")
        return
    exact = (w.spec.exactly_predictable if w.spec is not None else True) and not _unplanned_faults(w)
    w.prediction_kind = "exact" if exact else "upper_bound"
    if not same:
        w.notes.append("prediction made on the graph left after the faults declared at start")
    if not exact:
        w.notes.append("faults during the run: the prediction is an upper bound, not exact")


def _predict_protocol(w: _Work) -> None:
    from generator.protocol_predict import predict_protocol

    w.pgraph = w.spec.prediction_graph()
    try:
        pp = predict_protocol(w.pgraph, w.spec, full_graph=w.graph)
    except PredictionTooLarge as e:
        w.notes.append(f"no prediction: {e}")
        return
    exact = w.spec.exactly_predictable and not _unplanned_faults(w)
    if pp.detail is not None:
        w.prediction = pp.detail
        w.prediction_kind = "exact" if exact else "upper_bound"
    elif pp.deliveries is not None:
        w.deliveries_only = pp.deliveries
        w.prediction_kind = "deliveries" if exact else "upper_bound"
        w.notes.append(f"{w.protocol}: {pp.note}")
    else:
        w.notes.append(f"no exact prediction for protocol {w.protocol}: {pp.note}")


def _observe(w: _Work) -> None:
    """Frames and bytes per directed edge, from the receivers' logs, next to the prediction;
    and each peer's world view."""
    for p in w.ids:
        for s, (frames, nbytes) in w.peers[p].messages.by_sender.items():
            w.observed[(s, p)] = Flow(frames, nbytes)
    zero = Flow()
    true_edges = {(u, v) for a, b in w.graph.edges for u, v in ((a, b), (b, a))}
    for u, v in sorted(true_edges | set(w.observed)):
        f = w.observed.get((u, v), zero)
        e = w.prediction.per_edge.get((u, v), zero) if w.prediction else None
        w.edges.append({
            "src": u, "dst": v, "frames": f.frames, "bytes": f.bytes,
            "expected_frames": e.frames if e else None, "expected_bytes": e.bytes if e else None,
            "in_topology": (u, v) in true_edges,
        })
    _add_sent(w.edges, w.peers, w.ctx)
    from analysis.worldview import compare_views

    w.views = {p: frozenset(w.peers[p].messages.view) for p in range(w.n)}
    w.diffs = compare_views(w.graph, w.views)


def _per_peer(w: _Work) -> None:
    """Each peer's row, its errors, link failures and counter disagreements, each with what explains it."""
    zero = Flow()
    sent: dict[int, Flow] = {}
    for (u, _), f in w.observed.items():
        sent[u] = sent.get(u, zero) + f
    exp_in = w.prediction.per_peer_received() if w.prediction else {}
    for p in range(w.n):
        pl = w.peers[p]
        _file_problems(w, pl)
        _peer_events(w, p, pl.events)
        out = sent.get(p, zero)
        exp = exp_in.get(p, zero) if w.prediction else None
        d = w.diffs[p]
        ev, summ = pl.events, pl.events.summary or {}
        w.peer_rows.append({
            "id": p, "received": pl.messages.deliveries, "expected_received": exp.frames if exp else None,
            "bytes_in": pl.messages.bytes, "expected_bytes_in": exp.bytes if exp else None,
            "bytes_out": out.bytes, "frames_out": out.frames, "authors": len(pl.messages.by_author),
            "errors": sum(_count(r) for r in ev.errors) if ev.exists else None,
            "exit_reason": summ.get("exit_reason"), "duration": summ.get("duration"),
            "view_edges": len(w.views[p]), "view_missing": len(d.missing), "view_extra": len(d.extra),
            # Which implementation played this peer (spec.json "implementations"; "p2p": ours).
            "implementation": _implementation(w.spec, p),
        })
        for dis in _cross_check(p, pl, w.observed, pl.messages.deliveries, pl.messages.bytes, out):
            nb = dis["nbr"]
            dis["explained_by"] = w.ctx.link(p, nb) if nb is not None else (
                w.ctx.peer_fault(p) or next(filter(None, (w.ctx.link(p, x) for x in _nbrs(w.graph, p))), None))
            w.disagreements.append(dis)


def _implementation(spec: RunSpec | None, p: int) -> str:
    impl = spec.implementation_of(p) if spec is not None else None
    return impl.name if impl is not None else OURS


def _file_problems(w: _Work, pl: L.PeerLogs) -> None:
    msg, ev, tr = pl.messages, pl.events, pl.traffic
    if not msg.exists:
        w.problems.append(L.LogProblem(msg.file, None, "missing: this peer logged no messages file"))
    if w.spec is not None and w.spec.implementation_of(pl.peer) is not None:
        # Another implementation writes the original format only (its adapter says so): no events
        # log, and its traffic file is checked against what its neighbours logged (_cross_check).
        return
    if w.found.events and not w.original:
        if not ev.exists:
            w.problems.append(L.LogProblem(ev.file, None, "missing events log"))
        elif ev.summary is None:
            w.problems.append(L.LogProblem(ev.file, None, "no summary event: the peer did not exit cleanly"))
        if not tr.exists and ev.summary is not None:
            w.problems.append(L.LogProblem(tr.file, None, "missing traffic file although the peer exited"))


def _peer_events(w: _Work, p: int, ev: L.EventLog) -> None:
    for rec in ev.errors:
        nbr = rec.get("nbr")
        w.errors.append({
            "peer": p, "t": rec.get("t"), "nbr": nbr, "reason": rec.get("reason"),
            "detail": rec.get("detail", ""), "count": _count(rec),
            # A connection cut by a fault (a killed neighbour's half-sent frame) is the fault's doing.
            "explained_by": w.ctx.link(p, nbr) if isinstance(nbr, int) else None,
        })
    for rec in ev.link_failures:
        nbr = rec.get("nbr")
        why = w.ctx.link(p, nbr) if isinstance(nbr, int) else None
        w.link_failures.append({"peer": p, "t": rec.get("t"), "nbr": nbr, "reason": rec.get("reason"),
                                "due_to_fault": why is not None, "explained_by": why})


def _judge_and_sum_up(w: _Work, ttq: float | None, write: bool) -> tuple[dict[str, Any], dict[str, Any] | None]:
    """Totals, every missing delivery (v1), the verdict, and summary.json's content."""
    deliveries = sum(f.frames for f in w.observed.values())
    nbytes = sum(f.bytes for f in w.observed.values())
    # Peers a fault killed or restarted may lack a summary, a traffic file or even
    # logs, and may have torn a line: expected, reported, not held against the run.
    problem_dicts = []
    for pr in w.problems:
        d = pr.to_dict()
        owner = _peer_of(pr.file)
        d["due_to_fault"] = owner in w.ctx.peers
        d["explained_by"] = w.ctx.peer_fault(owner) if owner is not None else None
        problem_dicts.append(d)
    missing = None
    faults = tuple(w.spec.faults) if w.spec is not None else ()
    if w.prediction is not None and w.protocol == "v1" and (
            deliveries != w.prediction.deliveries or faults or w.ctx.any):
        from analysis.missing import missing_report

        missing = missing_report(w.pgraph, w.log_dir, w.n, w.ctx, out_dir=w.run_dir if write else None)
        if missing is None:
            w.notes.append("too many predicted deliveries to list the missing ones")
    exits = _exits(w.run_dir, w.ctx, w.link_failures)
    expected = w.prediction.deliveries if w.prediction else w.deliveries_only
    verdict, unexplained = judge(
        kind=w.prediction_kind if expected is not None else None,
        deliveries=deliveries, expected=expected,
        nbytes=nbytes, expected_bytes=w.prediction.bytes if w.prediction else None,
        missing=missing, protocol=w.protocol, ctx=w.ctx,
        lists={"protocol errors": w.errors, "log problems": problem_dicts, "link failures": w.link_failures,
               "counter disagreements": w.disagreements, "peer exits": exits},
    )
    n, diffs = w.n, w.diffs
    summary: dict[str, Any] = {
        "run_id": w.run_dir.resolve().name,
        "topology": w.topology,
        "n": n,
        "protocol": w.protocol,
        "spec": json.loads(w.spec.to_json()) if w.spec else None,
        "faults": [str(f) for f in faults],
        "prediction": w.prediction_kind,
        "format": "original" if w.original else "p2p",
        "inferred": w.inferred,
        "notes": w.notes,
        "ok": verdict == "OK",
        "verdict": verdict,
        "explained": verdict in ("OK", "EXPLAINED"),
        "unexplained": unexplained,
        "deliveries": deliveries,
        "expected_deliveries": expected,
        "bytes": nbytes,
        "expected_bytes": w.prediction.bytes if w.prediction else None,
        "time_to_quiescence": ttq,
        "short_peers": [r["id"] for r in w.peer_rows if r["received"] < r["expected_received"]]
        if w.prediction is not None else None,
        "worldview": {
            "complete": [p for p in range(n) if not diffs[p].missing and not diffs[p].extra],
            "missing_edges": {str(p): len(diffs[p].missing) for p in range(n) if diffs[p].missing},
            "extra_edges": {str(p): len(diffs[p].extra) for p in range(n) if diffs[p].extra},
        },
        "peers": w.peer_rows,
        "edges": w.edges,
        "log_problems": problem_dicts,
        "errors": w.errors,
        "link_failures": w.link_failures,
        "disagreements": w.disagreements,
        "missing_deliveries": None if missing is None else missing["missing_count"],
        "unexpected_deliveries": None if missing is None else missing["unexpected_count"],
        "repeated_deliveries": None if missing is None else missing["repeated_count"],
        "missing_explained_by": None if missing is None else missing["explained_by"],
        "missing_listing": None if missing is None else missing["listing"],
        "faults_applied": [a.to_dict() for a in w.ctx.applied],
        "faults_not_fired": list(w.ctx.not_fired),
        "exits": exits,
    }
    return summary, missing


# ---- helpers -------------------------------------------------------------------


def judge(*, kind: str | None, deliveries: int, expected: int | None, nbytes: int, expected_bytes: int | None,
          missing: dict[str, Any] | None, protocol: str, ctx: FaultContext,
          lists: dict[str, list[dict[str, Any]]]) -> tuple[str, list[str]]:
    """The run's verdict and, when it is NOT OK, every reason.

    OK: the counts equal the prediction and nothing is unexplained. EXPLAINED: the
    prediction is an upper bound (faults, loss) and every shortfall, repeat, error,
    disagreement and non-zero exit is explained by a fault that fired or a lossy link.
    NOT OK: something is not. NOT CHECKED: there was nothing to check against.
    """
    reasons: list[str] = []
    if kind in ("exact", "deliveries"):
        if deliveries != expected:
            reasons.append(f"{deliveries:,} deliveries observed, {expected:,} predicted exactly")
        if kind == "exact" and nbytes != expected_bytes:
            reasons.append(f"{nbytes:,} bytes observed, {expected_bytes:,} predicted exactly")
    elif kind == "upper_bound":
        if missing is not None:
            for what, count in missing["unexplained"].items():
                if count:
                    reasons.append(f"{count:,} {what} deliveries that no fault explains (missing.jsonl)")
        elif deliveries > expected:
            reasons.append(f"{deliveries:,} deliveries observed, more than the upper bound {expected:,}")
        elif deliveries < expected and protocol == "v1":
            reasons.append(f"a shortfall of {expected - deliveries:,} deliveries that could not be checked "
                           "path by path (too many predicted)")
        elif deliveries < expected and not ctx.any:
            reasons.append(f"a shortfall of {expected - deliveries:,} deliveries, and no fault fired")
    for what, items in lists.items():
        bad = sum(item.get("count", 1) for item in items if not item.get("explained_by"))
        if bad:
            reasons.append(f"{bad:,} {what} that no fault explains")
    if expected is None or kind is None:
        return "NOT CHECKED", reasons
    if reasons:
        return "NOT OK", reasons
    exact = deliveries == expected and (expected_bytes is None or nbytes == expected_bytes)
    return ("OK" if exact else "EXPLAINED"), reasons


def _count(rec: dict[str, Any]) -> int:
    """How many occurrences an event record stands for (peers aggregate repeats: ``count``)."""
    count = rec.get("count", 1)
    return count if isinstance(count, int) and not isinstance(count, bool) and count > 0 else 1


def _nbrs(graph: nx.Graph, p: int) -> list[int]:
    return sorted(graph.neighbors(p)) if p in graph else []


EXITS_FILE = "exits.json"


def _exits(run_dir: Path, ctx: FaultContext, link_failures: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Peers that did not exit 0 (from exits.json, written by `p2p run`), each with what explains it.

    A killed or restarted peer's code is the fault's; exit code 2 (a link never came up)
    is explained when every link failure of that peer is.
    """
    try:
        data = json.loads((run_dir / EXITS_FILE).read_text())
        codes = data["exit_codes"]
        quiet = set(data.get("quiescence_stops") or ())
    except (OSError, ValueError, KeyError, TypeError):
        return []
    out = []
    for key, code in sorted(codes.items(), key=lambda kv: int(kv[0]) if str(kv[0]).isdigit() else -1):
        if code == 0 or not str(key).isdigit():
            continue
        p = int(key)
        # A foreign peer stopped by the runner when its logs went quiet (its adapter's exit rule).
        why = ctx.peer_fault(p) or ("stopped at quiescence (adapter exit rule)" if p in quiet else None)
        if why is None and code == 2:
            mine = [lf for lf in link_failures if lf["peer"] == p]
            if mine and all(lf.get("explained_by") for lf in mine):
                why = mine[0]["explained_by"]
        out.append({"peer": p, "code": code, "explained_by": why})
    return out


def _add_sent(edges: list[dict[str, Any]], peers: dict[int, L.PeerLogs], ctx: FaultContext) -> None:
    """Add what each sender counted (summary event, else traffic file) to each directed edge,
    and, where that differs from what the receiver logged, the fault that explains it."""
    for e in edges:
        u, v = e["src"], e["dst"]
        pl = peers.get(u)
        frames = nbytes = None
        if pl is not None:
            link = ((pl.events.summary or {}).get("links") or {}).get(str(v))
            if isinstance(link, dict):
                frames, nbytes = link.get("frames_out"), link.get("bytes_out")
            elif v in pl.traffic.links:
                nbytes = pl.traffic.links[v][1]
        e["sent_frames"], e["sent_bytes"] = frames, nbytes
        differs = nbytes is not None and nbytes != e["bytes"] or frames is not None and frames != e["frames"]
        e["sent_differs_explained_by"] = ctx.link(u, v) if differs else None


def _peer_of(file: str) -> int | None:
    head = file.split(".", 1)[0]
    return int(head) if head.isdigit() else None


def _n_from_start_events(found: L.LogDir) -> int | None:
    ns = set()
    for p, path in found.events.items():
        ev = L.read_events(path, p)
        if ev.start and isinstance(ev.start.get("n"), int):
            ns.add(ev.start["n"])
    return ns.pop() if len(ns) == 1 else None


def _infer_graph(n: int, peers: dict[int, L.PeerLogs], starts: dict[int, dict]) -> tuple[nx.Graph, str]:
    g = nx.Graph()
    g.add_nodes_from(range(n))
    if starts and len(starts) == n:
        for p, s in starts.items():
            for nb in s.get("neighbours") or []:
                if isinstance(nb, int) and 0 <= nb < n and nb != p:
                    g.add_edge(p, nb)
        return g, "from the neighbour lists in the peers' start events"
    for pl in peers.values():
        for a, b in pl.messages.view:
            if a != b and a < n and b < n:
                g.add_edge(a, b)
        for nb in pl.traffic.links:
            if nb != pl.peer and nb < n and pl.peer < n:
                g.add_edge(pl.peer, nb)
    return g, "inferred from the hop lists (consecutive hops, last hop to receiver) and the traffic files"


def _recognise(graph: nx.Graph) -> str:
    n = graph.number_of_nodes()
    edges = {frozenset(e) for e in graph.edges}
    for name in ("mesh", "cycle", "starfish"):
        try:
            g = build_graph(name, n)
        except P2PError:
            continue
        if {frozenset(e) for e in g.edges} == edges:
            return name
    return "unknown"


def _cross_check(
    p: int, pl: L.PeerLogs, observed: dict[Edge, Flow], recv: int, recv_bytes: int, out: Flow
) -> list[dict[str, Any]]:
    """Disagreements between the peer's own counters and what its neighbours logged."""
    res: list[dict[str, Any]] = []
    zero = Flow()

    def diff(source: str, what: str, nbr: int | None, logged: Any, seen: int) -> None:
        if logged != seen:
            res.append({"peer": p, "source": source, "what": what, "nbr": nbr, "logged": logged, "observed": seen})

    s = pl.events.summary
    if s is not None:
        src = "summary event"
        diff(src, "recv", None, s.get("recv"), recv)
        diff(src, "recv_bytes", None, s.get("recv_bytes"), recv_bytes)
        diff(src, "sent", None, s.get("sent"), out.frames)
        diff(src, "sent_bytes", None, s.get("sent_bytes"), out.bytes)
        links = s.get("links") or {}
        for key, lk in sorted(links.items(), key=lambda kv: int(kv[0]) if str(kv[0]).isdigit() else -1):
            try:
                nb = int(key)
            except ValueError:
                continue
            fin, fout = observed.get((nb, p), zero), observed.get((p, nb), zero)
            diff(src, "frames_in", nb, lk.get("frames_in"), fin.frames)
            diff(src, "bytes_in", nb, lk.get("bytes_in"), fin.bytes)
            diff(src, "frames_out", nb, lk.get("frames_out"), fout.frames)
            diff(src, "bytes_out", nb, lk.get("bytes_out"), fout.bytes)
    tr = pl.traffic
    if tr.exists:
        src = "traffic file"
        for nb, (bin_, bout) in sorted(tr.links.items()):
            diff(src, "bytes_in", nb, bin_, observed.get((nb, p), zero).bytes)
            diff(src, "bytes_out", nb, bout, observed.get((p, nb), zero).bytes)
        for (u, v), f in sorted(observed.items()):
            if f.frames and p in (u, v) and (v if u == p else u) not in tr.links:
                nb = v if u == p else u
                what = "bytes_out" if u == p else "bytes_in"
                diff(src, what, nb, None, f.bytes)
    return res


def _timeline(peers: dict[int, L.PeerLogs]) -> tuple[dict[int, list[tuple[float, int]]], float | None]:
    """Per-peer cumulative deliveries over time, and the time to quiescence.

    Time to quiescence = the last moment any peer's receive count was seen to grow
    (a progress event, or the summary event when it reports more than the last
    progress event) minus the earliest start event. Progress events are written at
    most every 100 ms, which bounds the resolution.
    """
    starts = [pl.events.start["t"] for pl in peers.values() if pl.events.start]
    if not starts:
        return {}, None
    t0 = min(starts)
    series: dict[int, list[tuple[float, int]]] = {}
    last_growth: float | None = None
    for p, pl in sorted(peers.items()):
        ev = pl.events
        if not ev.exists:
            continue
        pts: list[tuple[float, int]] = []
        if ev.start:
            pts.append((ev.start["t"] - t0, 0))
        pts += [(t - t0, recv) for t, recv, _sent in ev.progress]
        s = ev.summary
        if s is not None and isinstance(s.get("recv"), int):
            pts.append((s["t"] - t0, s["recv"]))
        grew = ev.last_growth()
        if grew is not None:
            last_growth = grew if last_growth is None else max(last_growth, grew)
        series[p] = [(round(t, 6), r) for t, r in pts]
    ttq = None if last_growth is None else round(max(0.0, last_growth - t0), 6)
    return series, ttq
