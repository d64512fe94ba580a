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
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import networkx as nx

from analysis import logs as L
from analysis.explain import FaultContext, fault_context
from analysis._util import AnalysisError, atomic_write, dump_json, fmt_bytes, fmt_int, fmt_seconds, table
from generator.errors import P2PError
from generator.predict import Flow, Prediction, PredictionTooLarge, predict, with_restarts
from generator.spec import RunSpec
from generator.topologies import FAMILIES, build_graph

Edge = tuple[int, int]
PREDICTION_CAP = 1_000_000  # path enumeration budget (at least 4x the deliveries observed)


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
        """``mesh-5`` style label."""
        return f"{self.topology}-{self.n}"


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
    (None: automatic, 1: serial).
    """
    say = progress or (lambda _msg: None)
    run_dir = Path(run_dir)
    if not run_dir.is_dir():
        raise AnalysisError(f"no such run directory: {run_dir}")
    t_start = time.perf_counter()
    log_dir = L.find_log_dir(run_dir)
    found = L.scan(log_dir)
    if not found.ids:
        raise AnalysisError(f"no peer logs (<id>.txt, <id>.traffic.txt, <id>.events.jsonl) in {log_dir}")
    inferred: list[str] = []  # facts taken from the logs rather than a spec
    notes: list[str] = []  # about the prediction
    problems: list[L.LogProblem] = []

    spec_path = run_dir / "spec.json"
    spec = RunSpec.load(spec_path) if spec_path.exists() else None
    n: int | None = spec.n if spec else None
    if spec is None:
        inferred.append("no spec.json: topology, n and protocol inferred from the logs")
        n = _n_from_start_events(found)

    ids = sorted(set(found.ids) | set(range(n or 0)))
    from peer.protocols import PROTOCOLS as PROTOCOL_CLASSES

    own_id_ok = spec is not None and getattr(PROTOCOL_CLASSES.get(spec.protocol), "accepts_own_id", False)
    with L.receiver_in_hops_allowed(own_id_ok):
        peers = L.read_all(log_dir, ids, n, workers=workers)
    t_read = time.perf_counter()
    for p in ids:
        problems.extend(peers[p].problems)

    original = found.original_format
    # ---- n, protocol, topology ----------------------------------------------
    if n is None:
        n = 1 + max(
            [p for p in ids]
            + [pl.messages.max_id for pl in peers.values()]
            + [nb for pl in peers.values() for nb in pl.traffic.links]
        )
        inferred.append(f"n = {n}: the highest peer id seen in file names, hop lists and traffic files, plus one")
        ids = sorted(set(ids) | set(range(n)))
        for p in ids:
            if p not in peers:
                peers[p] = L.read_peer(log_dir, p, n)
    elif spec is None:
        inferred.append(f"n = {n}: from the peers' start events")
    outside = [p for p in ids if p >= n]
    for p in outside:
        problems.append(L.LogProblem(f"{p}.*", None, f"logs of peer {p}, which is not in the run (n={n})"))
    starts = {p: pl.events.start for p, pl in peers.items() if pl.events.start}
    if spec is not None:
        protocol = spec.protocol
    else:
        protos = sorted({str(s.get("protocol")) for s in starts.values()})
        if len(protos) == 1:
            protocol = protos[0]
            inferred.append(f"protocol {protocol}: from the peers' start events")
        else:
            protocol = "v1"
            why = "no start events" if not protos else f"start events disagree ({', '.join(protos)})"
            inferred.append(f"protocol v1 assumed ({why}; the original tool's protocol)")

    if spec is not None:
        graph = spec.graph()
        topology = spec.topology
    else:
        graph, how = _infer_graph(n, peers, starts)
        topology = _recognise(graph)
        inferred.append(
            f"topology {how}; "
            + (f"it is exactly {topology}-{n}" if topology != "unknown" else "it matches no known family")
        )
    if original:
        inferred.append(
            "original tool's format (no events logs): errors, exit reasons, durations and "
            "time to quiescence are unavailable"
        )

    # ---- prediction ---------------------------------------------------------
    prediction: Prediction | None = None
    deliveries_only: int | None = None  # exact deliveries when nothing else is predicted (flood)
    prediction_kind: str | None = None
    faults = tuple(spec.faults) if spec is not None else ()
    ctx, fault_log_problems = fault_context(run_dir, spec)
    problems.extend(L.LogProblem("faults.jsonl", None, text) for text in fault_log_problems)
    if protocol == "v1":
        # Faults declared at start (kills, partitions for good) leave plain v1 on the
        # surviving graph; any later fault makes that prediction an upper bound.
        if spec is not None:
            pgraph, family = spec.prediction_input()
        else:
            pgraph, family = graph, (topology if topology in FAMILIES else None)
        same = pgraph is graph or family is not None
        # Enumerating paths (no closed form) costs about as much per delivery as
        # reading one; past a cap tied to what was observed, give up on a prediction.
        seen = sum(pl.messages.deliveries for pl in peers.values())
        cap = max(PREDICTION_CAP, 4 * seen)
        try:
            prediction = predict(pgraph, family=family, cap=cap)
            if ctx.restarts:
                prediction = with_restarts(prediction, pgraph, ctx.restarts, cap=cap)
                notes.append("restarted peers author again (a new incarnation): the bound counts one more "
                             "flood of their message per restart")
            exact = spec.exactly_predictable if spec is not None else True
            prediction_kind = "exact" if exact else "upper_bound"
            if not same:
                notes.append("prediction made on the graph left after the faults declared at start")
            if not exact:
                notes.append("faults during the run: the prediction is an upper bound, not exact")
        except PredictionTooLarge as e:
            notes.append(f"no prediction: {e}")
    elif spec is not None:
        from generator.protocol_predict import predict_protocol

        pgraph = spec.prediction_graph()
        try:
            pp = predict_protocol(pgraph, spec, full_graph=graph)
        except PredictionTooLarge as e:
            pp = None
            notes.append(f"no prediction: {e}")
        if pp is not None and pp.detail is not None:
            prediction = pp.detail
            prediction_kind = "exact" if spec.exactly_predictable else "upper_bound"
        elif pp is not None and pp.deliveries is not None:
            deliveries_only = pp.deliveries
            notes.append(f"{protocol}: {pp.note}")
        elif pp is not None:
            notes.append(f"no exact prediction for protocol {protocol}: {pp.note}")
    else:
        notes.append(f"no prediction for protocol {protocol} without a spec")
    if prediction is not None and spec is None:
        notes.append("expected values are computed on the inferred topology")
    # Peers a fault killed or restarted may lack a summary, a traffic file or even
    # logs, and may have torn a line: expected, reported, not held against the run.
    faulted = ctx.peers
    if ctx.not_fired:
        notes.append(f"faults that never fired (their trigger was not reached): {', '.join(ctx.not_fired)}")

    # ---- observed flows -----------------------------------------------------
    observed: dict[Edge, Flow] = {}
    for p in ids:
        for s, (frames, nbytes) in peers[p].messages.by_sender.items():
            observed[(s, p)] = Flow(frames, nbytes)
    zero = Flow()
    true_edges = {(u, v) for a, b in graph.edges for u, v in ((a, b), (b, a))}
    edge_keys = sorted(true_edges | set(observed))
    edges = []
    for u, v in edge_keys:
        f = observed.get((u, v), zero)
        e = prediction.per_edge.get((u, v), zero) if prediction else None
        edges.append(
            {
                "src": u,
                "dst": v,
                "frames": f.frames,
                "bytes": f.bytes,
                "expected_frames": e.frames if e else None,
                "expected_bytes": e.bytes if e else None,
                "in_topology": (u, v) in true_edges,
            }
        )
    sent: dict[int, Flow] = {}
    for (u, _), f in observed.items():
        sent[u] = sent.get(u, zero) + f
    exp_in = prediction.per_peer_received() if prediction else {}

    # ---- world views --------------------------------------------------------
    from analysis.worldview import compare_views

    views = {p: frozenset(peers[p].messages.view) for p in range(n)}
    diffs = compare_views(graph, views)

    # ---- per peer -----------------------------------------------------------
    peer_rows = []
    errors: list[dict[str, Any]] = []
    link_failures: list[dict[str, Any]] = []
    disagreements: list[dict[str, Any]] = []
    for p in range(n):
        pl = peers[p]
        msg, ev, tr = pl.messages, pl.events, pl.traffic
        if not msg.exists:
            problems.append(L.LogProblem(msg.file, None, "missing: this peer logged no messages file"))
        if found.events and not original:
            if not ev.exists:
                problems.append(L.LogProblem(ev.file, None, "missing events log"))
            elif ev.summary is None:
                problems.append(L.LogProblem(ev.file, None, "no summary event: the peer did not exit cleanly"))
            if not tr.exists and ev.summary is not None:
                problems.append(L.LogProblem(tr.file, None, "missing traffic file although the peer exited"))
        for rec in ev.errors:
            nbr = rec.get("nbr")
            count = _count(rec)
            errors.append(
                {
                    "peer": p,
                    "t": rec.get("t"),
                    "nbr": nbr,
                    "reason": rec.get("reason"),
                    "detail": rec.get("detail", ""),
                    "count": count,
                    # A connection cut by a fault (a killed neighbour's half-sent frame) is the fault's doing.
                    "explained_by": ctx.link(p, nbr) if isinstance(nbr, int) else None,
                }
            )
        for rec in ev.link_failures:
            nbr = rec.get("nbr")
            why = ctx.link(p, nbr) if isinstance(nbr, int) else None
            link_failures.append({"peer": p, "t": rec.get("t"), "nbr": nbr, "reason": rec.get("reason"),
                                  "due_to_fault": why is not None, "explained_by": why})
        out = sent.get(p, zero)
        summ = ev.summary or {}
        exp = exp_in.get(p, zero) if prediction else None
        d = diffs[p]
        peer_rows.append(
            {
                "id": p,
                "received": msg.deliveries,
                "expected_received": exp.frames if exp else None,
                "bytes_in": msg.bytes,
                "expected_bytes_in": exp.bytes if exp else None,
                "bytes_out": out.bytes,
                "frames_out": out.frames,
                "authors": len(msg.by_author),
                "errors": sum(_count(r) for r in ev.errors) if ev.exists else None,
                "exit_reason": summ.get("exit_reason"),
                "duration": summ.get("duration"),
                "view_edges": len(views[p]),
                "view_missing": len(d.missing),
                "view_extra": len(d.extra),
            }
        )
        for d in _cross_check(p, pl, observed, msg.deliveries, msg.bytes, out):
            nb = d["nbr"]
            d["explained_by"] = ctx.link(p, nb) if nb is not None else (
                ctx.peer_fault(p) or next(filter(None, (ctx.link(p, x) for x in _nbrs(graph, p))), None))
            disagreements.append(d)

    # ---- time ---------------------------------------------------------------
    timeline, ttq = _timeline(peers)

    # ---- totals and verdict -------------------------------------------------
    deliveries = sum(f.frames for f in observed.values())
    nbytes = sum(f.bytes for f in observed.values())
    short = (
        [r["id"] for r in peer_rows if r["received"] < r["expected_received"]] if prediction is not None else None
    )
    problem_dicts = []
    for pr in problems:
        d = pr.to_dict()
        owner = _peer_of(pr.file)
        d["due_to_fault"] = owner in faulted
        d["explained_by"] = ctx.peer_fault(owner) if owner is not None else None
        problem_dicts.append(d)
    missing = None
    if prediction is not None and protocol == "v1" and (deliveries != prediction.deliveries or faults or ctx.any):
        from analysis.missing import missing_report

        missing = missing_report(pgraph, log_dir, n, ctx, out_dir=run_dir if write else None)
        if missing is None:
            notes.append("too many predicted deliveries to list the missing ones")
    if deliveries_only is not None:
        prediction_kind = "deliveries" if spec is None or spec.exactly_predictable else "upper_bound"
    exits = _exits(run_dir, ctx, link_failures)
    _add_sent(edges, peers, ctx)
    expected_deliveries = prediction.deliveries if prediction else deliveries_only
    verdict, unexplained = judge(
        kind=prediction_kind if expected_deliveries is not None else None,
        deliveries=deliveries, expected=expected_deliveries,
        nbytes=nbytes, expected_bytes=prediction.bytes if prediction else None,
        missing=missing, protocol=protocol, ctx=ctx,
        lists={"protocol errors": errors,
               "log problems": problem_dicts, "link failures": link_failures,
               "counter disagreements": disagreements, "peer exits": exits},
    )
    ok = verdict == "OK"
    summary: dict[str, Any] = {
        "run_id": run_dir.resolve().name,
        "topology": topology,
        "n": n,
        "protocol": protocol,
        "spec": json.loads(spec.to_json()) if spec else None,
        "faults": [str(f) for f in faults],
        "prediction": prediction_kind,
        "format": "original" if original else "p2p",
        "inferred": inferred,
        "notes": notes,
        "ok": ok,
        "verdict": verdict,
        "explained": verdict in ("OK", "EXPLAINED"),
        "unexplained": unexplained,
        "deliveries": deliveries,
        "expected_deliveries": prediction.deliveries if prediction else deliveries_only,
        "bytes": nbytes,
        "expected_bytes": prediction.bytes if prediction else None,
        "time_to_quiescence": ttq,
        "short_peers": short,
        "worldview": {
            "complete": [p for p in range(n) if not diffs[p].missing and not diffs[p].extra],
            "missing_edges": {str(p): len(diffs[p].missing) for p in range(n) if diffs[p].missing},
            "extra_edges": {str(p): len(diffs[p].extra) for p in range(n) if diffs[p].extra},
        },
        "peers": peer_rows,
        "edges": edges,
        "log_problems": problem_dicts,
        "errors": errors,
        "link_failures": link_failures,
        "disagreements": disagreements,
        "missing_deliveries": None if missing is None else missing["missing_count"],
        "unexpected_deliveries": None if missing is None else missing["unexpected_count"],
        "repeated_deliveries": None if missing is None else missing["repeated_count"],
        "missing_explained_by": None if missing is None else missing["explained_by"],
        "missing_listing": None if missing is None else missing["listing"],
        "faults_applied": [a.to_dict() for a in ctx.applied],
        "faults_not_fired": list(ctx.not_fired),
        "exits": exits,
    }
    analysis = Analysis(
        run_dir=run_dir,
        log_dir=log_dir,
        summary=summary,
        spec=spec,
        graph=graph,
        prediction=prediction,
        observed=observed,
        views=views,
        timeline=timeline,
    )
    say(
        f"analysed {run_dir}: {fmt_int(deliveries)} deliveries from {len(ids)} peers "
        f"(read {t_read - t_start:.2f} s, total {time.perf_counter() - t_start:.2f} s)"
    )
    if write:
        if missing is not None:
            atomic_write(run_dir / "missing.json", dump_json(missing))
            analysis.files.append(run_dir / "missing.json")
        atomic_write(run_dir / "summary.json", dump_json(summary))
        atomic_write(run_dir / "stats.txt", format_stats(analysis))
        from analysis.worldview import write_worldview

        analysis.files.extend([run_dir / "summary.json", run_dir / "stats.txt", *write_worldview(analysis)])
    if plots:
        from analysis.plots import make_plots

        analysis.files.extend(make_plots(analysis, progress=say))
    return analysis


# ---- helpers -------------------------------------------------------------------


VERDICTS = ("OK", "EXPLAINED", "NOT OK", "NOT CHECKED")


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
    except (OSError, ValueError, KeyError, TypeError):
        return []
    out = []
    for key, code in sorted(codes.items(), key=lambda kv: int(kv[0]) if str(kv[0]).isdigit() else -1):
        if code == 0 or not str(key).isdigit():
            continue
        p = int(key)
        why = ctx.peer_fault(p)
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
        prev = 0
        for t, recv, _sent in ev.progress:
            pts.append((t - t0, recv))
            if recv > prev:
                last_growth = t if last_growth is None else max(last_growth, t)
            prev = max(prev, recv)
        s = ev.summary
        if s is not None and isinstance(s.get("recv"), int):
            pts.append((s["t"] - t0, s["recv"]))
            if s["recv"] > prev:
                last_growth = s["t"] if last_growth is None else max(last_growth, s["t"])
        series[p] = [(round(t, 6), r) for t, r in pts]
    ttq = None if last_growth is None else round(max(0.0, last_growth - t0), 6)
    return series, ttq


# ---- text output ---------------------------------------------------------------


def _verdict(s: dict[str, Any]) -> str:
    verdict = s.get("verdict")
    if verdict == "EXPLAINED":
        return "EXPLAINED (below the upper bound; every shortfall explained by a fault or a lossy link)"
    if verdict == "NOT CHECKED":
        return "NOT CHECKED (no prediction)"
    return verdict or ("OK" if s["ok"] else "NOT OK")


def _vs(obs: int, exp: int | None, fmt: Callable[[Any], str] = fmt_int, bound: bool = False) -> str:
    if exp is None:
        return f"{fmt(obs)} observed (no prediction)"
    what = "predicted upper bound" if bound else "predicted"
    if obs == exp:
        return f"{fmt(obs)} observed = {what}"
    delta = obs - exp
    pct = f", {100 * obs / exp:.1f} %" if exp else ""
    return f"{fmt(obs)} observed, {fmt(exp)} {what} ({'+' if delta > 0 else ''}{delta:,}{pct})"


SUMMARY_PEER_ROWS = 40


def _peer_table(s: dict[str, Any], full: bool, limit: int | None = None) -> str:
    """Per-peer table; with ``limit``, short peers first, then the lowest ids."""
    peers = s["peers"]
    if limit is not None and len(peers) > limit:
        short = set(s["short_peers"] or [])
        peers = sorted(peers, key=lambda r: (r["id"] not in short, r["id"]))[:limit]
        peers.sort(key=lambda r: r["id"])
    rows = []
    for r in peers:
        short = r["expected_received"] is not None and r["received"] < r["expected_received"]
        row = [
            r["id"],
            fmt_int(r["received"]),
            fmt_int(r["expected_received"]),
            fmt_bytes(r["bytes_in"]),
            fmt_bytes(r["bytes_out"]),
        ]
        if full:
            row += [fmt_int(r["frames_out"]), r["authors"]]
        row += [
            "-" if r["errors"] is None else r["errors"],
            r["exit_reason"] or "-",
            fmt_seconds(r["duration"]),
        ]
        if full:
            view = "complete" if not r["view_missing"] and not r["view_extra"] else (
                f"{r['view_missing']} missing, {r['view_extra']} extra"
            )
            row.append(view)
        row.append("SHORT" if short else "")
        rows.append(row)
    headers = ["peer", "received", "expected", "bytes in", "bytes out"]
    if full:
        headers += ["frames out", "authors"]
    headers += ["errors", "exit", "duration"]
    if full:
        headers.append("world view")
    headers.append("")
    align = "r" * 8 + "lrll" if full else "r" * 6 + "lrl"
    text = table(headers, rows, align)
    if len(peers) < len(s["peers"]):
        text += f"\n... {len(s['peers']) - len(peers)} more peers in stats.txt"
    return text


def _why(item: dict[str, Any]) -> str:
    """' (explained: FAULT)' for an item a fault explains; '' otherwise."""
    why = item.get("explained_by")
    if why is None and item.get("due_to_fault"):  # summaries written before explanations were named
        why = "fault"
    return f" (explained: {why})" if why else ""


def _problem_lines(s: dict[str, Any], limit: int | None) -> list[str]:
    out = []
    items = [
        f"{p['file']}{':' + str(p['line']) if p['line'] is not None else ''}: {p['problem']}{_why(p)}"
        for p in s["log_problems"]
    ]
    items += [
        f"peer {e['peer']}: protocol error on link {e['nbr'] if e['nbr'] is not None else '?'}: {e['reason']}"
        + (f" x{e['count']}" if e.get("count", 1) > 1 else "")
        + (f" ({e['detail']})" if e["detail"] else "") + _why(e)
        for e in s["errors"]
    ]
    items += [
        f"peer {e['peer']}: link to {e['nbr']} failed: {e['reason']}{_why(e)}"
        for e in s["link_failures"]
    ]
    items += [
        f"peer {d['peer']}: {d['source']} says {d['what']}"
        + (f" (link {d['nbr']})" if d["nbr"] is not None else "")
        + f" = {d['logged']}, the message logs (<id>.txt) say {d['observed']}{_why(d)}"
        for d in s["disagreements"]
    ]
    items += [f"peer {x['peer']}: exit code {x['code']}{_why(x)}" for x in s.get("exits") or []]
    if limit is not None and len(items) > limit:
        out = items[:limit] + [f"... and {len(items) - limit} more (see stats.txt / summary.json)"]
    else:
        out = items
    return out


def _fired_lines(s: dict[str, Any]) -> list[str]:
    out = []
    for a in s.get("faults_applied") or []:
        when = [f"t={a['elapsed']:.3f} s" if a.get("elapsed") is not None else "",
                f"at {a['deliveries']:,} deliveries" if a.get("deliveries") is not None else ""]
        out.append(f"  fired             {a['fault']}  {', '.join(w for w in when if w)}")
    for f in s.get("faults_not_fired") or []:
        out.append(f"  never fired       {f}")
    return out


def _missing_lines(s: dict[str, Any]) -> list[str]:
    if s.get("missing_deliveries") is None:
        return []
    listing = s.get("missing_listing") or "missing.json"
    out = [f"  missing deliveries (author, path): {fmt_int(s['missing_deliveries'])}, unexpected: "
           f"{fmt_int(s['unexpected_deliveries'])}, repeated: {fmt_int(s.get('repeated_deliveries') or 0)}"
           f" (every one listed in {listing})"]
    for why, count in list((s.get("missing_explained_by") or {}).items())[:8]:
        out.append(f"    {fmt_int(count)} explained by {why}")
    return out


def format_summary(analysis: Analysis) -> str:
    """Short text for the terminal."""
    s = analysis.summary
    bound = s["prediction"] == "upper_bound"
    lines = [
        f"run {s['run_id']}: {s['topology']}-{s['n']}, protocol {s['protocol']} -- {_verdict(s)}",
        f"  deliveries: {_vs(s['deliveries'], s['expected_deliveries'], bound=bound)}",
        f"  bytes:      {_vs(s['bytes'], s['expected_bytes'], bound=bound)}",
    ]
    if s["faults"]:
        lines.append(f"  faults: {' '.join(s['faults'])}")
    if s["time_to_quiescence"] is not None:
        lines.append(f"  time to quiescence: {fmt_seconds(s['time_to_quiescence'])}")
    for note in s["inferred"]:
        lines.append(f"  inferred: {note}")
    for note in s["notes"]:
        lines.append(f"  note: {note}")
    lines.append("")
    lines.append(_peer_table(s, full=False, limit=SUMMARY_PEER_ROWS))
    lines += _missing_lines(s)
    if s.get("unexplained"):
        lines.append("")
        lines.append("unexplained:")
        lines += [f"  {r}" for r in s["unexplained"]]
    if s["short_peers"]:
        lines.append("")
        sp = s["short_peers"]
        lines.append(f"short peers ({len(sp)}): {', '.join(map(str, sp[:40]))}{' ...' if len(sp) > 40 else ''}")
    wv = s["worldview"]
    if wv["missing_edges"] or wv["extra_edges"]:
        lines.append(
            f"world views: {len(wv['complete'])}/{s['n']} complete; "
            f"missing edges at {len(wv['missing_edges'])} peers, extra edges at {len(wv['extra_edges'])} peers"
        )
    probs = _problem_lines(s, limit=10)
    if probs:
        lines.append("")
        lines.append(f"problems ({len(_problem_lines(s, None))}):")
        lines += [f"  {p}" for p in probs]
    return "\n".join(lines)


def format_stats(analysis: Analysis) -> str:
    """The content of stats.txt."""
    s = analysis.summary
    bound = s["prediction"] == "upper_bound"
    spec = s["spec"]
    out = [f"Run {s['run_id']}: {s['topology']}-{s['n']}, protocol {s['protocol']} -- {_verdict(s)}", ""]
    if spec:
        opts = ", ".join(f"{k} {v:g}" if isinstance(v, float) else f"{k} {v}" for k, v in spec["options"].items())
        seed = "-" if spec.get("seed") is None else spec["seed"]
        out.append(f"spec: topology {spec['topology']}, n {spec['n']}, protocol {spec['protocol']}, "
                   f"seed {seed}, port {spec.get('port')}; peer options: {opts}")
    else:
        out.append("spec: none (inferred from the logs)")
    out.append(f"logs: {analysis.log_dir} ({s['format']} format)")
    for note in s["inferred"]:
        out.append(f"inferred: {note}")
    for note in s["notes"]:
        out.append(f"note: {note}")
    out += [
        "",
        f"deliveries          {_vs(s['deliveries'], s['expected_deliveries'], bound=bound)}",
        f"bytes               {_vs(s['bytes'], s['expected_bytes'], lambda x: f'{x:,}', bound=bound)}",
        f"faults              {' '.join(s['faults']) or 'none'}",
        *_fired_lines(s),
        f"time to quiescence  {fmt_seconds(s['time_to_quiescence'])}",
        f"short peers         {'-' if s['short_peers'] is None else (', '.join(map(str, s['short_peers'])) or 'none')}",
        f"world views         {len(s['worldview']['complete'])}/{s['n']} equal to the topology",
        "",
        "Peers",
        _peer_table(s, full=True),
        "",
        "Edges (sender -> receiver)",
    ]
    rows = []
    for e in s["edges"]:
        mark = "" if e["in_topology"] else "NOT IN TOPOLOGY"
        if e["expected_frames"] is not None and (e["frames"], e["bytes"]) != (e["expected_frames"], e["expected_bytes"]):
            mark = (mark + " " if mark else "") + "differs"
        sent = e.get("sent_bytes")
        if sent is not None and sent != e["bytes"]:
            why = e.get("sent_differs_explained_by")
            mark = (mark + " " if mark else "") + f"sent {sent - e['bytes']:+,} B more than logged: " + (
                f"lost to {why}" if why else "UNEXPLAINED")
        rows.append([e["src"], e["dst"], fmt_int(e["frames"]), fmt_int(e["expected_frames"]),
                     fmt_int(e["bytes"]), fmt_int(e["expected_bytes"]), fmt_int(sent), mark])
    out.append(table(["src", "dst", "frames", "expected", "bytes logged", "expected", "bytes sent", ""], rows,
                     "rrrrrrrl"))
    out += _missing_lines(s)
    if s.get("unexplained"):
        out += ["", "Unexplained", *[f"  {r}" for r in s["unexplained"]]]
    probs = _problem_lines(s, limit=None)
    out += ["", f"Problems ({len(probs)})"]
    out += [f"  {p}" for p in probs] or ["  none"]
    return "\n".join(out) + "\n"
