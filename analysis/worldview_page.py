"""The interactive world-view pages: one copy of vis-network per run directory.

worldview/lib/vis-network.min.js   vis-network, read from the installed ``pyvis`` package (one copy)
worldview/views.js                 every peer's view as data (the topology once, each peer's differences)
worldview/viewer.js                draws the chosen peer's view; a selector switches peers
worldview/index.html               the viewer, any peer (``#peer=<id>`` picks one)
p2p_graph_<id>_<topology>.html     the same viewer opened on peer <id> (the original tool's file names)

Everything is loaded with relative ``<script src>``: the pages work from file:// with no
network. Each page used to inline its own 470 KB copy of vis-network (24 MB of pages for
50 peers); the pages are now ~2 KB and the data is written once.

Up to ``limit`` peers (analysis.plots.PER_PEER_LIMIT) the viewer draws the whole topology with the peer's view on it;
above, the whole graph is a hairball nobody can read, so it draws only the peer and its
neighbours (and says so on the page); the header still counts the whole view.
"""

from __future__ import annotations

import html
import importlib.util
import json
from pathlib import Path
from typing import TYPE_CHECKING, Any

from analysis._util import atomic_write
from analysis.worldview import canonical_edges

if TYPE_CHECKING:
    from analysis.model import Analysis

Edge = tuple[int, int]

LIB = "lib/vis-network.min.js"
COLOURS = {"seen": "#2b4c7e", "missing": "#a0a0a0", "extra": "#d62728", "face": "#f2f2f2",
           "border": "#333333", "highlight": "#f28e2b"}


def vis_js() -> str | None:
    """vis-network's script from the installed pyvis package (None: pyvis is not installed)."""
    spec = importlib.util.find_spec("pyvis")
    if spec is None or not spec.submodule_search_locations:
        return None
    for base in spec.submodule_search_locations:
        for rel in ("templates/lib/vis-9.1.2/vis-network.min.js", "lib/vis-9.1.2/vis-network.min.js"):
            path = Path(base) / rel
            if path.is_file():
                js = path.read_text(encoding="utf-8")
                # Drop the source-map comment: nothing outside the run directory is ever referenced.
                # (split on "\n" only: the script holds U+2028 and friends inside strings)
                return "\n".join(ln for ln in js.split("\n") if not ln.startswith("//# sourceMappingURL"))
    return None


def _neighbourhood(graph_edges: set[Edge], peer: int) -> set[int]:
    return {peer} | {b if a == peer else a for a, b in graph_edges if peer in (a, b)}


def _peer_data(analysis: Analysis, peer: int, true: set[Edge], full: bool) -> dict[str, Any]:
    """One peer's view as its differences from the topology (the topology is written once).
    In neighbourhood mode only the differences inside the peer's neighbourhood are kept: the
    viewer draws nothing else, and the counts still cover the whole view."""
    view = analysis.views[peer]
    missing = sorted(true - view)
    extra = sorted(view - true)
    if not full:
        near = _neighbourhood(true, peer) | {x for e in extra if peer in e for x in e}
        missing = [e for e in missing if e[0] in near and e[1] in near]
        extra = [e for e in extra if e[0] in near and e[1] in near]
    return {
        "edges": len(view),
        "missing_count": len(true - view),
        "extra_count": len(view - true),
        "missing": [list(e) for e in missing],
        "extra": [list(e) for e in extra],
        "received": analysis.summary["peers"][peer]["received"],
    }


def views_data(analysis: Analysis, pos: dict[int, tuple[float, float]] | None, limit: int) -> dict[str, Any]:
    """What views.js holds: the topology, the observed flows and each peer's differences."""
    true = canonical_edges(analysis.graph)
    full = pos is not None
    flows = {f"{a},{b}": [f.frames, f.bytes] for (a, b), f in sorted(analysis.observed.items()) if f.frames or f.bytes}
    return {
        "name": analysis.name,
        "run_id": analysis.run_id,
        "n": analysis.n,
        "full": full,
        "full_limit": limit,
        "colours": COLOURS,
        "pos": [[round(pos[i][0], 4), round(pos[i][1], 4)] for i in range(analysis.n)] if full else None,
        "topology": [list(e) for e in sorted(true)],
        "flows": flows,
        "peers": {str(p): _peer_data(analysis, p, true, full) for p in sorted(analysis.views)},
    }


_PAGE = """<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<title>{title}</title>
<style>
 body {{ font-family: -apple-system, "Segoe UI", Helvetica, Arial, sans-serif; margin: 0; color: #222; }}
 header {{ padding: 10px 16px 4px; }}
 h1 {{ font-size: 18px; margin: 0 0 4px; }}
 p {{ margin: 2px 0; font-size: 13px; color: #444; }}
 #note {{ color: #8a4b00; }}
 .key span {{ display: inline-block; width: 26px; height: 0; vertical-align: middle; margin: 0 4px 0 12px; }}
 #net {{ width: 100%; height: calc(100vh - 118px); border-top: 1px solid #ddd; }}
 .vis-tooltip {{ position: absolute; visibility: hidden; padding: 6px 8px; white-space: pre; font-size: 13px;
   font-family: ui-monospace, Menlo, Consolas, monospace; background: #fffff4; border: 1px solid #999;
   border-radius: 3px; box-shadow: 2px 2px 6px rgba(0,0,0,.2); pointer-events: none; z-index: 5; }}
</style>
</head>
<body data-peer="{peer}">
<header>
<h1 id="heading">{heading}</h1>
<p><label>peer <select id="peer"></select></label> <button id="prev">&larr;</button>
<button id="next">&rarr;</button> &nbsp;<span id="sub"></span></p>
<p id="note"></p>
<p class="key"><span style="border-top:3px solid {seen}"></span>seen in its hop lists
<span style="border-top:2px dashed {missing}"></span>in the topology, not seen
<span style="border-top:3px solid {extra}"></span>seen, not in the topology
&nbsp;&middot;&nbsp; hover a link to a direct neighbour for bytes in/out; drag nodes to rearrange</p>
</header>
<div id="net"></div>
<script src="{prefix}{lib}"></script>
<script src="{prefix}views.js"></script>
<script src="{prefix}viewer.js"></script>
</body>
</html>
"""


def page(analysis: Analysis, peer: int, prefix: str) -> str:
    """A viewer page opened on ``peer``; ``prefix`` is the path from the page to worldview/."""
    return _PAGE.format(
        title=html.escape(f"{analysis.name} as perceived by peer {peer}"),
        heading=html.escape(f"{analysis.name} — as perceived by peer {peer}"),
        peer=peer,
        prefix=prefix,
        lib=LIB,
        seen=COLOURS["seen"],
        missing=COLOURS["missing"],
        extra=COLOURS["extra"],
    )


def _script(value: Any) -> str:
    return "window.P2P_WORLDVIEW = " + json.dumps(value, separators=(",", ":")) + ";\n"


def write_pages(analysis: Analysis, pos: dict[int, tuple[float, float]] | None, js: str, *,
                per_peer: bool, limit: int) -> list[Path]:
    """The library, the data, the viewer, worldview/index.html and (``per_peer``) one
    p2p_graph_<id>_<topology>.html per peer. ``pos`` None: neighbourhood mode."""
    run_dir = analysis.run_dir
    wv = run_dir / "worldview"
    first = min(analysis.views, default=0)
    written = [
        atomic_write(wv / LIB, js),
        atomic_write(wv / "views.js", _script(views_data(analysis, pos, limit))),
        atomic_write(wv / "viewer.js", VIEWER_JS),
        atomic_write(wv / "index.html", page(analysis, first, "")),
    ]
    if per_peer:
        topo = "".join(c if c.isalnum() or c in "-_" else "_" for c in analysis.topology)
        for p in sorted(analysis.views):
            written.append(atomic_write(run_dir / f"p2p_graph_{p}_{topo}.html", page(analysis, p, "worldview/")))
    return written


VIEWER_JS = r"""// Draws one peer's world view from views.js (window.P2P_WORLDVIEW); no network access.
(function () {
  "use strict";
  const D = window.P2P_WORLDVIEW, C = D.colours;
  const sel = document.getElementById("peer");
  const ids = Object.keys(D.peers).map(Number).sort((a, b) => a - b);
  for (const p of ids) { const o = document.createElement("option"); o.value = p; o.textContent = p; sel.appendChild(o); }
  const key = (a, b) => a + "," + b;
  const num = (x) => x.toLocaleString("en-US");
  function flow(a, b) {
    const f = D.flows[key(a, b)];
    return f ? num(f[0]) + " frames, " + num(f[1]) + " B" : "0 frames, 0 B";
  }
  function bytes(a, b) { const f = D.flows[key(a, b)]; return f ? f[1] : 0; }
  const topo = new Set(D.topology.map((e) => key(e[0], e[1])));
  const adj = new Map();
  for (const [a, b] of D.topology) {
    if (!adj.has(a)) adj.set(a, []);
    if (!adj.has(b)) adj.set(b, []);
    adj.get(a).push(b); adj.get(b).push(a);
  }
  function positions(peer, shown) {
    const pos = new Map();
    if (D.full) {
      const scale = D.n <= 12 ? 260 : 22 * D.n;
      shown.forEach((x) => { if (x < D.n) pos.set(x, [D.pos[x][0] * scale, -D.pos[x][1] * scale]); });
      const out = shown.filter((x) => !pos.has(x));
      out.forEach((x, k) => {
        const t = 2 * Math.PI * (k + 0.5) / out.length;
        pos.set(x, [1.35 * scale * Math.cos(t), -1.35 * scale * Math.sin(t)]);
      });
      return pos;
    }
    // Neighbourhood: the peer in the middle, the others on a circle in id order.
    const others = shown.filter((x) => x !== peer);
    const r = Math.max(220, 14 * others.length);
    pos.set(peer, [0, 0]);
    others.forEach((x, k) => {
      const t = Math.PI / 2 - 2 * Math.PI * k / others.length;
      pos.set(x, [r * Math.cos(t), -r * Math.sin(t)]);
    });
    return pos;
  }
  function status(a, b, missing, extra) {
    const k = key(a, b);
    return extra.has(k) ? "extra" : missing.has(k) ? "missing" : "seen";
  }
  function edge(peer, a, b, st, vmax) {
    const e = { from: a, to: b };
    if (st === "seen") { e.color = { color: C.seen, hover: C.seen }; e.width = 2; }
    else if (st === "missing") { e.color = { color: C.missing, hover: "#888888" }; e.dashes = true; e.width = 1; }
    else { e.color = { color: C.extra, hover: C.extra }; e.width = 3; }
    if (a === peer || b === peer) {
      const nb = a === peer ? b : a;
      e.title = "link " + peer + " \u2013 " + nb + " (" + st + ")\n" +
        "in  (" + nb + "\u2192" + peer + "): " + flow(nb, peer) + "\n" +
        "out (" + peer + "\u2192" + nb + "): " + flow(peer, nb);
      e.width = 2 + 6 * (bytes(nb, peer) + bytes(peer, nb)) / (2 * vmax);
    } else {
      e.title = a + " \u2013 " + b + ": " + {
        seen: "seen in peer " + peer + "'s hop lists",
        missing: "in the topology, not in peer " + peer + "'s hop lists",
        extra: "in peer " + peer + "'s hop lists, not in the topology",
      }[st];
    }
    return e;
  }
  function node(peer, x, pos) {
    let title = "peer " + x, color = { background: C.face, border: C.border };
    if (x === peer) { title += " (this peer)"; color = { background: C.highlight, border: C.border }; }
    else if (D.flows[key(x, peer)] || D.flows[key(peer, x)] || topo.has(key(Math.min(x, peer), Math.max(x, peer)))) {
      title += "\nneighbour of " + peer + "\nin  (" + x + "\u2192" + peer + "): " + flow(x, peer) +
        "\nout (" + peer + "\u2192" + x + "): " + flow(peer, x);
    }
    const [px, py] = pos.get(x);
    return { id: x, label: String(x), title: title, x: px, y: py, color: color };
  }
  let network = null;
  function draw(peer) {
    const v = D.peers[String(peer)];
    const missing = new Set(v.missing.map((e) => key(e[0], e[1])));
    const extra = new Set(v.extra.map((e) => key(e[0], e[1])));
    let shown;
    if (D.full) {
      shown = new Set([...Array(D.n).keys()]);
    } else {
      shown = new Set([peer, ...(adj.get(peer) || [])]);
      v.extra.forEach((e) => { if (e[0] === peer || e[1] === peer) { shown.add(e[0]); shown.add(e[1]); } });
    }
    v.extra.forEach((e) => { if (D.full) { shown.add(e[0]); shown.add(e[1]); } });
    const list = [...shown].sort((a, b) => a - b);
    const pos = positions(peer, list);
    let vmax = 1;
    for (const k of Object.keys(D.flows)) {
      const [a, b] = k.split(",").map(Number);
      if (a === peer || b === peer) vmax = Math.max(vmax, D.flows[k][1]);
    }
    const pairs = D.topology.concat(v.extra).filter((e) => shown.has(e[0]) && shown.has(e[1]));
    pairs.sort((p, q) => p[0] - q[0] || p[1] - q[1]);
    const edges = pairs.map((e) => edge(peer, e[0], e[1], status(e[0], e[1], missing, extra), vmax));
    const nodes = list.map((x) => node(peer, x, pos));
    const state = !v.missing_count && !v.extra_count ? "its view equals the topology"
      : v.missing_count + " edges missing, " + v.extra_count + " extra";
    document.title = D.name + " as perceived by peer " + peer;
    document.getElementById("heading").textContent = D.name + " \u2014 as perceived by peer " + peer;
    document.getElementById("sub").textContent = "run " + D.run_id + " \u00b7 " + v.edges + " edges from peer " +
      peer + "'s hop lists, topology has " + D.topology.length + ": " + state + " \u00b7 received " +
      num(v.received) + " messages";
    document.getElementById("note").textContent = D.full ? "" : D.n + " peers (more than " + D.full_limit +
      "): only peer " + peer + " and the " + (list.length - 1) + " peers it links to are drawn; " +
      "the counts above are for its whole view (worldview.json lists every edge)";
    sel.value = String(peer);
    const data = { nodes: new vis.DataSet(nodes), edges: new vis.DataSet(edges) };
    const options = {
      physics: false,
      interaction: { hover: true, dragNodes: true, dragView: true, zoomView: true, tooltipDelay: 80 },
      // The drawing is fitted to the window: above 12 peers the circle is 22 * n across,
      // so 16-pixel labels came out at 5 pixels for 50 peers. 40 stays readable when fitted.
      nodes: { shape: "circle", font: { size: D.full && D.n > 12 ? 40 : 16 }, borderWidth: 1.5 },
      edges: { smooth: false },
    };
    if (network) network.destroy();
    network = new vis.Network(document.getElementById("net"), data, options);
  }
  function pick(peer) { location.hash = "peer=" + peer; }
  function fromHash() {
    const m = /peer=(\d+)/.exec(location.hash);
    const p = m ? Number(m[1]) : Number(document.body.dataset.peer);
    return ids.includes(p) ? p : ids[0];
  }
  sel.addEventListener("change", () => pick(Number(sel.value)));
  document.getElementById("prev").addEventListener("click", () => pick(ids[(ids.indexOf(fromHash()) + ids.length - 1) % ids.length]));
  document.getElementById("next").addEventListener("click", () => pick(ids[(ids.indexOf(fromHash()) + 1) % ids.length]));
  window.addEventListener("hashchange", () => draw(fromHash()));
  draw(fromHash());
})();
"""
