"""Several runs side by side: compare.txt, compare.json and compare.png in ``out_dir``."""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from analysis._util import AnalysisError, atomic_write, dump_json, fmt_bytes, fmt_int, fmt_seconds, table


@dataclass(frozen=True)
class Comparison:
    rows: list[dict[str, Any]]  # one per run, in the order given
    text: str  # the side-by-side table (also compare.txt)
    files: list[Path] = field(default_factory=list)


def _load(run_dir: Path, reanalyse: bool, say: Callable[[str], Any]) -> dict[str, Any]:
    path = run_dir / "summary.json"
    if not reanalyse and path.is_file():
        try:
            return json.loads(path.read_text())
        except (OSError, ValueError):
            say(f"{path}: unreadable, analysing the run again")
    from analysis.stats import analyse

    return analyse(run_dir, plots=False, progress=say).summary


def _row(run_dir: Path, s: dict[str, Any]) -> dict[str, Any]:
    peers = s.get("peers") or []
    bytes_in = [p["bytes_in"] for p in peers]
    n = s["n"] or 1
    return {
        "run_id": s["run_id"],
        "path": str(run_dir),
        "name": f"{s['topology']}-{s['n']}",
        "topology": s["topology"],
        "n": s["n"],
        "protocol": s["protocol"],
        "ok": s["ok"],
        "prediction": s.get("prediction"),
        "faults": s.get("faults", []),
        "deliveries": s["deliveries"],
        "expected_deliveries": s["expected_deliveries"],
        "bytes": s["bytes"],
        "expected_bytes": s["expected_bytes"],
        "bytes_per_peer": round(s["bytes"] / n, 1),
        "bytes_per_peer_min": min(bytes_in, default=None),
        "bytes_per_peer_max": max(bytes_in, default=None),
        "time_to_quiescence": s["time_to_quiescence"],
        "short_peers": len(s["short_peers"]) if s["short_peers"] is not None else None,
        "problems": len(s["log_problems"]) + len(s["errors"]) + len(s.get("disagreements", [])),
    }


def compare(
    run_dirs: list[Path],
    out_dir: Path,
    plots: bool = True,
    reanalyse: bool = False,
    progress: Callable[[str], Any] | None = None,
) -> Comparison:
    """Compare runs: deliveries, bytes, bytes per peer and time to quiescence.

    Uses each run's summary.json (analysing runs that have none, or every run with
    ``reanalyse``); writes compare.txt, compare.json and (with ``plots``) compare.png.
    """
    say = progress or (lambda _m: None)
    if not run_dirs:
        raise AnalysisError("compare: no run directories given")
    rows = []
    for rd in run_dirs:
        rd = Path(rd)
        if not rd.is_dir():
            raise AnalysisError(f"compare: no such run directory: {rd}")
        rows.append(_row(rd, _load(rd, reanalyse, say)))
    labels = _labels(rows)
    for row, label in zip(rows, labels):
        row["label"] = label
    text = format_comparison(rows)
    out_dir = Path(out_dir)
    files = [
        atomic_write(out_dir / "compare.txt", text + "\n"),
        atomic_write(out_dir / "compare.json", dump_json({"runs": rows})),
    ]
    if plots:
        from analysis.plots import png_bytes

        files.append(atomic_write(out_dir / "compare.png", png_bytes(draw_comparison(rows))))
    say(f"compared {len(rows)} runs into {out_dir}")
    return Comparison(rows=rows, text=text, files=files)


def _labels(rows: list[dict[str, Any]]) -> list[str]:
    ids = [r["run_id"] for r in rows]
    out = []
    for r in rows:
        label = r["run_id"]
        if ids.count(label) > 1:
            label = f"{Path(r['path']).parent.name}/{label}"
        out.append(label)
    return out


def format_comparison(rows: list[dict[str, Any]]) -> str:
    def vs(obs: int, exp: int | None) -> str:
        return "=" if exp is not None and obs == exp else fmt_int(exp)

    body = [
        [
            r["label"],
            r["name"],
            r["protocol"],
            "ok" if r["ok"] else "NOT OK",
            fmt_int(r["deliveries"]),
            vs(r["deliveries"], r["expected_deliveries"]),
            fmt_int(r["bytes"]),
            vs(r["bytes"], r["expected_bytes"]),
            fmt_bytes(r["bytes_per_peer"]),
            fmt_seconds(r["time_to_quiescence"]),
            "-" if r["short_peers"] is None else r["short_peers"],
            r["problems"],
        ]
        for r in rows
    ]
    headers = ["run", "topology", "proto", "verdict", "deliveries", "predicted", "bytes", "predicted",
               "bytes/peer", "quiescence", "short", "problems"]
    return table(headers, body, "llll" + "r" * 8) + "\n('=' : observed equals predicted)"


def draw_comparison(rows: list[dict[str, Any]]):
    from matplotlib.lines import Line2D
    from matplotlib.patches import Patch
    from matplotlib.ticker import EngFormatter

    from analysis.plots import _figure

    k = len(rows)
    width = min(24.0, max(9.0, 3.0 + 1.1 * k))
    fig = _figure(width, 7.8)
    axes = fig.subplots(2, 2, gridspec_kw={"hspace": 0.55, "wspace": 0.18, "left": 0.07, "right": 0.98,
                                            "top": 0.9, "bottom": 0.1})
    xs = list(range(k))
    labels = [f"{r['label']}\n{r['name']}" if r["label"] != r["name"] else r["name"] for r in rows]
    obs_c, exp_c = "#4c78a8", "#bab0ac"

    def grouped(ax, key: str, title: str, unit: str) -> None:
        obs = [r[key] for r in rows]
        exp = [r[f"expected_{key}"] for r in rows]
        ax.bar([x - 0.2 for x in xs], obs, width=0.4, color=obs_c, zorder=2)
        ax.bar([x + 0.2 for x in xs], [e or 0 for e in exp], width=0.4, color=exp_c, zorder=2)
        vals = [v for v in obs + exp if v]
        if vals and max(vals) / max(min(vals), 1) > 100:
            ax.set_yscale("log")
        else:
            ax.yaxis.set_major_formatter(EngFormatter(unit=unit))
        for x, r in zip(xs, rows):
            if not r["ok"]:
                ax.annotate("not ok", (x, 1), xycoords=("data", "axes fraction"), ha="center", va="top",
                            fontsize=8, color="#c62828")
        ax.set_title(title, fontsize=11, loc="left")

    grouped(axes[0][0], "deliveries", "deliveries", "")
    grouped(axes[0][1], "bytes", "bytes", "B")
    ax = axes[1][0]
    mean = [r["bytes_per_peer"] for r in rows]
    lo = [m - (r["bytes_per_peer_min"] if r["bytes_per_peer_min"] is not None else m) for m, r in zip(mean, rows)]
    hi = [(r["bytes_per_peer_max"] if r["bytes_per_peer_max"] is not None else m) - m for m, r in zip(mean, rows)]
    ax.bar(xs, mean, width=0.55, color=obs_c, zorder=2, yerr=[lo, hi], capsize=4, ecolor="#333333")
    if mean and max(mean) / max(min(m for m in mean if m) if any(mean) else 1, 1) > 100:
        ax.set_yscale("log")
    else:
        ax.yaxis.set_major_formatter(EngFormatter(unit="B"))
    ax.set_title("bytes received per peer (mean; bar: min to max)", fontsize=11, loc="left")
    ax = axes[1][1]
    ttq = [r["time_to_quiescence"] for r in rows]
    ax.bar(xs, [t or 0 for t in ttq], width=0.55, color="#f58518", zorder=2)
    for x, t in zip(xs, ttq):
        if t is None:
            ax.annotate("n/a", (x, 0), ha="center", va="bottom", fontsize=8, color="#666666")
    ax.set_ylabel("seconds")
    ax.set_title("time to quiescence", fontsize=11, loc="left")
    for row in axes:
        for a in row:
            a.set_xticks(xs)
            a.set_xticklabels(labels, fontsize=8, rotation=30 if k > 6 else 0, ha="right" if k > 6 else "center")
            a.grid(axis="y", color="#e5e5e5", zorder=0)
            for side in ("top", "right"):
                a.spines[side].set_visible(False)
    fig.legend(
        handles=[Patch(color=obs_c, label="observed"), Patch(color=exp_c, label="predicted"),
                 Line2D([], [], color="#333333", marker="|", ls="", label="per-peer range")],
        loc="upper right", ncol=3, fontsize=9, frameon=False,
    )
    fig.suptitle(f"Comparison of {k} runs", fontsize=13, x=0.07, ha="left", y=0.975)
    return fig
