"""report.html: one page per run, readable offline.

Its pictures are embedded (data URIs), so the page shows them wherever it is copied; every
link points into the run directory (the PNG files, the interactive world views, summary.json,
...) or to an anchor of the page. No script or style comes from anywhere: the few lines that
sort the tables are inline.
"""

from __future__ import annotations

import base64
import json
from pathlib import Path
from typing import TYPE_CHECKING, Any

import jinja2
from markupsafe import Markup

from analysis._util import atomic_write, fmt_bytes, fmt_int, fmt_seconds, step_text
from analysis.model import verdict_of

if TYPE_CHECKING:
    from analysis.model import Analysis

MAX_EDGE_ROWS = 2000
MAX_PROBLEM_ROWS = 500

# Files of a run directory the report links to when they are there, with what they hold.
RUN_FILES = (
    ("summary.json", "every count of this page, machine-readable"),
    ("stats.txt", "the same as text"),
    ("spec.json", "the run's spec"),
    ("exits.json", "the backend and every peer's exit code"),
    ("faults.jsonl", "when each fault fired"),
    ("missing.json", "missing / unexpected / repeated deliveries, counted and explained"),
    ("missing.jsonl", "every one of them"),
    ("missing.jsonl.gz", "every one of them (gzipped)"),
    ("worldview.json", "every peer's world view"),
    ("worldview/index.html", "every peer's world view, interactive (a peer selector)"),
    ("logs/", "the peers' logs"),
)

_CAPTIONS = {
    "traffic.png": "the topology with the bytes carried per link",
    "timeline.png": "deliveries over time per peer",
}

_STYLE = """
 :root { --ok: #2e7d32; --bad: #c62828; --unk: #757575; --line: #e3e3e3; --muted: #5f6368; --accent: #1a5fb4; }
 * { box-sizing: border-box; }
 body { font-family: -apple-system, "Segoe UI", Helvetica, Arial, sans-serif; margin: 0; color: #202124;
        line-height: 1.45; background: #fafafa; }
 main { max-width: 1180px; margin: 0 auto; padding: 8px 24px 40px; background: white; min-height: 100vh; }
 h1 { font-size: 24px; margin: 18px 0 4px; display: flex; align-items: center; gap: 12px; flex-wrap: wrap; }
 h2 { font-size: 18px; margin: 36px 0 10px; padding-bottom: 4px; border-bottom: 1px solid var(--line); }
 a { color: var(--accent); }
 .verdict { display: inline-block; padding: 2px 12px; border-radius: 999px; font-size: 15px; font-weight: 600;
            color: white; }
 .ok { background: var(--ok); } .bad { background: var(--bad); } .unk { background: var(--unk); }
 .sub { color: var(--muted); margin: 0 0 12px; }
 nav.toc { position: sticky; top: 0; z-index: 3; background: white; border-bottom: 1px solid var(--line);
           padding: 8px 0; display: flex; flex-wrap: wrap; gap: 4px 6px; font-size: 14px; }
 nav.toc a { text-decoration: none; padding: 2px 10px; border-radius: 999px; background: #eef3fb; }
 nav.toc a:hover { background: #dbe7f8; }
 section { scroll-margin-top: 48px; }
 .cards { display: grid; grid-template-columns: repeat(auto-fill, minmax(200px, 1fr)); gap: 10px; margin: 14px 0; }
 .card { border: 1px solid var(--line); border-radius: 8px; padding: 10px 14px; }
 .card .big { font-size: 22px; font-weight: 600; }
 .card .what { font-size: 13px; color: var(--muted); }
 .card.bad { border-color: #ef9a9a; background: #fff5f5; } .card.good { border-color: #a5d6a7; background: #f5fbf5; }
 table { border-collapse: collapse; font-size: 13px; margin: 8px 0; font-variant-numeric: tabular-nums; }
 th, td { padding: 4px 10px; border-bottom: 1px solid #eee; text-align: right; white-space: nowrap; }
 th { background: #f3f4f6; position: sticky; top: 0; z-index: 1; font-weight: 600; }
 td.l, th.l { text-align: left; }
 table.sortable th { cursor: pointer; user-select: none; }
 table.sortable th:hover { background: #e6e9ee; }
 table.sortable th::after { content: "\\2195"; color: #b0b4ba; padding-left: 4px; }
 table.sortable th[aria-sort=ascending]::after { content: "\\25B2"; color: #202124; }
 table.sortable th[aria-sort=descending]::after { content: "\\25BC"; color: #202124; }
 tbody tr:hover td { background: #f5f8fd; }
 tr.warn td { background: #fff8e1; } tr.err td { background: #ffebee; }
 .kv td:first-child { text-align: left; color: var(--muted); }
 .kv td { text-align: left; white-space: normal; }
 .spec { columns: 2 360px; column-gap: 32px; }
 .spec table { width: 100%; margin: 0; }
 .spec code { background: none; padding: 0; }
 .pics { display: grid; grid-template-columns: repeat(auto-fill, minmax(460px, 1fr)); gap: 16px; }
 .views { display: grid; grid-template-columns: repeat(auto-fill, minmax(210px, 1fr)); gap: 10px; }
 figure { margin: 0; }
 figure img { width: 100%; height: auto; border: 1px solid var(--line); border-radius: 6px; display: block; }
 figure a:hover img { border-color: var(--accent); }
 figcaption { font-size: 13px; color: var(--muted); margin-top: 4px; }
 .scroll { max-height: 560px; overflow: auto; border: 1px solid var(--line); border-radius: 6px;
           display: inline-block; max-width: 100%; }
 .scroll table { margin: 0; }
 ul.problems { font-family: ui-monospace, Menlo, Consolas, monospace; font-size: 12px; padding-left: 20px; }
 ul.problems li.explained { color: var(--muted); }
 ul.problems li.unexplained { color: var(--bad); }
 section > ul { font-size: 14px; }
 .muted { color: var(--muted); font-size: 13px; }
 .good-news { color: var(--ok); }
 code { font-family: ui-monospace, Menlo, Consolas, monospace; font-size: 12.5px; background: #f1f3f4;
        padding: 0 4px; border-radius: 3px; }
 ul.files { columns: 2 360px; font-size: 14px; }
 footer { margin-top: 36px; color: var(--muted); font-size: 12px; }
"""

# Click a header to sort by that column; again to reverse. Cells sort by data-v when they
# have it (the raw number behind "1,736 B"), else by their text; numbers before text.
_SORT_JS = """
function sortKey(cell) {
  const v = cell.dataset.v !== undefined ? cell.dataset.v : cell.textContent.trim();
  return v !== "" && isFinite(v) ? Number(v) : v.toLowerCase();
}
function compareKeys(a, b) {
  if (typeof a === typeof b) return typeof a === "number" ? a - b : a.localeCompare(b);
  return typeof a === "number" ? -1 : 1;
}
function sortTable(table, th) {
  const col = th.cellIndex, up = th.getAttribute("aria-sort") !== "ascending";
  for (const h of table.tHead.rows[0].cells) h.removeAttribute("aria-sort");
  th.setAttribute("aria-sort", up ? "ascending" : "descending");
  const body = table.tBodies[0];
  const rows = Array.from(body.rows, r => [sortKey(r.cells[col]), r]);
  rows.sort((a, b) => (up ? 1 : -1) * compareKeys(a[0], b[0]));
  for (const [, r] of rows) body.appendChild(r);
}
for (const table of document.querySelectorAll("table.sortable")) {
  for (const th of table.tHead.rows[0].cells) {
    th.tabIndex = 0;
    th.title = "sort by this column";
    th.addEventListener("click", () => sortTable(table, th));
    th.addEventListener("keydown", e => { if (e.key === "Enter") sortTable(table, th); });
  }
}
"""

_TEMPLATE = """<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>{{ s.run_id }} · {{ name }} · p2p run report</title>
<style>{{ style }}</style>
</head>
<body>
<main>
<h1>{{ name }}, protocol {{ s.protocol }} <span class="verdict {{ verdict_class }}">{{ verdict }}</span></h1>
<p class="sub">Run <code>{{ s.run_id }}</code> · {{ s.n }} peers · {{ s.format }} log format
{%- if log_dir %} · logs in <code>{{ log_dir }}</code>{% endif %}
{%- if s.inferred %} · some facts inferred from the logs (see <a href="#spec">Spec</a>){% endif %}</p>
<nav class="toc" aria-label="contents">{% for id, title in toc %}<a href="#{{ id }}">{{ title }}</a>{% endfor %}</nav>

<section id="summary">
<div class="cards">
{% for c in cards %}<div class="card {{ c.cls }}"><div class="big">{{ c.big }}</div><div class="what">{{ c.what }}</div></div>
{% endfor %}</div>
<table class="kv">
<thead><tr><th class="l"></th><th class="l">observed</th><th class="l">predicted{{ bound }}</th><th class="l">difference</th></tr></thead>
<tbody>
<tr><td>deliveries</td><td>{{ fmt_int(s.deliveries) }}</td><td>{{ fmt_int(s.expected_deliveries) }}</td><td>{{ delta(s.deliveries, s.expected_deliveries) }}</td></tr>
<tr><td>bytes</td><td>{{ fmt_int(s.bytes) }}</td><td>{{ fmt_int(s.expected_bytes) }}</td><td>{{ delta(s.bytes, s.expected_bytes) }}</td></tr>
<tr><td>time to quiescence</td><td colspan="3">{{ fmt_seconds(s.time_to_quiescence) }}</td></tr>
<tr><td>short peers</td><td colspan="3">{% if s.short_peers is none %}-{% elif s.short_peers %}{{ s.short_peers|join(", ") }}{% else %}none{% endif %}</td></tr>
<tr><td>world views equal to the topology</td><td colspan="3">{{ s.worldview.complete|length }} of {{ s.n }}</td></tr>
<tr><td>problems</td><td colspan="3">{{ s.log_problems|length }} log problems, {{ s.errors|length }} protocol errors,
 {{ s.link_failures|length }} failed links, {{ s.disagreements|length }} disagreements</td></tr>
</tbody>
</table>
</section>

<section id="spec">
<h2>Spec</h2>
{% if spec_rows %}
<p class="muted">As {% if spec_file %}<a href="spec.json">spec.json</a>{% else %}<code>spec.json</code>{% endif %} holds it (values in JSON).</p>
<div class="spec"><table class="kv"><tbody>
{% for k, v in spec_rows %}<tr><td>{{ k }}</td><td><code>{{ v }}</code></td></tr>
{% endfor %}</tbody></table></div>
{% else %}<p>No <code>spec.json</code>: topology {{ s.topology }}, n = {{ s.n }}, protocol {{ s.protocol }}.</p>{% endif %}
{% if fired %}<p>Faults that fired:</p><ul>{% for f in fired %}<li>{{ f }}</li>{% endfor %}</ul>{% endif %}
{% if s.inferred %}<p>Inferred:</p><ul>{% for i in s.inferred %}<li>{{ i }}</li>{% endfor %}</ul>{% endif %}
{% if s.notes %}<p>Notes:</p><ul>{% for i in s.notes %}<li>{{ i }}</li>{% endfor %}</ul>{% endif %}
</section>

<section id="problems">
<h2>Problems found</h2>
{% if problems %}
<ul class="problems">{% for p in problems %}<li class="{{ 'explained' if explained(p) else 'unexplained' }}">{{ p }}</li>{% endfor %}</ul>
{% if more_problems %}<p class="muted">… and {{ more_problems }} more (see <a href="summary.json">summary.json</a>).</p>{% endif %}
{% else %}<p class="good-news">None: every log line parsed, no protocol errors, the peers' own counters agree with the receivers' logs.</p>{% endif %}
</section>

<section id="pictures">
<h2>Pictures</h2>
{% if images %}
<div class="pics">{% for img in images %}
<figure><a href="{{ img.href }}"><img src="{{ img.uri }}" alt="{{ img.caption }}"></a>
<figcaption>{{ img.caption }} (<a href="{{ img.href }}">{{ img.href }}</a>)</figcaption></figure>
{% endfor %}</div>
{% else %}<p class="muted">No pictures in this report ({{ no_images_reason }}).</p>{% endif %}
{% if notes %}<ul class="muted">{% for n in notes %}<li>{{ n }}</li>{% endfor %}</ul>{% endif %}
</section>

<section id="worldviews">
<h2>World views</h2>
<p class="muted">A peer's world view is the graph made of the hop lists it received: the links it can tell
exist. Dark blue: seen and in the topology; dashed grey: in the topology but not seen; red: seen but not in the topology.
{% if html_links %}Click a picture for its interactive page (works offline: drag nodes, hover a link to a neighbour
for the bytes in and out).{% endif %}</p>
{% if viewer %}<p>Every peer's world view, interactive, with a peer selector:
<a href="{{ viewer }}">{{ viewer }}</a>.</p>{% endif %}
{% if overview %}<figure><a href="{{ overview.href }}"><img src="{{ overview.uri }}" alt="{{ overview.caption }}"></a>
<figcaption>{{ overview.caption }} (<a href="{{ overview.href }}">{{ overview.href }}</a>)</figcaption></figure>{% endif %}
{% if views %}
<div class="views">{% for v in views %}
<figure><a href="{{ v.href }}"><img src="{{ v.uri }}" alt="world view of peer {{ v.peer }}"></a>
<figcaption>peer {{ v.peer }}: {{ v.caption }}</figcaption></figure>
{% endfor %}</div>
{% elif html_links %}<p>{% for l in html_links %}<a href="{{ l.href }}">peer {{ l.peer }}</a>{% if not loop.last %} · {% endif %}{% endfor %}</p>
{% endif %}
</section>

<section id="peers">
<h2>Peers</h2>
<p class="muted">Click a column header to sort. Red: fewer messages received than predicted;
amber: its world view differs from the topology.</p>
<div class="scroll"><table class="sortable" id="peer-table">
<thead><tr><th>peer</th><th>received</th><th>expected</th><th>bytes in</th><th>expected</th><th>bytes out</th><th>frames out</th>
<th>authors</th><th>errors</th><th class="l">exit</th><th>duration</th><th class="l">world view</th></tr></thead>
<tbody>
{% for r in s.peers %}
<tr class="{{ 'err' if r.expected_received is not none and r.received < r.expected_received else ('warn' if r.view_missing or r.view_extra else '') }}">
<td>{{ r.id }}</td>{{ num(r.received) }}{{ num(r.expected_received) }}{{ num(r.bytes_in) }}{{ num(r.expected_bytes_in) }}
{{ num(r.bytes_out) }}{{ num(r.frames_out) }}{{ num(r.authors) }}{{ num(r.errors) }}
<td class="l">{{ r.exit_reason or '-' }}</td><td data-v="{{ '' if r.duration is none else r.duration }}">{{ fmt_seconds(r.duration) }}</td>
<td class="l">{% if not r.view_missing and not r.view_extra %}complete{% else %}{{ r.view_missing }} missing, {{ r.view_extra }} extra{% endif %}</td></tr>
{% endfor %}
</tbody></table></div>
</section>

<section id="edges">
<h2>Edges</h2>
<p class="muted">Directed: sender → receiver, counted from the receiver's log. Click a column header to sort.
Red: not in the topology; amber: not as predicted.</p>
<div class="scroll"><table class="sortable" id="edge-table">
<thead><tr><th>src</th><th>dst</th><th>frames</th><th>expected</th><th>bytes</th><th>expected</th><th class="l">note</th></tr></thead>
<tbody>
{% for e in edges %}
<tr class="{{ 'err' if not e.in_topology else ('warn' if e.expected_frames is not none and (e.frames != e.expected_frames or e.bytes != e.expected_bytes) else '') }}">
<td>{{ e.src }}</td><td>{{ e.dst }}</td>{{ num(e.frames) }}{{ num(e.expected_frames) }}{{ num(e.bytes) }}{{ num(e.expected_bytes) }}
<td class="l">{{ '' if e.in_topology else 'not in the topology' }}</td></tr>
{% endfor %}
</tbody></table></div>
{% if more_edges %}<p class="muted">… {{ more_edges }} more edges in <a href="summary.json">summary.json</a>.</p>{% endif %}
</section>

<section id="files">
<h2>Files</h2>
<ul class="files">{% for href, what in files %}<li><a href="{{ href }}">{{ href }}</a>: {{ what }}</li>{% endfor %}</ul>
</section>
<footer>Generated by the p2p analysis from the files in this run directory.</footer>
</main>
<script>{{ sort_js }}</script>
</body>
</html>
"""


def _uri(data: bytes) -> str:
    return "data:image/png;base64," + base64.b64encode(data).decode("ascii")


def _view_caption(row: dict[str, Any]) -> str:
    if not row["view_missing"] and not row["view_extra"]:
        return "complete"
    return f"{row['view_missing']} missing, {row['view_extra']} extra"


def _pictures(s: dict[str, Any], run_dir: Path, images: list[Path]) -> tuple[list, list, list, dict | None]:
    """The main pictures, the world-view pictures, the interactive pages (each in reading order)
    and the picture of every peer's view at a glance (worldview/views.png) if drawn."""
    main_imgs, views, pages, overview = [], [], {}, None
    for path in map(Path, images):
        href = path.relative_to(run_dir).as_posix()
        if path.suffix == ".png" and path.parent.name == "worldview" and path.name == "views.png":
            overview = {"uri": _uri(path.read_bytes()), "href": href,
                        "caption": "every peer's world view against the topology: its extra links up, "
                                   "its missing links down"}
        elif path.suffix == ".png" and path.parent.name == "worldview" and path.name.startswith("peer-"):
            peer = int(path.stem.split("-", 1)[1])
            views.append({"peer": peer, "uri": _uri(path.read_bytes()), "href": href,
                          "caption": _view_caption(s["peers"][peer])})
        elif path.suffix == ".png":
            caption = _CAPTIONS.get(path.name, "bytes (in + out) per connected pair, as the original tool drew it")
            main_imgs.append({"name": path.name, "uri": _uri(path.read_bytes()), "href": href, "caption": caption})
        elif path.suffix == ".html" and path.name.startswith("p2p_graph_"):
            pages[int(path.name.split("_")[2])] = href
    order = {"traffic.png": 0, "timeline.png": 2}
    main_imgs.sort(key=lambda i: order.get(i["name"], 1))
    views.sort(key=lambda v: v["peer"])
    for v in views:  # a picture opens its interactive page when there is one
        v["href"] = pages.get(v["peer"], v["href"])
    return main_imgs, views, [{"peer": p, "href": pages[p]} for p in sorted(pages)], overview


def _json(value: Any) -> str:
    return json.dumps(value, ensure_ascii=False)


def spec_rows(spec: dict[str, Any], faults: list[str]) -> list[tuple[str, str]]:
    """(key, JSON value) rows of spec.json, nested objects as ``options.idle``; faults spelled as typed."""
    rows = []
    for key, value in spec.items():
        if key == "faults" and len(faults) == len(value):
            rows.append((key, _json(faults)))
        elif isinstance(value, dict) and value:
            rows += [(f"{key}.{k}", _json(v)) for k, v in value.items()]
        else:
            rows.append((key, _json(value)))
    return rows


def _fired(s: dict[str, Any]) -> list[str]:
    out = []
    for a in s.get("faults_applied") or []:
        when = [f"at {a['elapsed']:.3f} s" if a.get("elapsed") is not None else "",
                f"after {a['deliveries']:,} deliveries" if a.get("deliveries") is not None else ""]
        out.append(f"{a['fault']}{step_text(a)} fired {', '.join(w for w in when if w)}".rstrip())
    out += [f"{f} never fired (its moment never came)" for f in s.get("faults_not_fired") or []]
    return out


def _cards(s: dict[str, Any], verdict_class: str, problems: list[str]) -> list[dict[str, str]]:
    good = "good" if verdict_class == "ok" else "bad" if verdict_class == "bad" else ""
    views = len(s["worldview"]["complete"])
    unexplained = sum(not _explained(p) for p in problems)
    if not problems:
        trouble = {"cls": "good", "what": "problems found"}
    elif unexplained:
        trouble = {"cls": "bad", "what": f"problems found, {fmt_int(unexplained)} not explained by a fault"}
    else:
        trouble = {"cls": "", "what": "problems found, each explained by a fault"}
    return [
        {"big": fmt_int(s["deliveries"]), "cls": good,
         "what": f"deliveries, {fmt_int(s['expected_deliveries'])} predicted"},
        {"big": fmt_bytes(s["bytes"]), "cls": good, "what": f"on the wire, {fmt_bytes(s['expected_bytes'])} predicted"},
        {"big": fmt_seconds(s["time_to_quiescence"]), "cls": "", "what": "to quiescence"},
        {"big": f"{views} of {s['n']}", "cls": "good" if views == s["n"] else "",
         "what": "world views equal to the topology"},
        {"big": fmt_int(len(problems)), **trouble},
    ]


def _explained(problem: str) -> bool:
    """Whether a line of text.problem_lines names the fault that explains it."""
    return " (explained: " in problem


def _delta(obs: int, exp: int | None) -> str:
    if exp is None:
        return ""
    if obs == exp:
        return "as predicted"
    return f"{obs - exp:+,} ({100 * obs / exp:.1f} %)" if exp else f"{obs - exp:+,}"


def _num(value: int | None) -> Markup:
    """A numeric cell: its text formatted, its raw value in data-v for sorting."""
    raw = "" if value is None else str(value)
    return Markup('<td data-v="{}">{}</td>').format(raw, fmt_int(value))


def _log_dir(analysis: Analysis) -> str:
    """The log directory relative to the run directory: the page names nothing outside it."""
    log_dir = analysis.log_dir.resolve()
    run_dir = analysis.run_dir.resolve()
    if log_dir == run_dir:
        return ""
    return log_dir.relative_to(run_dir).as_posix() + "/" if log_dir.is_relative_to(run_dir) else log_dir.name + "/"


def render_report(analysis: Analysis, images: list[Path] | None = None) -> str:
    """The report page. ``images`` are the PNG files to embed (None: none, e.g. plots off)."""
    from analysis.text import problem_lines, verdict_text

    s = analysis.summary
    run_dir = analysis.run_dir
    main_imgs, views, view_html, overview = _pictures(s, run_dir, list(images or []))
    problems = problem_lines(s, None)
    verdict, explained = verdict_of(s)
    verdict_class = "ok" if explained else "bad" if verdict == "NOT OK" else "unk"
    sections = [("summary", "Summary"), ("spec", "Spec"), ("problems", f"Problems ({len(problems)})"),
                ("pictures", "Pictures"), ("worldviews", "World views"), ("peers", "Peers"),
                ("edges", "Edges"), ("files", "Files")]
    env = jinja2.Environment(autoescape=True, undefined=jinja2.StrictUndefined)
    return env.from_string(_TEMPLATE).render(
        s=s,
        name=analysis.name,
        style=Markup(_STYLE),
        sort_js=Markup(_SORT_JS),
        toc=sections,
        cards=_cards(s, verdict_class, problems),
        bound=" (upper bound)" if s.get("prediction") == "upper_bound" else "",
        log_dir=_log_dir(analysis),
        verdict=verdict_text(s),
        verdict_class=verdict_class,
        spec_rows=spec_rows(s["spec"], s.get("faults") or []) if s.get("spec") else [],
        spec_file=(run_dir / "spec.json").exists(),
        fired=_fired(s),
        problems=problems[:MAX_PROBLEM_ROWS],
        more_problems=max(0, len(problems) - MAX_PROBLEM_ROWS),
        images=main_imgs,
        no_images_reason="plots were not drawn" if not images else "none were drawn",
        views=views,
        html_links=view_html,
        overview=overview,
        viewer="worldview/index.html" if (run_dir / "worldview" / "index.html").exists() else None,
        notes=analysis.notes,
        edges=s["edges"][:MAX_EDGE_ROWS],
        more_edges=max(0, len(s["edges"]) - MAX_EDGE_ROWS),
        files=[(name, what) for name, what in RUN_FILES if (run_dir / name).exists()],
        fmt_int=fmt_int,
        fmt_seconds=fmt_seconds,
        delta=_delta,
        explained=_explained,
        num=_num,
    )


def write_report(analysis: Analysis, images: list[Path] | None = None) -> Path:
    return atomic_write(analysis.run_dir / "report.html", render_report(analysis, images))
