"""``p2p sweep``: run a grid of topologies × sizes × protocols and compare their cost.

Every cell goes through the same steps as ``p2p run`` (``generator.expect.expect_for``,
``testbed.base.prepare_run``, ``runner.run``); a cell the predictor refuses (a runaway
run) is reported as skipped. Output, in ``runs/sweep-<stamp>/``:

- ``<run-id>/`` per cell: the ordinary run directory (spec.json, logs/); ``p2p analyse`` works on it
- ``sweep.json``: the grid and one row per cell
- ``sweep.txt``: the table
- ``sweep.png``: deliveries, bytes and bytes per reached pair against N (log scale)

Counts come from the logs, read by the analysis' reader (analysis/logs.py), so they are
``p2p analyse``'s (``logs/<id>.txt``: one line per received frame, frame bytes =
len(line) + 4; a line that is no valid message is a log problem, not a delivery).
Coverage = fraction of the N(N−1) (author, peer) pairs where the peer received the
author's message at least once; redundancy = deliveries / N(N−1) (1.0 = every peer got
every message exactly once); time to quiescence = the last time any peer's receive
count grew minus the first peer start (from the events logs, 100 ms resolution).
"""

from __future__ import annotations

import argparse
import json
import re
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from analysis.logs import EventLog, read_all, receiver_in_hops_allowed, receiver_in_hops_ok
from analysis.repeats import failures_of, group_stats, stats_to_dict
from generator.errors import P2PError
from generator.expect import DEFAULT_LIMIT, expect_for
from generator.spec import (
    LATENCY_FROM_HELP,
    LATENCY_SOURCES,
    PEER_OPTION_HELP,
    PROTOCOL_PARAMS,
    PROTOCOLS,
    PeerOptions,
    RunSpec,
    parse_params,
)
from generator.topologies import FAMILIES, split_topology
from testbed.base import Progress, prepare_run
from testbed.repeat import positive_int
from testbed.runners import backend_choices, choose_runner


@dataclass(frozen=True)
class Cell:
    topology: str  # as spelled, e.g. "mesh" or "circulant:1,4"
    n: int | None
    protocol: str


def parse_sizes(items: list[str]) -> list[int | None]:
    """``["5,7,9"]``, ``["5..9"]`` or ``["5-9"]`` -> sizes; nothing -> [None] (the topology's own size)."""
    sizes: list[int] = []
    for item in items:
        for part in item.split(","):
            part = part.strip()
            if not part:
                continue
            m = re.fullmatch(r"(\d+)\s*(?:\.\.|-)\s*(\d+)", part)
            try:
                if m:
                    lo, hi = int(m.group(1)), int(m.group(2))
                    if lo > hi:
                        raise ValueError
                    sizes.extend(range(lo, hi + 1))
                else:
                    sizes.append(int(part))
            except ValueError:
                raise P2PError(f"-n expects sizes like 5,7,9 or 5..9, got {part!r}") from None
    return list(dict.fromkeys(sizes)) or [None]


def parse_topologies(items: list[str]) -> list[str]:
    """``-t cycle,mesh -t circulant:1,4``: commas separate families unless the item has ``:`` parameters."""
    out: list[str] = []
    for item in items:
        parts = [item] if ":" in item else [p.strip() for p in item.split(",") if p.strip()]
        for part in parts:
            name = part.partition(":")[0].strip().lower()
            if name not in FAMILIES:
                hint = " (sizes go in -n)" if name.isdigit() else ""
                raise P2PError(f"unknown topology {name!r}{hint}; known: {', '.join(sorted(FAMILIES))}")
            out.append(part)
    return list(dict.fromkeys(out))


def parse_protocols(items: list[str]) -> list[str]:
    out = [p.strip() for item in items for p in item.split(",") if p.strip()]
    for p in out:
        if p not in PROTOCOLS:
            raise P2PError(f"unknown protocol {p!r}; known: {', '.join(PROTOCOLS)}")
    return list(dict.fromkeys(out))


def grid(topologies: list[str], sizes: list[int | None], protocols: list[str]) -> list[Cell]:
    return [Cell(t, n, p) for t in topologies for n in sizes for p in protocols]


def _cell_params(cell: Cell, params: dict[str, str]) -> dict[str, str]:
    """The --param entries this cell's family or protocol takes."""
    fam = FAMILIES[split_topology(cell.topology)[0]]
    return {k: v for k, v in params.items() if fam.param(k) is not None or k in PROTOCOL_PARAMS[cell.protocol]}


def check_params(cells: list[Cell], params: dict[str, str]) -> None:
    used = {k for c in cells for k in _cell_params(c, params)}
    unused = sorted(set(params) - used)
    if unused:
        raise P2PError(f"--param {', '.join(unused)}: no topology or protocol of the sweep takes it")


# ---- counting ------------------------------------------------------------------


def count_run(run_dir: Path, n: int) -> dict[str, Any]:
    """Deliveries, bytes, coverage and time to quiescence of one run, read from its logs by
    the analysis' reader (so they are the figures of ``p2p analyse``'s summary.json)."""
    log_dir = Path(run_dir) / "logs"
    with receiver_in_hops_allowed(receiver_in_hops_ok(_protocol_of(Path(run_dir)))):
        peers = read_all(log_dir, list(range(n)), n)
    deliveries = nbytes = reached = 0
    problems: list[str] = []
    for p, pl in peers.items():
        log = pl.messages
        if not log.exists and not log.problems:
            problems.append(f"{log.file} missing")
        problems.extend(str(problem) for problem in log.problems)
        deliveries += log.deliveries
        nbytes += log.bytes
        reached += sum(1 for author in log.by_author if author != p)
    pairs = n * (n - 1)
    return {
        "deliveries": deliveries,
        "bytes": nbytes,
        "bytes_per_peer": nbytes / n if n else None,
        "coverage": reached / pairs if pairs else 1.0,
        "redundancy": deliveries / pairs if pairs else None,
        "bytes_per_reached_pair": nbytes / reached if reached else None,
        "time_to_quiescence": _quiescence([pl.events for pl in peers.values()]),
        "log_problems": problems,
    }


def _protocol_of(run_dir: Path) -> str | None:
    """The run's protocol from its spec.json (None without one)."""
    path = run_dir / "spec.json"
    return RunSpec.load(path).protocol if path.exists() else None


def _quiescence(events: list[EventLog]) -> float | None:
    starts = [ev.start["t"] for ev in events if ev.start]
    growths = [t for t in map(EventLog.last_growth, events) if t is not None]
    if not starts or not growths:
        return None
    return round(max(0.0, max(growths) - min(starts)), 3)


# ---- running -------------------------------------------------------------------


def run_sweep(
    cells: list[Cell],
    out: Path,
    runner,
    *,
    params: dict[str, str] | None = None,
    seed: int | None = None,
    options: PeerOptions | None = None,
    limit: int,
    progress: Progress,
    sweep_dir: Path | None = None,
    plot: bool = True,
    repeat: int = 1,
) -> tuple[Path, list[dict[str, Any]]]:
    """Run every cell (``repeat`` times each); write sweep.json, sweep.txt and (``plot``) sweep.png;
    return (directory, rows: one per run). With ``repeat`` > 1, sweep.json has ``cells`` (per-cell
    statistics), sweep.txt their table and sweep-runs.txt the per-run table."""
    params = params or {}
    check_params(cells, params)
    if sweep_dir is None:
        stamp = datetime.now(UTC).strftime("%Y%m%d-%H%M%S")
        sweep_dir = Path(out) / f"sweep-{stamp}"
    try:
        sweep_dir.mkdir(parents=True, exist_ok=False)
    except OSError as e:
        raise P2PError(f"cannot create/write {sweep_dir}: {e.strerror or e}") from e
    rows: list[dict[str, Any]] = []
    cells_out: list[dict[str, Any]] = []
    started = time.monotonic()
    for i, cell in enumerate(cells, 1):
        cell_rows = []
        for r in range(1, repeat + 1):
            where = f"[{i}/{len(cells)}" + (f" #{r}/{repeat}]" if repeat > 1 else "]")
            row = _run_cell(cell, where, sweep_dir, runner, params=params, seed=seed, options=options, limit=limit,
                            progress=progress)
            if repeat > 1:
                row["repeat"] = r
            cell_rows.append(row)
            if row.get("status") == "skipped":
                break  # the predictor refuses it: every repeat would be refused alike
        rows.extend(cell_rows)
        if repeat > 1:
            cells_out.append(cell_summary(cell, cell_rows))
    summary = {
        "created": datetime.now(UTC).isoformat(timespec="seconds"),
        "duration": round(time.monotonic() - started, 3),
        "backend": getattr(runner, "name", "?"),
        "grid": {
            "topologies": list(dict.fromkeys(c.topology for c in cells)),
            "n": list(dict.fromkeys(c.n for c in cells)),
            "protocols": list(dict.fromkeys(c.protocol for c in cells)),
            "params": params,
            "seed": seed,
            "limit": limit,
        },
        "rows": rows,
    }
    if repeat > 1:
        summary["grid"]["repeat"] = repeat
        summary["cells"] = cells_out
        _atomic(sweep_dir / "sweep-runs.txt", format_table(rows) + "\n")
    _atomic(sweep_dir / "sweep.json", json.dumps(summary, indent=1) + "\n")
    _atomic(sweep_dir / "sweep.txt", (format_cells(cells_out) if repeat > 1 else format_table(rows)) + "\n")
    if plot:
        fig = draw_sweep(rows) if repeat == 1 else draw_sweep_cells(cells_out)
        if fig is not None:
            fig.savefig(sweep_dir / "sweep.png", dpi=110)
    return sweep_dir, rows


def _run_cell(cell: Cell, where: str, sweep_dir: Path, runner, *, params: dict[str, str], seed: int | None,
              options: PeerOptions | None, limit: int, progress: Progress) -> dict[str, Any]:
    """Run one cell once: its row (status skipped/error when it could not run)."""
    row: dict[str, Any] = {"topology": cell.topology, "n": cell.n, "protocol": cell.protocol}
    try:
        spec = RunSpec.parse(cell.topology, cell.n, protocol=cell.protocol, seed=seed,
                             options=options or PeerOptions(), params=_cell_params(cell, params))
        spec.graph()  # a cell the options do not fit (--latency-from distance on mesh) is skipped, not fatal
    except P2PError as e:
        progress.message(f"{where} {cell.topology} n={cell.n} {cell.protocol}: skipped: {e}")
        return {**row, "status": "skipped", "reason": str(e)}
    row.update(family=spec.topology, n=spec.n, label=spec.label, seed=spec.seed, params=spec.to_dict()["params"])
    row.update(_expectation(spec, limit))
    try:
        prediction = expect_for(spec, limit, False, progress.message)
    except P2PError as e:
        progress.message(f"{where} {spec.label} {spec.protocol}: skipped: {e}")
        return {**row, "status": "skipped", "reason": str(e)}
    plan = prepare_run(spec, sweep_dir, prediction)
    row["run_id"] = plan.run_id
    progress.message(f"{where} {spec.label} {spec.protocol}: run {plan.run_id}")
    try:
        result = runner.run(plan, progress)
    except P2PError as e:
        return {**row, "status": "error", "reason": str(e)}
    row["duration"] = round(result.duration, 3)
    row["failed_peers"] = result.failed_peers
    row.update(count_run(plan.run_dir, spec.n))
    row["status"] = _status(row)
    return row


def _expectation(spec: RunSpec, limit: int) -> dict[str, Any]:
    """What the protocol predictor says (for the table), without refusing anything."""
    from generator.predict import PredictionTooLarge
    from generator.protocol_predict import predict_protocol

    try:
        pp = predict_protocol(spec.graph(), spec, cap=limit, family=spec.topology)
    except PredictionTooLarge:
        return {"expected_deliveries": None, "expected_range": None, "expected_bytes": None}
    return {
        "expected_deliveries": pp.deliveries,
        "expected_range": list(pp.deliveries_range) if pp.deliveries_range else None,
        "expected_bytes": pp.bytes,
    }


def _status(row: dict[str, Any]) -> str:
    if row.get("failed_peers"):
        return "peers failed"
    if row.get("log_problems"):
        return "log problems"
    if row.get("expected_deliveries") is not None:
        # Bytes are checked only where they are predicted (not for the flood's timing-dependent hop lists).
        exact = row["deliveries"] == row["expected_deliveries"] and (
            row.get("expected_bytes") is None or row["bytes"] == row["expected_bytes"])
        return "exact" if exact else "MISMATCH"
    lo_hi = row.get("expected_range")
    if lo_hi:
        return f"in range {lo_hi[0]:,}..{lo_hi[1]:,}" if lo_hi[0] <= row["deliveries"] <= lo_hi[1] \
            else f"OUT OF RANGE {lo_hi[0]:,}..{lo_hi[1]:,}"
    return "ran"


# ---- repeats -------------------------------------------------------------------

BAD_STATUS = ("MISMATCH", "OUT OF RANGE", "peers failed", "log problems", "error")


def _exact_of(row: dict[str, Any]) -> dict[str, Any]:
    """The exact predictions of one run of a cell (redundancy follows deliveries)."""
    exact = {k: row[f"expected_{k}"] for k in ("deliveries", "bytes") if row.get(f"expected_{k}") is not None}
    pairs = row["n"] * (row["n"] - 1)
    if "deliveries" in exact and pairs:
        exact["redundancy"] = exact["deliveries"] / pairs
    return exact


def cell_summary(cell: Cell, rows: list[dict[str, Any]]) -> dict[str, Any]:
    """One cell's K runs: seeds, run ids, per-quantity statistics (analysis/repeats.py), failures."""
    ran = [r for r in rows if r.get("status") not in ("skipped", "error")]
    first = ran[0] if ran else rows[-1]
    out: dict[str, Any] = {"topology": cell.topology, "n": first.get("n", cell.n), "protocol": cell.protocol,
                           "label": first.get("label", cell.topology), "k": len(ran),
                           "seeds": [r.get("seed") for r in rows], "run_ids": [r.get("run_id") for r in rows]}
    if not ran:
        return {**out, "status": rows[-1]["status"], "reason": rows[-1].get("reason", ""), "failures": []}
    stats = group_stats([{**r, "exact": _exact_of(r)} for r in ran],
                        [f"repeat {r.get('repeat', 1)} ({r.get('run_id')})" for r in ran])
    failures = failures_of(stats) + [f"repeat {r.get('repeat', 1)} ({r.get('run_id')}): {r['status']}"
                                     for r in rows if str(r.get("status", "")).startswith(BAD_STATUS)]
    statuses = list(dict.fromkeys(r["status"] for r in ran))
    out.update(stats=stats_to_dict(stats), failures=failures,
               status=f"FAILED ({len(failures)})" if failures else "/".join(statuses))
    return out


def _family_label(r: dict[str, Any]) -> str:
    return r.get("label", r["topology"]).split(" ", 1)[0].rsplit("-", 1)[0] + _param_suffix(r)


CELL_COLUMNS = ("deliveries", "bytes", "coverage", "redundancy", "time_to_quiescence", "duration")


def format_cells(cells: list[dict[str, Any]]) -> str:
    """Per cell of a repeated sweep: each quantity exact or mean ± 95 % t half-width, and the check."""
    from analysis.repeats import BY_KEY, stats_from_dict

    headers = ["family", "n", "protocol", "K", *(BY_KEY[k].label for k in CELL_COLUMNS), "check"]
    body = []
    for c in cells:
        if "stats" not in c:
            body.append([c["label"], _s(c["n"]), c["protocol"], "0", *("-" for _ in CELL_COLUMNS),
                         f"{c['status']}: {c.get('reason', '')}"[:90]])
            continue
        stats = stats_from_dict(c["stats"])
        body.append([_family_label(c), str(c["n"]), c["protocol"], str(c["k"]),
                     *(_cell_text(stats[k]) if k in stats else "-" for k in CELL_COLUMNS),
                     c["status"]])
    widths = [max(len(h), *(len(row[i]) for row in body)) if body else len(h) for i, h in enumerate(headers)]
    left = {0, 2, len(headers) - 1}
    lines = ["  ".join(c.ljust(w) if i in left else c.rjust(w) for i, (c, w) in enumerate(zip(row, widths))).rstrip()
             for row in [headers, ["-" * w for w in widths], *body]]
    lines.append("'X exact': every repeat equals the exact prediction X (a repeat that differs FAILS the cell); "
                 "'m ± h': mean ± half-width of the 95% t interval over the K repeats (scipy.stats.t)")
    if any(qs.get("per_run_exact") for c in cells for qs in (c.get("stats") or {}).values()):
        lines.append("*: the exact prediction changes with the seed: each repeat equals its own (else the cell FAILS)")
    lines.append("ttq: time to quiescence; run s: the backend's wall time of the run; seeds and every value: sweep.json")
    lines += [f"FAILED {c['label']} {c['protocol']}: {f}" for c in cells for f in c.get("failures", [])]
    return "\n".join(lines)


def _cell_text(qs) -> str:
    return qs.text().replace(" FAILED", "") + ("*" if qs.per_run_exact else "")


def draw_sweep_cells(cells: list[dict[str, Any]]):
    """Deliveries, bytes and time to quiescence against N, mean with its 95 % CI as error bars."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    from analysis.repeats import stats_from_dict

    done = [c for c in cells if "stats" in c]
    if not done:
        return None
    series: dict[tuple[str, str], list[dict[str, Any]]] = {}
    for c in done:
        series.setdefault((_family_label(c), c["protocol"]), []).append(c)
    families = list(dict.fromkeys(k[0] for k in series))
    protocols = list(dict.fromkeys(k[1] for k in series))
    fig = Figure(figsize=(15, 5.2))
    FigureCanvasAgg(fig)
    axes = fig.subplots(1, 3)
    panels = [("deliveries", "deliveries", True), ("bytes", "bytes on the wire", True),
              ("time_to_quiescence", "time to quiescence, s", False)]
    for ax, (key, title, log) in zip(axes, panels):
        for (fam, proto), pts in series.items():
            xs, ys, lo, hi = [], [], [], []
            for c in sorted(pts, key=lambda c: c["n"]):
                qs = stats_from_dict(c["stats"]).get(key)
                if qs is None or qs.kind == "none":
                    continue
                y = qs.exact if qs.kind == "exact" else qs.interval.mean
                ci = (y, y) if qs.kind == "exact" or qs.interval.lo is None else (qs.interval.lo, qs.interval.hi)
                xs.append(c["n"])
                ys.append(y)
                lo.append(max(0.0, y - ci[0]))
                hi.append(max(0.0, ci[1] - y))
            if not xs:
                continue
            ls, marker = _STYLES[protocols.index(proto) % len(_STYLES)]
            ax.errorbar(xs, ys, yerr=[lo, hi], ls=ls, marker=marker, capsize=3,
                        color=_COLOURS[families.index(fam) % len(_COLOURS)], label=f"{fam} / {proto}")
        if log:
            ax.set_yscale("log")
        ax.set_xlabel("N (peers)")
        ax.set_title(title)
        ax.grid(True, which="both", alpha=0.3)
        ax.set_xticks(sorted({c["n"] for c in done}))
    axes[0].legend(fontsize=8)
    ks = sorted({c["k"] for c in done})
    failed = sum(1 for c in done if c.get("failures"))
    fig.suptitle(f"mean over K={'/'.join(map(str, ks))} repeats, error bars: 95% t interval (none on exact values)"
                 + (f"; {failed} FAILED cell(s)" if failed else ""), fontsize=11)
    fig.tight_layout()
    return fig


# ---- output --------------------------------------------------------------------


def format_table(rows: list[dict[str, Any]]) -> str:
    headers = ["family", "n", "protocol", "deliveries", "bytes", "bytes/peer", "coverage", "redundancy",
               "bytes/pair", "ttq s", "check"]
    body = []
    for r in rows:
        if r.get("status") in ("skipped", "error"):
            body.append([r.get("label", r["topology"]), _s(r.get("n")), r["protocol"], "-", "-", "-", "-", "-", "-",
                         "-", f"{r['status']}: {r.get('reason', '')}"[:90]])
            continue
        body.append([
            r.get("label", r["topology"]).split(" ", 1)[0].rsplit("-", 1)[0] + _param_suffix(r),
            str(r["n"]), r["protocol"], f"{r['deliveries']:,}", f"{r['bytes']:,}", f"{r['bytes_per_peer']:,.0f}",
            f"{r['coverage']:.3f}", f"{r['redundancy']:.2f}",
            f"{r['bytes_per_reached_pair']:,.1f}" if r.get("bytes_per_reached_pair") else "-",
            f"{r['time_to_quiescence']:.2f}" if r.get("time_to_quiescence") is not None else "-",
            r["status"],
        ])
    widths = [max(len(h), *(len(row[i]) for row in body)) if body else len(h) for i, h in enumerate(headers)]
    left = {0, 2, 10}

    def fmt(cells: list[str]) -> str:
        return "  ".join(c.ljust(w) if i in left else c.rjust(w) for i, (c, w) in enumerate(zip(cells, widths))).rstrip()

    lines = [fmt(headers), fmt(["-" * w for w in widths])] + [fmt(row) for row in body]
    lines.append("coverage: reached (author, peer) pairs / N(N-1); redundancy: deliveries / N(N-1); "
                 "bytes/pair: bytes per reached pair; ttq: time to quiescence")
    return "\n".join(lines)


def _param_suffix(r: dict[str, Any]) -> str:
    label = r.get("label", "")
    extra = label.split(" ", 1)[1] if " " in label else ""
    return f" {extra}" if extra else ""


def _s(x: Any) -> str:
    return "-" if x is None else str(x)


_COLOURS = ["tab:blue", "tab:orange", "tab:green", "tab:red", "tab:purple", "tab:brown", "tab:pink", "tab:olive",
            "tab:cyan", "tab:gray"]
_STYLES = [("-", "o"), ("--", "s"), (":", "^"), ("-.", "D")]


def draw_sweep(rows: list[dict[str, Any]]):
    """Deliveries, bytes and bytes per reached pair against N, one line per (topology, protocol)."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    done = [r for r in rows if r.get("status") not in ("skipped", "error") and "deliveries" in r]
    if not done:
        return None
    series: dict[tuple[str, str], list[dict[str, Any]]] = {}
    for r in done:
        key = (r.get("label", r["topology"]).split(" ", 1)[0].rsplit("-", 1)[0] + _param_suffix(r), r["protocol"])
        series.setdefault(key, []).append(r)
    families = list(dict.fromkeys(k[0] for k in series))
    protocols = list(dict.fromkeys(k[1] for k in series))
    colours, styles = _COLOURS, _STYLES
    fig = Figure(figsize=(15, 5.2))
    FigureCanvasAgg(fig)
    axes = fig.subplots(1, 3)
    panels = [("deliveries", "deliveries (frames received)"), ("bytes", "bytes on the wire"),
              ("bytes_per_reached_pair", "bytes per reached (author, peer) pair")]
    for ax, (key, title) in zip(axes, panels):
        for (fam, proto), pts in series.items():
            pts = sorted((p for p in pts if p.get(key)), key=lambda p: p["n"])
            if not pts:
                continue
            ls, marker = styles[protocols.index(proto) % len(styles)]
            ax.plot([p["n"] for p in pts], [p[key] for p in pts], ls=ls, marker=marker,
                    color=colours[families.index(fam) % len(colours)], label=f"{fam} / {proto}")
        ax.set_yscale("log")
        ax.set_xlabel("N (peers)")
        ax.set_title(title)
        ax.grid(True, which="both", alpha=0.3)
        ns = sorted({p["n"] for p in done})
        ax.set_xticks(ns)
    axes[0].legend(fontsize=8)
    partial = [r for r in done if r["coverage"] < 1]
    note = f"; {len(partial)} run(s) with coverage < 1" if partial else "; every run reached every (author, peer) pair"
    fig.suptitle(f"cost against N, log scale{note}", fontsize=11)
    fig.tight_layout()
    return fig


def _atomic(path: Path, text: str) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    try:
        tmp.write_text(text)
        tmp.replace(path)
    except OSError as e:
        raise P2PError(f"cannot create/write {path}: {e.strerror or e}") from e


# ---- CLI -----------------------------------------------------------------------


def add_sweep_parser(sub) -> None:
    sw = sub.add_parser(
        "sweep", help="run a grid of topologies x sizes x protocols; table and plot of their cost",
        description="Run every (topology, n, protocol) of the grid like `p2p run` (cells the predictor refuses are "
                    "skipped) and write runs/sweep-<stamp>/ with sweep.json, sweep.txt and sweep.png.",
    )
    sw.add_argument("--topology", "-t", action="append", required=True, metavar="FAMILIES",
                    help="comma-separated families (cycle,mesh,starfish); repeat -t for one with parameters "
                         "(-t circulant:1,4)")
    sw.add_argument("-n", action="append", default=[], metavar="SIZES", help="sizes: 5,7,9 or 5..9")
    sw.add_argument("--protocol", action="append", default=[], metavar="PROTOCOLS",
                    help=f"comma-separated protocols ({', '.join(PROTOCOLS)}; default v1)")
    sw.add_argument("--param", action="append", default=[], metavar="KEY=VALUE",
                    help="parameter for the cells whose family or protocol takes it (repeatable)")
    sw.add_argument("--seed", type=int, default=None, help="seed for randomised topologies/protocols")
    sw.add_argument("--backend", choices=backend_choices(), default="auto", help="as for `p2p run`")
    sw.add_argument("--out", type=Path, default=Path("runs"), help="runs directory (default ./runs)")
    sw.add_argument("--limit", type=int, default=DEFAULT_LIMIT,
                    help=f"skip cells predicted above this many deliveries (default {DEFAULT_LIMIT:,})")
    sw.add_argument("--idle", type=float, default=None, help="peer idle timeout in seconds")
    sw.add_argument("--link-deadline", type=float, default=None, help="seconds a peer waits for its links")
    sw.add_argument("--peer-option", action="append", metavar="KEY=VALUE", help=PEER_OPTION_HELP)
    sw.add_argument("--latency-from", choices=LATENCY_SOURCES, default=None, help=LATENCY_FROM_HELP)
    sw.add_argument("--no-plot", action="store_true", help="no sweep.png")
    sw.add_argument("--repeat", type=positive_int, default=1, metavar="K",
                    help="run every cell K times (seeds vary unless --seed is given): exact quantities must be "
                         "equal in every repeat, the others get mean, sd and a 95%% t interval (sweep.json "
                         "cells; sweep.png error bars)")
    sw.set_defaults(func=cmd_sweep)


def cmd_sweep(args: argparse.Namespace) -> int:
    progress = Progress()
    cells = grid(parse_topologies(args.topology), parse_sizes(args.n), parse_protocols(args.protocol or ["v1"]))
    opts = PeerOptions.from_cli(args.peer_option, **{k: v for k, v in (("idle", args.idle),
                                                                      ("link_deadline", args.link_deadline),
                                                                      ("latency_from", args.latency_from))
                                                    if v is not None})
    runner = choose_runner(args.backend, progress)
    sweep_dir, rows = run_sweep(cells, args.out, runner, params=parse_params(args.param), seed=args.seed, options=opts,
                                limit=args.limit, progress=progress, plot=not args.no_plot, repeat=args.repeat)
    if args.repeat > 1:
        cells_out = json.loads((sweep_dir / "sweep.json").read_text())["cells"]
        print(format_cells(cells_out))
        print(f"\n{sweep_dir}/sweep.txt, sweep-runs.txt, sweep.json" + ("" if args.no_plot else ", sweep.png"))
        return 1 if any(c.get("failures") for c in cells_out) else 0
    print(format_table(rows))
    print(f"\n{sweep_dir}/sweep.txt, sweep.json" + ("" if args.no_plot else ", sweep.png"))
    bad = [r for r in rows if r.get("status", "").startswith(("MISMATCH", "OUT OF RANGE", "peers failed",
                                                               "log problems", "error"))]
    return 1 if bad else 0
