"""report.html: one self-contained page per run (images as data URIs, no external resources)."""

from __future__ import annotations

import base64
from pathlib import Path
from typing import TYPE_CHECKING

import jinja2

from analysis._util import atomic_write, fmt_bytes, fmt_int, fmt_seconds

if TYPE_CHECKING:
    from analysis.model import Analysis

MAX_EDGE_ROWS = 2000
MAX_PROBLEM_ROWS = 500

_TEMPLATE = """<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<title>{{ s.run_id }} · {{ name }} · p2p run report</title>
<style>
 body { font-family: -apple-system, "Segoe UI", Helvetica, Arial, sans-serif; margin: 24px auto; max-width: 1180px;
        padding: 0 16px; color: #222; line-height: 1.4; }
 h1 { font-size: 24px; margin-bottom: 4px; } h2 { font-size: 18px; margin-top: 32px; border-bottom: 1px solid #ddd; }
 .verdict { display: inline-block; padding: 2px 10px; border-radius: 4px; font-weight: 600; color: white; }
 .ok { background: #2e7d32; } .bad { background: #c62828; } .unk { background: #757575; }
 table { border-collapse: collapse; font-size: 13px; margin: 8px 0; }
 th, td { padding: 3px 10px; border-bottom: 1px solid #eee; text-align: right; }
 th { background: #f6f6f6; position: sticky; top: 0; }
 td.l, th.l { text-align: left; }
 tr.warn td { background: #fff3e0; } tr.err td { background: #ffebee; }
 .kv td:first-child { text-align: left; color: #555; }
 .kv td { text-align: left; }
 img { max-width: 100%; border: 1px solid #eee; margin: 6px 0; }
 .grid { display: grid; grid-template-columns: repeat(auto-fill, minmax(260px, 1fr)); gap: 10px; }
 .grid figure { margin: 0; } .grid figcaption { font-size: 12px; color: #555; }
 .scroll { max-height: 520px; overflow: auto; border: 1px solid #eee; display: inline-block; }
 ul.problems { font-family: ui-monospace, Menlo, Consolas, monospace; font-size: 12px; }
 .muted { color: #666; font-size: 13px; }
 code { background: #f4f4f4; padding: 0 3px; }
</style>
</head>
<body>
<h1>Run {{ s.run_id }}: {{ name }}, protocol {{ s.protocol }}
 <span class="verdict {{ verdict_class }}">{{ verdict }}</span></h1>
<p class="muted">Log directory <code>{{ log_dir }}</code> ({{ s.format }} format).
{% if s.inferred %}Some facts were inferred from the logs (see below).{% endif %}</p>

<h2>Predicted vs observed</h2>
<table class="kv">
<tr><td>deliveries</td><td>{{ fmt_int(s.deliveries) }} observed</td><td>{{ fmt_int(s.expected_deliveries) }} predicted{{ bound }}</td><td>{{ delta(s.deliveries, s.expected_deliveries) }}</td></tr>
<tr><td>bytes</td><td>{{ fmt_int(s.bytes) }} observed</td><td>{{ fmt_int(s.expected_bytes) }} predicted{{ bound }}</td><td>{{ delta(s.bytes, s.expected_bytes) }}</td></tr>
<tr><td>time to quiescence</td><td colspan="3">{{ fmt_seconds(s.time_to_quiescence) }}</td></tr>
<tr><td>short peers</td><td colspan="3">{% if s.short_peers is none %}-{% elif s.short_peers %}{{ s.short_peers|join(", ") }}{% else %}none{% endif %}</td></tr>
<tr><td>world views equal to the topology</td><td colspan="3">{{ s.worldview.complete|length }} of {{ s.n }}</td></tr>
<tr><td>problems</td><td colspan="3">{{ s.log_problems|length }} log problems, {{ s.errors|length }} protocol errors,
 {{ s.link_failures|length }} failed links, {{ s.disagreements|length }} disagreements</td></tr>
</table>

<h2>Spec</h2>
{% if s.spec %}
<table class="kv">
{% for k, v in s.spec.items() %}<tr><td>{{ k }}</td><td>{% if v is mapping %}{% for k2, v2 in v.items() %}{{ k2 }} = {{ v2 }}{% if not loop.last %}, {% endif %}{% endfor %}{% else %}{{ v }}{% endif %}</td></tr>
{% endfor %}
</table>
{% else %}<p>No <code>spec.json</code>: topology {{ s.topology }}, n = {{ s.n }}, protocol {{ s.protocol }}.</p>{% endif %}
{% if s.faults %}<p>Faults: {% for f in s.faults %}<code>{{ f }}</code> {% endfor %}</p>{% endif %}
{% if s.inferred %}<p>Inferred:</p><ul>{% for i in s.inferred %}<li>{{ i }}</li>{% endfor %}</ul>{% endif %}
{% if s.notes %}<p>Notes:</p><ul>{% for i in s.notes %}<li>{{ i }}</li>{% endfor %}</ul>{% endif %}

<h2>Problems found</h2>
{% if problems %}
<ul class="problems">{% for p in problems %}<li>{{ p }}</li>{% endfor %}</ul>
{% if more_problems %}<p class="muted">… and {{ more_problems }} more (see <code>summary.json</code>).</p>{% endif %}
{% else %}<p>None: every log line parsed, no protocol errors, the peers' own counters agree with the receivers' logs.</p>{% endif %}

<h2>Pictures</h2>
{% if images %}
{% for img in images %}
<figure><img src="{{ img.uri }}" alt="{{ img.name }}"><figcaption class="muted">{{ img.caption }} (<code>{{ img.name }}</code>)</figcaption></figure>
{% endfor %}
{% else %}<p class="muted">No pictures in this report ({{ no_images_reason }}).</p>{% endif %}
{% if notes %}<ul class="muted">{% for n in notes %}<li>{{ n }}</li>{% endfor %}</ul>{% endif %}

<h2>World views</h2>
<p class="muted">Peer p's world view is the graph on the hop lists it received (docs/design.md, "World view").
Dashed grey: in the topology but not seen; red: seen but not in the topology.
{% if html_links %}Interactive pages (open offline, drag nodes, hover links to neighbours for bytes in/out):{% endif %}</p>
{% if html_links %}<p>{% for l in html_links %}<a href="{{ l.href }}">peer {{ l.peer }}</a>{% if not loop.last %} · {% endif %}{% endfor %}</p>{% endif %}
{% if views %}
<div class="grid">{% for v in views %}
<figure><img src="{{ v.uri }}" alt="world view of peer {{ v.peer }}"><figcaption>peer {{ v.peer }}: {{ v.caption }}</figcaption></figure>
{% endfor %}</div>
{% endif %}

<h2>Peers</h2>
<div class="scroll"><table>
<tr><th>peer</th><th>received</th><th>expected</th><th>bytes in</th><th>expected</th><th>bytes out</th><th>frames out</th>
<th>authors</th><th>errors</th><th class="l">exit</th><th>duration</th><th class="l">world view</th></tr>
{% for r in s.peers %}
<tr class="{{ 'err' if r.expected_received is not none and r.received < r.expected_received else ('warn' if r.view_missing or r.view_extra else '') }}">
<td>{{ r.id }}</td><td>{{ fmt_int(r.received) }}</td><td>{{ fmt_int(r.expected_received) }}</td>
<td>{{ fmt_int(r.bytes_in) }}</td><td>{{ fmt_int(r.expected_bytes_in) }}</td><td>{{ fmt_int(r.bytes_out) }}</td>
<td>{{ fmt_int(r.frames_out) }}</td><td>{{ r.authors }}</td><td>{{ '-' if r.errors is none else r.errors }}</td>
<td class="l">{{ r.exit_reason or '-' }}</td><td>{{ fmt_seconds(r.duration) }}</td>
<td class="l">{% if not r.view_missing and not r.view_extra %}complete{% else %}{{ r.view_missing }} missing, {{ r.view_extra }} extra{% endif %}</td></tr>
{% endfor %}
</table></div>

<h2>Edges</h2>
<p class="muted">Directed: sender → receiver, counted from the receiver's log.</p>
<div class="scroll"><table>
<tr><th>src</th><th>dst</th><th>frames</th><th>expected</th><th>bytes</th><th>expected</th><th class="l"></th></tr>
{% for e in edges %}
<tr class="{{ 'err' if not e.in_topology else ('warn' if e.expected_frames is not none and (e.frames != e.expected_frames or e.bytes != e.expected_bytes) else '') }}">
<td>{{ e.src }}</td><td>{{ e.dst }}</td><td>{{ fmt_int(e.frames) }}</td><td>{{ fmt_int(e.expected_frames) }}</td>
<td>{{ fmt_int(e.bytes) }}</td><td>{{ fmt_int(e.expected_bytes) }}</td>
<td class="l">{{ '' if e.in_topology else 'not in the topology' }}</td></tr>
{% endfor %}
</table></div>
{% if more_edges %}<p class="muted">… {{ more_edges }} more edges in <code>summary.json</code>.</p>{% endif %}
<p class="muted">Generated by the p2p analysis from the files in this run directory.</p>
</body>
</html>
"""

_CAPTIONS = {
    "traffic.png": "the topology with the bytes carried per link",
    "timeline.png": "deliveries over time per peer",
}


def _uri(data: bytes) -> str:
    return "data:image/png;base64," + base64.b64encode(data).decode("ascii")


def render_report(analysis: Analysis, images: list[Path] | None = None) -> str:
    """The report page. ``images`` are the PNG files to embed (None: none, e.g. plots off)."""
    from analysis.text import problem_lines, verdict_text

    s = analysis.summary
    run_dir = analysis.run_dir
    images = images or []
    main_imgs = []
    views = []
    view_html = []
    for path in images:
        path = Path(path)
        if path.suffix == ".png" and path.parent.name == "worldview" and path.name.startswith("peer-"):
            peer = int(path.stem.split("-", 1)[1])
            r = s["peers"][peer]
            cap = "complete" if not r["view_missing"] and not r["view_extra"] else (
                f"{r['view_missing']} missing, {r['view_extra']} extra"
            )
            views.append({"peer": peer, "uri": _uri(path.read_bytes()), "caption": cap})
        elif path.suffix == ".png":
            caption = _CAPTIONS.get(path.name, "bytes (in + out) per connected pair, as the original tool drew it")
            main_imgs.append({"name": path.name, "uri": _uri(path.read_bytes()), "caption": caption})
        elif path.suffix == ".html" and path.name.startswith("p2p_graph_"):
            peer = int(path.name.split("_")[2])
            view_html.append({"peer": peer, "href": path.relative_to(run_dir).as_posix()})
    order = {"traffic.png": 0, "timeline.png": 2}
    main_imgs.sort(key=lambda i: order.get(i["name"], 1))
    views.sort(key=lambda v: v["peer"])
    view_html.sort(key=lambda v: v["peer"])
    problems = problem_lines(s, None)
    verdict = verdict_text(s)
    env = jinja2.Environment(autoescape=True, undefined=jinja2.StrictUndefined)
    tpl = env.from_string(_TEMPLATE)

    def delta(obs: int, exp: int | None) -> str:
        if exp is None:
            return ""
        if obs == exp:
            return "as predicted"
        return f"{obs - exp:+,} ({100 * obs / exp:.1f} %)" if exp else f"{obs - exp:+,}"

    return tpl.render(
        s=s,
        name=analysis.name,
        bound=" (upper bound)" if s.get("prediction") == "upper_bound" else "",
        log_dir=str(analysis.log_dir),
        verdict=verdict,
        verdict_class="ok" if s.get("explained", verdict == "OK") else "bad" if verdict == "NOT OK" else "unk",
        problems=problems[:MAX_PROBLEM_ROWS],
        more_problems=max(0, len(problems) - MAX_PROBLEM_ROWS),
        images=main_imgs,
        no_images_reason="plots were not drawn" if not images else "none were drawn",
        views=views,
        html_links=view_html,
        notes=analysis.notes,
        edges=s["edges"][:MAX_EDGE_ROWS],
        more_edges=max(0, len(s["edges"]) - MAX_EDGE_ROWS),
        fmt_int=fmt_int,
        fmt_bytes=fmt_bytes,
        fmt_seconds=fmt_seconds,
        delta=delta,
    )


def write_report(analysis: Analysis, images: list[Path] | None = None) -> Path:
    return atomic_write(analysis.run_dir / "report.html", render_report(analysis, images))
