"""Pictures of a run: traffic, world views, timeline (PNG) and the interactive world-view pages.

Matplotlib is used through ``Figure`` + the Agg canvas only (no pyplot, no global
backend state, no display). The interactive pages (analysis.worldview_page) load one
copy of vis-network per run directory, read from the installed ``pyvis`` package, so
they work offline.

Outputs (in the run directory):
  traffic_<topology>.png             bytes (in + out) per connected pair, as the original tool drew it
  traffic.png                        the topology with bytes per link
  timeline.png                       cumulative deliveries per peer over time
  worldview/peer-<id>.png            a peer's world view against the topology: every peer up to
                                     ALL_VIEWS_LIMIT peers, else the views that differ most
  worldview/views.png                every peer's view at a glance (when some peer has no picture)
  worldview/index.html, lib/, *.js   the world-view viewer (analysis.worldview_page)
  p2p_graph_<id>_<topology>.html     the viewer opened on peer <id>, draggable, in/out bytes on hover
"""

from __future__ import annotations

import io
import math
import os
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from analysis._util import atomic_write, fmt_bytes, fmt_int

if TYPE_CHECKING:
    from matplotlib.figure import Figure

    from analysis.model import Analysis

Edge = tuple[int, int]

LABEL_LIMIT = 60  # above this many peers: no per-edge labels
EDGE_LABEL_LIMIT = 64  # above this many links: no per-edge labels
PER_PEER_LIMIT = 60  # above this many peers: no per-peer PNG/HTML; the viewer shows neighbourhoods
ALL_VIEWS_LIMIT = 12  # up to this many peers: a picture of every peer's view
MAX_VIEW_PICTURES = 6  # above: pictures of the views that differ most from the topology, at most this many
LANDMARK_EVERY = 5  # large views label only the peers that matter and every 5th id
BAR_LABEL_LIMIT = 150  # above this many pairs: no tick labels on the bar chart
DPI = 150
VIEW_DPI = 120  # per-peer pictures (many of them, shown as thumbnails in the report)
POOL_MIN_PEERS = 6  # draw per-peer pictures in parallel from 2 * this many peers

SEEN = "#2b4c7e"
MISSING = "#a0a0a0"
EXTRA = "#d62728"
NODE_FACE = "#f2f2f2"
NODE_EDGE = "#333333"
HIGHLIGHT = "#f28e2b"


# ---- entry point ---------------------------------------------------------------


def make_plots(analysis: Analysis, progress: Callable[[str], Any] | None = None) -> list[Path]:
    """Draw every picture; return the files written. Skips are reported via ``progress``."""
    say = progress or (lambda _m: None)
    t0 = time.perf_counter()
    run_dir = analysis.run_dir
    written: list[Path] = []
    topo = _safe(analysis.topology)

    written.append(_save(draw_pair_bars(analysis), run_dir / f"traffic_{topo}.png"))
    written.append(_save(draw_traffic(analysis), run_dir / "traffic.png"))
    if not _labels_fit(analysis):
        _note(
            analysis,
            say,
            f"traffic.png: no per-edge labels (more than {LABEL_LIMIT} peers or {EDGE_LABEL_LIMIT} links); "
            "colour and width show bytes, stats.txt lists every edge",
        )
    fig = draw_timeline(analysis)
    if fig is not None:
        written.append(_save(fig, run_dir / "timeline.png"))
    else:
        _note(analysis, say, "timeline.png skipped: no progress events (original format)")
    written.extend(_worldview_outputs(analysis, say))
    say(f"plots: {len(written)} files in {time.perf_counter() - t0:.2f} s")
    return written


def _worldview_outputs(analysis: Analysis, say: Callable[[str], Any]) -> list[Path]:
    """worldview/peer-<id>.png for the peers worth a picture, worldview/views.png (every
    peer at a glance) when not every peer has one, and the interactive viewer pages."""
    from analysis.worldview_page import vis_js, write_pages

    n = analysis.n
    written: list[Path] = []
    small = n <= PER_PEER_LIMIT
    pos = layout(analysis) if small else None
    peers = view_picture_peers(analysis) if small else []
    if peers:
        written.extend(_draw_worldviews(analysis, peers, pos))
    if len(peers) < len(analysis.views):  # not every peer has a picture: all of them at a glance
        written.append(_save(draw_view_summary(analysis, peers), analysis.run_dir / "worldview" / "views.png"))
        pictures = (f"pictures of the {len(peers)} that differ most from the topology" if peers
                    else "no per-peer pictures (none differs from the topology)" if small
                    else f"no per-peer pictures (more than {PER_PEER_LIMIT} peers)")
        _note(analysis, say, f"world views: worldview/views.png sums up all {n}; {pictures}; "
              "the viewer (worldview/index.html) and worldview.json have every view")
    _remove_stale(analysis, peers, small)
    js = vis_js()
    if js is None:
        _note(analysis, say, "world-view pages skipped: the pyvis package (source of vis-network) is not installed")
        return written
    written.extend(write_pages(analysis, pos, js, per_peer=small, limit=PER_PEER_LIMIT))
    if not small:
        _note(analysis, say, f"per-peer HTML skipped: {n} peers > {PER_PEER_LIMIT}; worldview/index.html "
              "shows any peer's neighbourhood")
    return written


def _remove_stale(analysis: Analysis, peers: list[int], pages: bool) -> None:
    """Per-peer pictures and pages an earlier analysis left that this one does not redraw
    (earlier versions drew one of each per peer: 30 MB at cycle-50)."""
    run_dir = analysis.run_dir
    keep = {run_dir / "worldview" / f"peer-{p}.png" for p in peers}
    if pages:
        keep |= {run_dir / f"p2p_graph_{p}_{_safe(analysis.topology)}.html" for p in analysis.views}
    for old in [*(run_dir / "worldview").glob("peer-*.png"), *run_dir.glob("p2p_graph_*_*.html")]:
        if old not in keep:
            old.unlink(missing_ok=True)


def view_picture_peers(analysis: Analysis) -> list[int]:
    """Every peer up to ALL_VIEWS_LIMIT peers; above, the views that differ from the
    topology, most differences first, at most MAX_VIEW_PICTURES (50 pictures of the same
    complete cycle took most of the plotting time and 6 MB, and said nothing new)."""
    peers = sorted(analysis.views)
    if analysis.n <= ALL_VIEWS_LIMIT:
        return peers
    true = {(min(a, b), max(a, b)) for a, b in analysis.graph.edges}
    wrong = {p: len(true ^ analysis.views[p]) for p in peers}
    worst = sorted((p for p in peers if wrong[p]), key=lambda p: (-wrong[p], p))
    return sorted(worst[:MAX_VIEW_PICTURES])


def _note(analysis: Analysis, say: Callable[[str], Any], msg: str) -> None:
    analysis.notes.append(msg)
    say(msg)


def _safe(name: str) -> str:
    return "".join(c if c.isalnum() or c in "-_" else "_" for c in name)


def figure(w: float, h: float) -> Figure:
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(w, h), dpi=DPI)
    FigureCanvasAgg(fig)
    return fig


def png_bytes(fig: Figure, dpi: int = DPI) -> bytes:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=dpi, facecolor="white")
    return buf.getvalue()


def _draw_worldview_files(analysis: Analysis, peers: list[int], pos) -> list[Path]:
    out = analysis.run_dir / "worldview"
    return [
        atomic_write(out / f"peer-{p}.png", png_bytes(draw_worldview(analysis, p, pos), dpi=VIEW_DPI)) for p in peers
    ]


def _draw_worldviews(analysis: Analysis, peers: list[int], pos) -> list[Path]:
    """worldview/peer-<id>.png for ``peers``; spread over one process per CPU when
    there are many (each picture takes ~0.15 s)."""
    workers = min(os.cpu_count() or 1, len(peers) // POOL_MIN_PEERS)
    if workers > 1:
        try:
            import multiprocessing
            from concurrent.futures import ProcessPoolExecutor

            chunks = [peers[i::workers] for i in range(workers)]
            with ProcessPoolExecutor(workers, mp_context=multiprocessing.get_context("fork")) as pool:
                done = list(pool.map(_draw_worldview_files, [analysis] * workers, chunks, [pos] * workers))
            return sorted((f for chunk in done for f in chunk), key=lambda f: int(f.stem.split("-")[1]))
        except (OSError, ValueError, ImportError, RuntimeError):
            pass  # no fork here: draw them in this process
    return _draw_worldview_files(analysis, peers, pos)


def _save(fig: Figure, path: Path) -> Path:
    return atomic_write(path, png_bytes(fig))


# ---- layout and drawing primitives ---------------------------------------------


def layout(analysis: Analysis) -> dict[int, tuple[float, float]]:
    """Fixed, readable positions, in [-1, 1]²: the map for a graph whose nodes have positions
    (longitude, latitude: real networks), a circle (peer 0 on top, clockwise) for the
    circulant families and for small unknown graphs, else a seeded spring layout."""
    from generator.networks import map_positions

    n = analysis.n
    on_map = map_positions(analysis.graph)
    if on_map is not None:
        return _fit(on_map)
    if _circular(analysis):
        return {
            i: (math.cos(math.pi / 2 - 2 * math.pi * i / n), math.sin(math.pi / 2 - 2 * math.pi * i / n))
            for i in range(n)
        }
    import networkx as nx

    return _fit(nx.spring_layout(analysis.graph, seed=7))


def _fit(raw) -> dict[int, tuple[float, float]]:
    """Positions scaled into [-1, 1]² around the centre, the aspect ratio kept."""
    xs = [p[0] for p in raw.values()]
    ys = [p[1] for p in raw.values()]
    span = max(max(xs) - min(xs), max(ys) - min(ys)) or 1.0
    cx, cy = (max(xs) + min(xs)) / 2, (max(ys) + min(ys)) / 2
    return {int(k): (2 * (v[0] - cx) / span, 2 * (v[1] - cy) / span) for k, v in raw.items()}


def _circular(analysis: Analysis) -> bool:
    return analysis.topology in ("cycle", "mesh", "starfish") or analysis.n <= 12


def _text_w(text: str, font: float) -> float:
    """Approximate width in points of a (multi-line) label."""
    return max(len(s) for s in text.split("\n")) * 0.56 * font + 5


def _labels_fit(analysis: Analysis) -> bool:
    return analysis.n <= LABEL_LIMIT and analysis.graph.number_of_edges() <= EDGE_LABEL_LIMIT


def _graph_size(n: int) -> float:
    """Figure side in inches for a graph picture."""
    return min(14.0, max(6.5, 6.5 + (n - 10) * 0.25))


def _node_style(n: int, side: float) -> tuple[float, float]:
    """(marker diameter in points, font size) for n nodes on a circle in a side-inch figure."""
    circumference_pt = math.pi * side * 72 * 0.72
    diam = max(9.0, min(28.0, 0.4 * circumference_pt / max(n, 1)))
    return diam, max(6.0, min(11.0, diam * 0.42))


def _setup_graph_axes(ax, pos: dict[int, tuple[float, float]], pad: float) -> None:
    xs = [p[0] for p in pos.values()]
    ys = [p[1] for p in pos.values()]
    ax.set_xlim(min(xs) - pad, max(xs) + pad)
    ax.set_ylim(min(ys) - pad, max(ys) + pad)
    ax.set_aspect("equal")
    ax.axis("off")


def _draw_nodes(ax, pos, nodes, diam: float, font: float, highlight: int | None = None) -> None:
    nodes = list(nodes)
    faces = [HIGHLIGHT if v == highlight else NODE_FACE for v in nodes]
    ax.scatter(
        [pos[v][0] for v in nodes],
        [pos[v][1] for v in nodes],
        s=diam**2,
        c=faces,
        edgecolors=NODE_EDGE,
        linewidths=1.2,
        zorder=3,
    )
    for v in nodes:
        ax.text(pos[v][0], pos[v][1], str(v), ha="center", va="center", fontsize=font, zorder=4,
                fontweight="bold" if v == highlight else "normal")


def _segments(pos, edges) -> list[list[tuple[float, float]]]:
    return [[pos[a], pos[b]] for a, b in edges]


class _LabelPlacer:
    """Greedy placement of edge labels along (or beside) their edges, avoiding
    other labels and nodes. Labels are rotated along their edge; overlap tests
    use the labels' rotated rectangles (separating axes)."""

    FRACTIONS = (0.5, 0.38, 0.62, 0.28, 0.72, 0.2, 0.8)

    def __init__(self, pos, unit_pt: float, node_r: float) -> None:
        self.pos = pos
        self.unit_pt = unit_pt  # points per data unit
        self.node_r = node_r  # node radius in data units
        # placed labels: centre x, y, unit axis (ux, uy), half width, half height
        self.boxes: list[tuple[float, float, float, float, float, float]] = []
        xs = [p[0] for p in pos.values()]
        ys = [p[1] for p in pos.values()]
        self.centre = (sum(xs) / len(xs), sum(ys) / len(ys))

    @staticmethod
    def _overlap(a, b) -> bool:
        ax_, ay_, aux, auy, aw, ah = a
        bx_, by_, bux, buy, bw, bh = b
        dx, dy = bx_ - ax_, by_ - ay_
        for ux, uy in ((aux, auy), (-auy, aux), (bux, buy), (-buy, bux)):
            ra = aw * abs(aux * ux + auy * uy) + ah * abs(-auy * ux + aux * uy)
            rb = bw * abs(bux * ux + buy * uy) + bh * abs(-buy * ux + bux * uy)
            if abs(dx * ux + dy * uy) >= ra + rb:
                return False
        return True

    def place(self, a: int, b: int, text: str, font: float) -> tuple[float, float, float, float]:
        (x1, y1), (x2, y2) = self.pos[a], self.pos[b]
        ang = math.degrees(math.atan2(y2 - y1, x2 - x1))
        if ang > 90:
            ang -= 180
        elif ang < -90:
            ang += 180
        lines = text.split("\n")
        hw = (max(len(s) for s in lines) * 0.56 * font + 5) / self.unit_pt / 2
        hh = (len(lines) * 1.2 * font + 3) / self.unit_pt / 2
        ux, uy = math.cos(math.radians(ang)), math.sin(math.radians(ang))
        # Unit normal pointing away from the layout's centre ("outside").
        nx_, ny_ = -uy, ux
        mx, my = (x1 + x2) / 2 - self.centre[0], (y1 + y2) / 2 - self.centre[1]
        if nx_ * mx + ny_ * my < 0:
            nx_, ny_ = -nx_, -ny_
        r = self.node_r
        off = hh + r * 0.8 + 1.5 / self.unit_pt
        best = None
        for k in (0.0, 1.0, -1.0):
            for t in self.FRACTIONS:
                x = x1 + t * (x2 - x1) + k * off * nx_
                y = y1 + t * (y2 - y1) + k * off * ny_
                box = (x, y, ux, uy, hw, hh)
                cost = 0.0
                for other in self.boxes:
                    if self._overlap(box, other):
                        cost += 1
                for px, py in self.pos.values():
                    du, dv = (px - x) * ux + (py - y) * uy, -(px - x) * uy + (py - y) * ux
                    if abs(du) < hw + r and abs(dv) < hh + r:
                        cost += 1.5
                cost += 0.05 * abs(k) + 0.02 * abs(t - 0.5)  # prefer centred, on the edge
                if best is None or cost < best[0]:
                    best = (cost, box)
                if cost < 0.5:
                    break
            if best is not None and best[0] < 0.5:
                break
        assert best is not None
        cost, box = best
        self.boxes.append(box)
        return box[0], box[1], ang, cost


@dataclass
class _LabelPlan:
    along: dict[Edge, tuple[float, float, float]]  # x, y, rotation
    radial: dict[Edge, tuple[float, float, str]]  # angle, start radius, text
    pad: float  # axes padding (data units) the radial labels need


def _plan_labels(pos, texts: dict[Edge, str], n: int, circular: bool, axes_pt: float, pad: float,
                 diam: float, font: float) -> _LabelPlan:
    """Place edge labels along their edges; on a circle, a label that fits nowhere
    along its edge (or a short link between circle neighbours) goes radially
    outside the circle, naming its link, stacked outwards when angles coincide."""
    unit_pt = axes_pt / (2 + 2 * pad)
    r = diam / 2 / unit_pt
    placer = _LabelPlacer(pos, unit_pt, r)
    along: dict[Edge, tuple[float, float, float]] = {}
    outside: list[Edge] = []
    # Longer edges first: they have more room to move along.
    for a, b in sorted(texts, key=lambda e: (-math.dist(pos[e[0]], pos[e[1]]), e)):
        text = texts[(a, b)]
        neighbours = (b - a) % n in (1, n - 1)
        if circular and neighbours and _text_w(text, font) / unit_pt > 0.8 * (math.dist(pos[a], pos[b]) - 2 * r):
            outside.append((a, b))
            continue
        x, y, ang, cost = placer.place(a, b, text, font)
        if circular and cost >= 1:
            placer.boxes.pop()
            outside.append((a, b))
        else:
            along[(a, b)] = (x, y, ang)
    node_angles = [math.atan2(p[1], p[0]) for p in pos.values()]
    radial: dict[Edge, tuple[float, float, str]] = {}
    stacks: dict[int, float] = {}
    need = pad
    for a, b in sorted(outside):
        text = texts[(a, b)]
        if (b - a) % n not in (1, n - 1) and "→" not in text:
            text = f"{a}–{b}: {text}"
        mx, my = (pos[a][0] + pos[b][0]) / 2, (pos[a][1] + pos[b][1]) / 2
        th = math.atan2(my, mx)
        gap = min(abs(math.remainder(th - t, 2 * math.pi)) for t in node_angles)
        start = 1 + (0.3 * r if gap > 1.5 * r else 1.15 * r)
        key = round(th * 1000)
        rr = max(start, stacks.get(key, start))
        width = (_text_w(text, font) + 4) / unit_pt
        stacks[key] = rr + width
        radial[(a, b)] = (th, rr, text)
        need = max(need, rr + width - 1 + 4 / unit_pt)
    return _LabelPlan(along, radial, need)


# ---- traffic.png -----------------------------------------------------------------


def _undirected_traffic(analysis: Analysis) -> dict[Edge, tuple[int, int]]:
    """(a, b) with a < b -> (bytes a→b, bytes b→a), over topology edges and observed ones."""
    out: dict[Edge, tuple[int, int]] = {}
    keys = {(min(a, b), max(a, b)) for a, b in analysis.graph.edges}
    keys |= {(min(u, v), max(u, v)) for (u, v), f in analysis.observed.items() if f.frames}
    for a, b in sorted(keys):
        ab = analysis.observed.get((a, b))
        ba = analysis.observed.get((b, a))
        out[(a, b)] = (ab.bytes if ab else 0, ba.bytes if ba else 0)
    return out


def _totals_line(s: dict[str, Any]) -> str:
    word = "upper bound" if s.get("prediction") == "upper_bound" else "predicted"

    def vs(obs: int, exp: int | None, f: Callable[[Any], str], unit: str) -> str:
        if exp is None:
            return f"{f(obs)}{unit} (no prediction)"
        return f"{f(obs)}{unit} ({word} {f(exp)})" if obs != exp else f"{f(obs)}{unit} (as {word})"

    return (
        f"{vs(s['deliveries'], s['expected_deliveries'], fmt_int, ' deliveries')}  ·  "
        f"{vs(s['bytes'], s['expected_bytes'], fmt_bytes, '')}"
    )


def _traffic_label_texts(analysis: Analysis, traffic: dict[Edge, tuple[int, int]]) -> dict[Edge, str]:
    """Each link's label (bytes each way), or none at all when labels would not fit."""
    texts: dict[Edge, str] = {}
    if _labels_fit(analysis):
        for (a, b), (ab, ba) in traffic.items():
            if ab == ba:
                texts[(a, b)] = fmt_bytes(ab) if ab else "no traffic"
            else:
                texts[(a, b)] = f"{a}→{b} {fmt_bytes(ab)}\n{b}→{a} {fmt_bytes(ba)}"
    return texts


def _draw_traffic_labels(ax, plan, texts: dict[Edge, str], true: set[Edge], label_font: float) -> None:
    """Write the planned link labels: along their links, then radially outside the circle."""
    box = {"boxstyle": "round,pad=0.15", "fc": "white", "ec": "none", "alpha": 0.92}
    for (a, b), (x, y, ang) in plan.along.items():
        ax.text(
            x, y, texts[(a, b)], fontsize=label_font, ha="center", va="center", rotation=ang,
            rotation_mode="anchor", zorder=5, linespacing=1.1,
            color=EXTRA if (a, b) not in true else "#111111", bbox=box,
        )
    for (a, b), (th, rr, text) in plan.radial.items():
        right = math.cos(th) >= -1e-9
        ax.text(
            rr * math.cos(th), rr * math.sin(th), text, fontsize=label_font,
            ha="left" if right else "right", va="center",
            rotation=math.degrees(th) + (0 if right else 180), rotation_mode="anchor",
            zorder=5, linespacing=1.1, color=EXTRA if (a, b) not in true else "#111111", bbox=box,
        )


def _traffic_legend_handles(traffic: dict[Edge, tuple[int, int]], say_amount: bool, vmin: int, vmax: int,
                            colour: Any, max_w: float, dead: bool, extra: bool) -> list[Any]:
    """Legend entries for the traffic graph: the amount carried (when there is no colour bar),
    links without traffic, and traffic outside the topology."""
    from matplotlib.lines import Line2D

    handles = []
    if say_amount:
        each = {x for ab_ba in traffic.values() for x in ab_ba if x}
        if len(each) == 1:
            what = f"every link carries {fmt_bytes(vmax // 2)} each way"
        elif vmin == vmax:
            what = f"every link carries {fmt_bytes(vmax)} (both ways)"
        else:
            what = f"links carry {fmt_bytes(vmin)} to {fmt_bytes(vmax)} (both ways)"
        handles.append(Line2D([], [], color=colour, lw=max_w, label=what))
    if dead:
        handles.append(Line2D([], [], color=MISSING, lw=1.2, ls="--", label="link without traffic"))
    if extra:
        handles.append(Line2D([], [], color=EXTRA, lw=2, label="traffic outside the topology"))
    return handles


def draw_traffic(analysis: Analysis) -> Figure:
    from matplotlib import cm, colors
    from matplotlib.collections import LineCollection
    from matplotlib.ticker import EngFormatter

    s = analysis.summary
    n = analysis.n
    pos = layout(analysis)
    side = _graph_size(n)
    true = {(min(a, b), max(a, b)) for a, b in analysis.graph.edges}
    traffic = _undirected_traffic(analysis)
    totals = {e: ab + ba for e, (ab, ba) in traffic.items()}
    carried = [t for e, t in totals.items() if t > 0]
    vmax = max(carried, default=1)
    vmin = min(carried, default=0)
    # A colour bar only says something when the links differ noticeably.
    show_bar = bool(carried) and vmax - vmin >= 0.1 * vmax
    fig_w, fig_h = (side + 1.3, side + 0.5) if show_bar else (side + 0.2, side + 0.5)
    ax_w, ax_h = (0.80 if show_bar else 0.96), 0.86
    fig = figure(fig_w, fig_h)
    ax = fig.add_axes((0.02, 0.02, ax_w, ax_h))
    diam, font = _node_style(n, side)
    label_font = 8.0 if n <= 10 else 7.0 if n <= 30 else 6.0
    texts = _traffic_label_texts(analysis, traffic)
    axes_pt = min(ax_w * fig_w, ax_h * fig_h) * 72
    circular = _circular(analysis)
    pad = 0.22
    plan = _plan_labels(pos, texts, n, circular, axes_pt, pad, diam, label_font)
    if plan.pad > pad:  # radial labels need room outside the circle: re-plan at the new scale
        pad = plan.pad
        plan = _plan_labels(pos, texts, n, circular, axes_pt, pad, diam, label_font)
        pad = max(pad, plan.pad)
    _setup_graph_axes(ax, pos, pad)
    cmap = colors.LinearSegmentedColormap.from_list("traffic", ["#9ecae1", "#3182bd", "#08306b"])
    norm = colors.Normalize(vmin=0, vmax=vmax)
    max_w = max(1.5, min(5.0, 16.0 / max(len(traffic), 1) ** 0.5))

    live = [e for e in traffic if totals[e] > 0]
    dead = [e for e in traffic if totals[e] == 0]
    if dead:
        ax.add_collection(LineCollection(_segments(pos, dead), colors=MISSING, linewidths=1.0, linestyles="--", zorder=1))
    if live:
        ax.add_collection(
            LineCollection(
                _segments(pos, live),
                colors=[EXTRA if e not in true else cmap(norm(totals[e])) for e in live],
                linewidths=[0.8 + (max_w - 0.8) * totals[e] / vmax for e in live],
                zorder=2,
                capstyle="round",
            )
        )
    _draw_nodes(ax, pos, range(n), diam, font)

    _draw_traffic_labels(ax, plan, texts, true, label_font)
    if show_bar:
        cax = fig.add_axes((0.85, 0.2, 0.022, 0.55))
        cb = fig.colorbar(cm.ScalarMappable(norm=norm, cmap=cmap), cax=cax)
        cb.set_label("bytes over the link (both directions)", fontsize=9)
        cb.ax.yaxis.set_major_formatter(EngFormatter(unit="B"))
        cb.ax.tick_params(labelsize=8)
    handles = _traffic_legend_handles(traffic, carried and not show_bar, vmin, vmax, cmap(1.0), max_w,
                                      bool(dead), any(e not in true for e in live))
    if handles:
        ax.legend(handles=handles, loc="lower left", bbox_to_anchor=(0.0, -0.02), fontsize=9, frameon=False)
    fig.suptitle(f"{analysis.name}: bytes per link ({s['protocol']})", fontsize=14, y=0.975)
    fig.text(0.5, 0.925, _totals_line(s), ha="center", fontsize=10, color="#444444")
    if _labels_fit(analysis):
        fig.text(0.5, 0.9, "labels: bytes sent each way over the link; 'a→b' where the two directions differ",
                 ha="center", fontsize=8, color="#666666")
    return fig


# ---- traffic_<topology>.png -------------------------------------------------------


def draw_pair_bars(analysis: Analysis) -> Figure:
    """The original tool's view: total bytes (in + out) per connected pair."""
    from matplotlib.lines import Line2D
    from matplotlib.patches import Patch
    from matplotlib.ticker import EngFormatter

    traffic = _undirected_traffic(analysis)
    pairs = list(traffic)
    values = [sum(traffic[e]) for e in pairs]
    pred = analysis.prediction
    expected = None
    if pred is not None:
        expected = []
        for a, b in pairs:
            fa, fb = pred.per_edge.get((a, b)), pred.per_edge.get((b, a))
            expected.append((fa.bytes if fa else 0) + (fb.bytes if fb else 0))
    k = len(pairs)
    width = min(30.0, max(6.5, 1.2 + 0.28 * k))
    fig = figure(width, 4.8)
    left = 0.95 / width
    ax = fig.add_axes((left, 0.22, 1 - left - 0.25 / width, 0.6))
    true = {(min(a, b), max(a, b)) for a, b in analysis.graph.edges}
    ax.bar(range(k), values, width=0.75, color=["#4c78a8" if e in true else EXTRA for e in pairs], zorder=2)
    handles = [Patch(color="#4c78a8", label="observed")]
    if expected is not None:
        ax.scatter(range(k), expected, marker="_", s=(120 if k <= 60 else 40), color="black", zorder=3, linewidths=1.5)
        handles.append(Line2D([], [], color="black", marker="_", ls="", markersize=10, mew=1.5, label="predicted"))
    if any(e not in true for e in pairs):
        handles.append(Patch(color=EXTRA, label="pair outside the topology"))
    ax.yaxis.set_major_formatter(EngFormatter(unit="B"))
    ax.set_ylabel("bytes (in + out)")
    ax.set_xlim(-0.7, k - 0.3)
    ax.grid(axis="y", color="#dddddd", zorder=0)
    for side in ("top", "right"):
        ax.spines[side].set_visible(False)
    if k <= BAR_LABEL_LIMIT:
        ax.set_xticks(range(k))
        ax.set_xticklabels([f"{a} <-> {b}" for a, b in pairs], rotation=90, fontsize=8 if k <= 60 else 6)
    else:
        ax.set_xticks([])
        ax.set_xlabel(f"{k} peer pairs (labels omitted), ordered by peer ids")
    # Title and legend on rows of their own: side by side they met at 6.5 inches (cycle-5).
    fig.text(left, 0.965, f"{analysis.name}: traffic per connected peer pair", fontsize=12, va="top")
    fig.legend(handles=handles, fontsize=8, loc="upper left", frameon=False, bbox_to_anchor=(left - 0.01, 0.9),
               ncol=3, borderaxespad=0.0)
    return fig


# ---- timeline.png ------------------------------------------------------------------


def draw_timeline(analysis: Analysis) -> Figure | None:
    from matplotlib import cm, colors
    from matplotlib.ticker import EngFormatter

    series = {p: pts for p, pts in analysis.timeline.items() if pts}
    if not series:
        return None
    n = analysis.n
    fig = figure(8.5, 4.8)
    ax = fig.add_axes((0.1, 0.12, 0.72 if n > 10 else 0.74, 0.72))
    from matplotlib import colormaps

    cmap = colormaps["tab10"] if n <= 10 else colormaps["viridis"]
    norm = colors.Normalize(vmin=0, vmax=max(n - 1, 1))
    for p, pts in sorted(series.items()):
        xs = [t for t, _ in pts]
        ys = [r for _, r in pts]
        color = cmap(p % 10) if n <= 10 else cmap(norm(p))
        ax.plot(xs, ys, color=color, lw=1.4 if n <= 10 else 0.9, alpha=0.9, label=f"peer {p}",
                marker="o" if n <= 10 else None, markersize=2.2)
    exp = sorted({r["expected_received"] for r in analysis.summary["peers"] if r["expected_received"]})
    if exp and len(exp) <= 4:
        for e in exp:
            ax.axhline(e, color="#666666", ls=":", lw=1)
        ax.text(0.01, exp[-1], "expected", transform=ax.get_yaxis_transform(), va="bottom", fontsize=8,
                color="#666666")
    ax.set_xlabel("seconds since the first peer started")
    ax.set_ylabel("messages received (cumulative)")
    ax.yaxis.set_major_formatter(EngFormatter())
    ax.set_xlim(left=0)
    ax.set_ylim(bottom=0)
    ax.grid(color="#e5e5e5")
    for side in ("top", "right"):
        ax.spines[side].set_visible(False)
    if n <= 10:
        ax.legend(fontsize=8, frameon=False, loc="upper left", bbox_to_anchor=(1.02, 1.0))
    else:
        cax = fig.add_axes((0.86, 0.12, 0.02, 0.72))
        cb = fig.colorbar(cm.ScalarMappable(norm=norm, cmap=cmap), cax=cax)
        cb.set_label("peer id", fontsize=9)
    ttq = analysis.summary["time_to_quiescence"]
    fig.text(0.1, 0.94, f"{analysis.name}: deliveries over time", fontsize=12, va="bottom")
    sub = "from the peers' progress events (at most one per 100 ms)"
    if ttq is not None:
        sub = f"time to quiescence {ttq:.3f} s · " + sub
    fig.text(0.1, 0.925, sub, fontsize=8, color="#555555", va="top")
    return fig


# ---- worldview/peer-<id>.png ---------------------------------------------------------


def draw_worldview(analysis: Analysis, peer: int, pos: dict[int, tuple[float, float]] | None = None) -> Figure:
    from matplotlib.collections import LineCollection
    from matplotlib.lines import Line2D

    n = analysis.n
    pos = dict(pos or layout(analysis))
    view = analysis.views[peer]
    true = {(min(a, b), max(a, b)) for a, b in analysis.graph.edges}
    seen = sorted(view & true)
    missing = sorted(true - view)
    extra = sorted(view - true)
    # Extra edges may name peers outside 0..n-1: put them on an outer ring.
    outsiders = sorted({x for e in extra for x in e if x not in pos})
    for k, x in enumerate(outsiders):
        ang = 2 * math.pi * (k + 0.5) / len(outsiders)
        pos[x] = (1.35 * math.cos(ang), 1.35 * math.sin(ang))
    side = _graph_size(n) * 0.85
    fig = figure(side, side + 0.6)
    ax = fig.add_axes((0.03, 0.08, 0.94, 0.8))
    _setup_graph_axes(ax, pos, 0.18)
    diam, font = _node_style(n, side)
    if missing:
        ax.add_collection(LineCollection(_segments(pos, missing), colors=MISSING, linewidths=1.4, linestyles=(0, (4, 3)), zorder=1))
    w = 1.8 if n <= 12 else 1.2 if n <= 30 else 0.8
    if seen:
        ax.add_collection(LineCollection(_segments(pos, seen), colors=SEEN, linewidths=w, zorder=2))
    if extra:
        ax.add_collection(LineCollection(_segments(pos, extra), colors=EXTRA, linewidths=w + 0.6, zorder=2))
    if n <= 30:
        _draw_nodes(ax, pos, sorted(pos), diam, font, highlight=peer)
    else:
        # 50 labels at 6 pt could not be read without zooming: label what the picture is about.
        keep = _landmarks(analysis, peer, missing, extra, pos)
        ax.scatter([pos[v][0] for v in pos if v not in keep], [pos[v][1] for v in pos if v not in keep], s=16,
                   c=NODE_FACE, edgecolors=NODE_EDGE, linewidths=0.8, zorder=3)
        _draw_nodes(ax, pos, sorted(keep), 20.0, 8.5, highlight=peer)
    handles = [
        Line2D([], [], color=SEEN, lw=2, label=f"seen ({len(seen)})"),
        Line2D([], [], color=MISSING, lw=1.5, ls=(0, (4, 3)), label=f"in the topology, not seen ({len(missing)})"),
        Line2D([], [], color=EXTRA, lw=2.4, label=f"seen, not in the topology ({len(extra)})"),
        Line2D([], [], color=NODE_EDGE, marker="o", markerfacecolor=HIGHLIGHT, ls="", markersize=9, label=f"peer {peer}"),
    ]
    fig.legend(handles=handles, loc="lower center", ncol=2, fontsize=9, frameon=False, bbox_to_anchor=(0.5, 0.0))
    status = "complete" if not missing and not extra else f"{len(missing)} missing, {len(extra)} extra"
    fig.suptitle(f"{analysis.name}: world view of peer {peer}", fontsize=13, y=0.975)
    fig.text(0.5, 0.925, f"{len(view)} edges from its hop lists, topology has {len(true)}: {status}",
             ha="center", fontsize=9, color="#444444")
    return fig


def _landmarks(analysis: Analysis, peer: int, missing: list[Edge], extra: list[Edge], pos) -> set[int]:
    """The nodes a large view labels: the peer, its neighbours, the ends of extra edges,
    the ends of missing ones (when few) and every LANDMARK_EVERY-th id to count along."""
    keep = {peer, *analysis.graph[peer], *(x for e in extra for x in e)}
    ends = {x for e in missing for x in e}
    if len(keep | ends) <= 24:
        keep |= ends
    keep |= {v for v in pos if isinstance(v, int) and v % LANDMARK_EVERY == 0}
    return {v for v in keep if v in pos}


# ---- worldview/views.png -------------------------------------------------------------


def draw_view_summary(analysis: Analysis, pictured: list[int]) -> Figure:
    """How every peer's view differs from the topology: extra edges up, missing edges down,
    on a symlog scale so that one extra edge stays visible next to hundreds missing (bars
    of the whole view hid it: 1 edge in 1000 is under a pixel). Readable at any N."""
    from matplotlib.patches import Patch
    from matplotlib.ticker import FuncFormatter, MaxNLocator

    true = {(min(a, b), max(a, b)) for a, b in analysis.graph.edges}
    peers = sorted(analysis.views)
    missing = [len(true - analysis.views[p]) for p in peers]
    extra = [len(analysis.views[p] - true) for p in peers]
    fig = figure(9.0, 4.6)
    ax = fig.add_axes((0.09, 0.14, 0.88, 0.64))
    width = 0.8 if len(peers) <= 120 else 1.0
    ax.bar(peers, [-m for m in missing], width=width, color=MISSING, lw=0, zorder=2)
    ax.bar(peers, extra, width=width, color=EXTRA, lw=0, zorder=2)
    ax.axhline(0, color="black", lw=0.8, zorder=3)
    ax.set_xlim(min(peers, default=0) - 0.7, max(peers, default=0) + 0.7)
    top = max([*missing, *extra, 1])
    ax.set_yscale("symlog", linthresh=1)
    ax.set_ylim(-1.3 * top, 1.3 * top)
    ax.yaxis.set_major_formatter(FuncFormatter(lambda v, _pos: f"{abs(v):g}"))
    ax.xaxis.set_major_locator(MaxNLocator(integer=True, steps=[1, 2, 5, 10]))
    ax.set_xlabel("peer id")
    ax.set_ylabel("edges: extra ↑  missing ↓")
    ax.grid(axis="y", color="#e5e5e5", zorder=0)
    for side in ("top", "right"):
        ax.spines[side].set_visible(False)
    complete = sum(1 for m, x in zip(missing, extra, strict=True) if not m and not x)
    if complete == len(peers):
        ax.text(0.5, 0.62, f"all {len(peers)} views equal the topology ({len(true)} edges)", transform=ax.transAxes,
                ha="center", fontsize=11, color="#444444")
    handles = [Patch(color=EXTRA, label="seen, not in the topology (extra)"),
               Patch(color=MISSING, label="in the topology, not seen (missing)")]
    fig.legend(handles=handles, loc="upper center", bbox_to_anchor=(0.5, 0.875), ncol=2, fontsize=8, frameon=False)
    fig.text(0.09, 0.955, f"{analysis.name}: how each peer's world view differs from the topology", fontsize=12,
             va="top")
    shown = (f"pictures: worldview/peer-<id>.png for {', '.join(map(str, pictured))}" if pictured
             else "no per-peer pictures")
    fig.text(0.09, 0.905, f"{complete} of {len(peers)} views equal the topology ({len(true)} edges) · {shown}",
             fontsize=8.5, color="#555555", va="top")
    return fig
