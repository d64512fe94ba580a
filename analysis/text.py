"""Text of an analysis: the terminal summary and stats.txt, from summary.json's fields only."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from analysis._util import fmt_bytes, fmt_int, fmt_seconds, step_text, table
from analysis.model import Analysis, verdict_of


def verdict_text(s: dict[str, Any]) -> str:
    verdict, _ = verdict_of(s)
    if verdict == "EXPLAINED":
        return "EXPLAINED (below the upper bound; every shortfall explained by a fault or a lossy link)"
    if verdict == "NOT CHECKED":
        return "NOT CHECKED (no prediction)"
    return verdict


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


def problem_lines(s: dict[str, Any], limit: int | None) -> list[str]:
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
        out.append(f"  fired             {a['fault']}{step_text(a)}  {', '.join(w for w in when if w)}")
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
        f"run {s['run_id']}: {s['topology']}-{s['n']}, protocol {s['protocol']} -- {verdict_text(s)}",
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
    probs = problem_lines(s, limit=10)
    if probs:
        lines.append("")
        lines.append(f"problems ({len(problem_lines(s, None))}):")
        lines += [f"  {p}" for p in probs]
    return "\n".join(lines)


def format_stats(analysis: Analysis) -> str:
    """The content of stats.txt."""
    s = analysis.summary
    bound = s["prediction"] == "upper_bound"
    spec = s["spec"]
    out = [f"Run {s['run_id']}: {s['topology']}-{s['n']}, protocol {s['protocol']} -- {verdict_text(s)}", ""]
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
    probs = problem_lines(s, limit=None)
    out += ["", f"Problems ({len(probs)})"]
    out += [f"  {p}" for p in probs] or ["  none"]
    return "\n".join(out) + "\n"
