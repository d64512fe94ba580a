"""Several runs side by side: compare.txt, compare.json and compare.png in ``out_dir``.

Each run gets a short label (#1..#K, in the order given) so that the tables and the
picture stay readable with many runs; a legend maps the labels to run directories.
Each run shows its analysis' verdict (OK, EXPLAINED, NOT OK, NOT CHECKED; derived for
summary.json files written before it was stored) and, apart from its faults, the link
emulation (latency, jitter, loss, bandwidth, per-link shapes) and the seed.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from analysis._util import AnalysisError, atomic_write, dump_json, fmt_bytes, fmt_int, fmt_seconds, table
from analysis.model import VERDICTS, verdict_of


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


VERDICT_NOTE = {
    "OK": "observed equals an exact prediction, nothing unexplained",
    "EXPLAINED": "below an upper bound (faults or emulated loss), every shortfall explained by them",
    "NOT OK": "something unexplained",
    "NOT CHECKED": "no prediction",
}
EMULATION_KEYS = ("latency", "jitter", "loss", "bandwidth")
TEXT_WIDTH = 120  # the settings table wraps its long cells to stay within this


def emulation_of(spec: dict[str, Any] | None) -> dict[str, Any]:
    """The link emulation a spec asked for: the non-zero global settings and the
    per-link shapes (``{}``: none, or no spec)."""
    opts = (spec or {}).get("options") or {}
    out: dict[str, Any] = {k: opts[k] for k in EMULATION_KEYS if opts.get(k)}
    if opts.get("latency_from"):
        out["latency_from"] = opts["latency_from"]
    if opts.get("link_shapes"):
        out["link_shapes"] = list(opts["link_shapes"])
    return out


def _delay(x: float) -> str:
    return f"{x * 1000:g} ms" if x < 1 else f"{x:g} s"


def fmt_emulation(em: dict[str, Any]) -> str:
    """``latency 50 ms, loss 10%, links 0-1:loss=0.2 2-3:bandwidth=1e5``; ``-`` when none."""
    parts = []
    if em.get("latency_from"):
        parts.append(f"latency from {em['latency_from']}")  # length / 2/3 c per link
    for key in ("latency", "jitter"):
        if em.get(key):
            parts.append(f"{key} {_delay(em[key])}")
    if em.get("loss"):
        parts.append(f"loss {em['loss'] * 100:g}%")
    if em.get("bandwidth"):
        parts.append(f"bandwidth {fmt_bytes(em['bandwidth'])}/s")
    if em.get("link_shapes"):
        parts.append("links " + " ".join(em["link_shapes"]))
    return ", ".join(parts) or "-"


def _row(run_dir: Path, s: dict[str, Any]) -> dict[str, Any]:
    peers = s.get("peers") or []
    bytes_in = [p["bytes_in"] for p in peers]
    n = s["n"] or 1
    verdict, explained = verdict_of(s)
    spec = s.get("spec")
    return {
        "run_id": s["run_id"],
        "path": str(run_dir),
        "name": f"{s['topology']}-{s['n']}",
        "topology": s["topology"],
        "n": s["n"],
        "protocol": s["protocol"],
        "seed": (spec or {}).get("seed"),
        "verdict": verdict,
        "explained": explained,
        "unexplained": list(s.get("unexplained") or []),  # the analysis' reasons for NOT OK (newer runs)
        "ok": s["ok"],
        "prediction": s.get("prediction"),
        "emulation": emulation_of(spec),
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
    """Compare runs: verdict, deliveries, bytes, bytes per peer and time to quiescence.

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
    rows = [{"label": label, **row} for label, row in zip(_labels(rows), rows)]
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
    """Short labels, ``#1`` .. ``#K`` in the order given; the legend maps them to run directories."""
    return [f"#{i}" for i in range(1, len(rows) + 1)]


def _wrap(text: str, width: int) -> list[str]:
    import textwrap

    return textwrap.wrap(text, width, break_long_words=False, break_on_hyphens=False) or [text]


def _settings_table(rows: list[dict[str, Any]]) -> str:
    """protocol, seed, emulation and faults per run; long cells wrap onto more lines."""
    cells = [
        [r["label"], r["protocol"], str(r["seed"]) if r["seed"] is not None else "-",
         fmt_emulation(r["emulation"]), " ".join(r["faults"]) or "-"]
        for r in rows
    ]
    headers = ["run", "protocol", "seed", "emulation", "faults"]
    widths = [max(len(h), *(len(c[i]) for c in cells)) for i, h in enumerate(headers)]
    room = TEXT_WIDTH - sum(widths[:3]) - 2 * (len(headers) - 1)
    em_w, f_w = widths[3], widths[4]
    if em_w + f_w > room:
        # Share the room; a column that needs less than half gives the rest to the other.
        half = max(20, room // 2)
        if em_w <= half:
            f_w = max(20, room - em_w)
        elif f_w <= half:
            em_w = max(20, room - f_w)
        else:
            em_w, f_w = half, max(20, room - half)
    body = []
    for c in cells:
        em, fa = _wrap(c[3], em_w), _wrap(c[4], f_w)
        for i in range(max(len(em), len(fa))):
            head = c[:3] if i == 0 else ["", "", ""]
            body.append([*head, em[i] if i < len(em) else "", fa[i] if i < len(fa) else ""])
    return table(headers, body, "lllll")


def format_comparison(rows: list[dict[str, Any]]) -> str:
    """The results table (short run labels ``#1``..``#K``), the settings of each run
    (protocol, seed, emulation, faults), then which run directory each label is.

    Deliveries are exact, bytes readable (exact below 10 kB); a "predicted" cell is
    ``=`` when observed equals predicted and starts with ``<=`` when the prediction
    is an upper bound. The results show the protocol too when the runs differ in it.
    """

    def vs(obs: int, exp: int | None, bound: bool, fmt: Callable[[Any], str]) -> str:
        if exp is None:
            return "-"
        if obs == exp:
            return "="
        if bound:
            return f"<={fmt(exp)}"
        return f"~{fmt(exp)}" if fmt(exp) == fmt(obs) else fmt(exp)  # '~': not equal, only rounded alike

    mixed = len({r["protocol"] for r in rows}) > 1
    body = []
    for r in rows:
        bound = r["prediction"] == "upper_bound"
        body.append([
            r["label"],
            r["name"],
            *([r["protocol"]] if mixed else []),
            r["verdict"],
            fmt_int(r["deliveries"]),
            vs(r["deliveries"], r["expected_deliveries"], bound, fmt_int),
            fmt_bytes(r["bytes"]),
            vs(r["bytes"], r["expected_bytes"], bound, fmt_bytes),
            fmt_bytes(r["bytes_per_peer"]),
            fmt_seconds(r["time_to_quiescence"]),
            "-" if r["short_peers"] is None else r["short_peers"],
            r["problems"],
        ])
    headers = ["run", "topology", *(["proto"] if mixed else []), "verdict", "deliveries", "predicted", "bytes",
               "predicted", "per peer", "quiescence", "short", "problems"]
    out = [table(headers, body, "lll" + ("l" if mixed else "") + "r" * 8)]
    marks = "'=' : observed equals predicted; '<=' : predicted upper bound"
    if any(c.startswith("~") for row in body for c in row if isinstance(c, str)):
        marks += "; '~' : differs, though rounded alike"
    out.append(f"({marks})")
    out.append("(per peer: mean bytes received; short: peers that received less than predicted; "
               "problems: in the logs)")
    seen = [v for v in VERDICTS if any(r["verdict"] == v for r in rows)]
    out += [f"{v}: {VERDICT_NOTE[v]}" for v in seen]
    out += ["", _settings_table(rows), ""]
    width = max(len(r["label"]) for r in rows)
    for r in rows:
        line = f"{r['label'].ljust(width)}  {r['path']}"
        if Path(r["path"]).name != r["run_id"]:
            line += f"  (run {r['run_id']})"
        out.append(line)
        for reason in r["unexplained"]:
            out += [" " * (width + 2) + part for part in _wrap(f"{r['verdict']}: {reason}", TEXT_WIDTH - width - 2)]
    return "\n".join(out)


VERDICT_COLOURS = {"OK": "#2e7d32", "EXPLAINED": "#b26a00", "NOT OK": "#c62828", "NOT CHECKED": "#666666"}
OBSERVED_COLOUR, PREDICTED_COLOUR = "#4c78a8", "#bab0ac"


def _legend_line(r: dict[str, Any], limit: int) -> str:
    """``#2  mesh-5, v1, seed 42, loss 10%  (run-id)``, cut to ``limit`` characters."""
    what = [r["name"], r["protocol"]]
    if r["seed"] is not None:
        what.append(f"seed {r['seed']}")
    em = fmt_emulation(r["emulation"])
    if em != "-":
        what.append(em)
    if r["faults"]:
        what.append("faults " + " ".join(r["faults"]))
    line = f"{r['label']}  {', '.join(what)}  ({Path(r['path']).name})"
    return line if len(line) <= limit else line[: limit - 1] + "\u2026"


def _draw_bytes_per_peer(ax, rows: list[dict[str, Any]], xs: list[int], colour: str) -> None:
    """Bottom-left panel: mean bytes received per peer, with a min-to-max error bar."""
    from matplotlib.ticker import EngFormatter

    mean = [r["bytes_per_peer"] for r in rows]
    # Clamped: the mean is rounded, and counted from all traffic rather than the per-peer rows.
    lo = [max(0, m - (r["bytes_per_peer_min"] if r["bytes_per_peer_min"] is not None else m))
          for m, r in zip(mean, rows)]
    hi = [max(0, (r["bytes_per_peer_max"] if r["bytes_per_peer_max"] is not None else m) - m)
          for m, r in zip(mean, rows)]
    ax.bar(xs, mean, width=0.55, color=colour, zorder=2, yerr=[lo, hi], capsize=4, ecolor="#333333")
    if mean and max(mean) / max(min(m for m in mean if m) if any(mean) else 1, 1) > 100:
        ax.set_yscale("log")
    else:
        ax.yaxis.set_major_formatter(EngFormatter(unit="B"))
    ax.set_title("bytes received per peer (mean; bar: min to max)", fontsize=11, loc="left")


def _draw_quiescence(ax, rows: list[dict[str, Any]], xs: list[int]) -> None:
    """Bottom-right panel: time to quiescence, "n/a" where a run has none."""
    ttq = [r["time_to_quiescence"] for r in rows]
    ax.bar(xs, [t or 0 for t in ttq], width=0.55, color="#f58518", zorder=2)
    for x, t in zip(xs, ttq):
        if t is None:
            ax.annotate("n/a", (x, 0), ha="center", va="bottom", fontsize=8, color="#666666")
    ax.set_ylabel("seconds")
    ax.set_title("time to quiescence", fontsize=11, loc="left")


def _style_run_axes(axes, xs: list[int], labels: list[str], k: int) -> None:
    """Give every panel the run labels as x ticks, a light y grid and no top/right spines."""
    for row in axes:
        for a in row:
            a.set_xticks(xs)
            a.set_xticklabels(labels, fontsize=8)
            a.set_xlim(-0.6, k - 0.4)
            a.grid(axis="y", color="#e5e5e5", zorder=0)
            for side in ("top", "right"):
                a.spines[side].set_visible(False)


def _write_run_legend(fig, rows: list[dict[str, Any]], renderer, frame: tuple[float, float, float, float],
                      cols: int, legend_lines: int, legend_h: float) -> None:
    """Under the panels, one line per run in ``cols`` columns, each cut to fit its column.

    ``frame`` is ``(width, height, left, right)`` of the figure, in inches.
    """
    width, height, left, right = frame
    col_px = (width - left - right) / cols * fig.dpi - 12
    for i, r in enumerate(rows):
        c, line = divmod(i, legend_lines)
        t = fig.text(left / width + c * (1 - (left + right) / width) / cols,
                     (legend_h - 0.2 - 0.19 * line) / height, _legend_line(r, 10_000),
                     fontsize=7.5, family="monospace", va="top", ha="left", color="#333333")
        w = t.get_window_extent(renderer).width
        if w > col_px:  # cut to what fits its column
            text = t.get_text()
            t.set_text(_legend_line(r, int(len(text) * col_px / w)))


@dataclass(frozen=True)
class _VerdictStyle:
    """How verdicts are written over their run's bars, and the room kept for them."""

    kw: dict[str, Any]
    split: bool  # "NOT CHECKED" on two lines
    room: float  # fraction of a panel's height kept free over the data

    def text(self, verdict: str) -> str:
        return "NOT\nCHECKED" if self.split and verdict == "NOT CHECKED" else verdict


def _text_px(fig, renderer, text: str, height: bool = False, **kw: Any) -> float:
    t = fig.text(0, 0, text, **kw)
    box = t.get_window_extent(renderer)
    t.remove()
    return box.height if height else box.width


def _verdict_style(fig, renderer, rows: list[dict[str, Any]], slot_px: float, panel_px: float) -> _VerdictStyle:
    # A verdict goes over its run's bars: on one line, on two, or turned upright when narrower.
    kw: dict[str, Any] = {"fontsize": 7, "fontweight": "bold", "linespacing": 0.95}
    split = _text_px(fig, renderer, "NOT CHECKED", **kw) > 0.95 * slot_px
    if _text_px(fig, renderer, "EXPLAINED", **kw) > 0.95 * slot_px:
        split = False
        kw["rotation"] = 90
    style = _VerdictStyle(kw, split, 0.0)
    # Room over the bars for the verdicts: the top of the data at most at 1 - room of the height.
    tallest = max(_text_px(fig, renderer, style.text(r["verdict"]), height=True, **kw) for r in rows)
    return _VerdictStyle(kw, split, min(0.6, (tallest + 0.03 * fig.dpi) / panel_px))


def _headroom(ax, frac: float = 0.2) -> None:
    lo, hi = ax.get_ylim()
    if ax.get_yscale() == "log":
        ax.set_ylim(lo, hi * (hi / lo) ** frac)
    else:
        ax.set_ylim(lo, hi + frac * (hi - lo))


def _grouped(ax, rows: list[dict[str, Any]], xs: list[int], key: str, title: str, unit: str,
             style: _VerdictStyle) -> None:
    """Observed beside predicted bars of ``key`` per run, each run's verdict over them."""
    from matplotlib.ticker import EngFormatter

    obs = [r[key] for r in rows]
    exp = [r[f"expected_{key}"] for r in rows]
    ax.bar([x - 0.2 for x in xs], obs, width=0.4, color=OBSERVED_COLOUR, zorder=2)
    ax.bar([x + 0.2 for x in xs], [e or 0 for e in exp], width=0.4, color=PREDICTED_COLOUR, zorder=2)
    vals = [v for v in obs + exp if v]
    if vals and max(vals) / max(min(vals), 1) > 100:
        ax.set_yscale("log")
    else:
        ax.yaxis.set_major_formatter(EngFormatter(unit=unit))
    _headroom(ax, style.room / (1 - style.room))
    for x, r in zip(xs, rows):
        ax.annotate(style.text(r["verdict"]), (x, 0.985), xycoords=("data", "axes fraction"), ha="center",
                    va="top", color=VERDICT_COLOURS.get(r["verdict"], "#333333"), **style.kw)
    ax.set_title(title, fontsize=11, loc="left")


def draw_comparison(rows: list[dict[str, Any]]):
    from matplotlib.lines import Line2D
    from matplotlib.patches import Patch

    from analysis.plots import figure

    k = len(rows)
    width = min(24.0, max(10.0, 3.0 + 1.3 * k))
    # Below the panels: which run each label is, in one to three columns.
    cols = 1 if k <= 6 else 2 if k <= 16 else 3
    legend_lines = -(-k // cols)
    legend_h = 0.3 + 0.19 * legend_lines
    height = 7.8 + legend_h
    fig = figure(width, height)
    left, right, top_in, bottom_in = 0.75, 0.2, 0.75, 0.55 + legend_h
    axes = fig.subplots(2, 2, gridspec_kw={
        "hspace": 0.5, "wspace": 0.16, "left": left / width, "right": 1 - right / width,
        "top": 1 - top_in / height, "bottom": bottom_in / height})
    xs = list(range(k))
    renderer = fig.canvas.get_renderer()
    panel = axes[0][0].get_window_extent(renderer)
    slot_px = panel.width / (k + 0.2)
    # Each tick label is "#i" over the topology, or only "#i" when a topology would not
    # fit its slot (the legend under the panels names every run).
    labels = [f"{r['label']}\n{r['name']}" for r in rows]
    if max(_text_px(fig, renderer, s, fontsize=8) for s in labels) > 0.92 * slot_px:
        labels = [r["label"] for r in rows]
    style = _verdict_style(fig, renderer, rows, slot_px, panel.height)
    _grouped(axes[0][0], rows, xs, "deliveries", "deliveries (with each run's verdict)", "", style)
    _grouped(axes[0][1], rows, xs, "bytes", "bytes", "B", style)
    _draw_bytes_per_peer(axes[1][0], rows, xs, OBSERVED_COLOUR)
    _draw_quiescence(axes[1][1], rows, xs)
    _style_run_axes(axes, xs, labels, k)
    fig.legend(
        handles=[Patch(color=OBSERVED_COLOUR, label="observed"),
                 Patch(color=PREDICTED_COLOUR, label="predicted (or upper bound)"),
                 Line2D([], [], color="#333333", marker="|", markersize=11, markeredgewidth=1.5, ls="",
                        label="per-peer range")],
        loc="upper right", ncol=3, fontsize=9, frameon=False, bbox_to_anchor=(1 - right / width, 1 - 0.12 / height),
    )
    fig.suptitle(f"Comparison of {k} runs", fontsize=13, x=left / width, ha="left", y=1 - 0.12 / height, va="top")
    _write_run_legend(fig, rows, renderer, (width, height, left, right), cols, legend_lines, legend_h)
    return fig
