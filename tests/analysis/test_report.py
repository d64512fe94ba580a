"""report.html without a browser: the spec as JSON, links that resolve, nothing outside the run directory.

The same page in a real Chromium (loads cleanly, images decode, tables sort): test_report_browser.py.
"""

from __future__ import annotations

import re
from html.parser import HTMLParser
from pathlib import Path

import pytest

pytest.importorskip("matplotlib")

from analysis import run_analysis
from analysis.report import spec_rows


class _Refs(HTMLParser):
    """Every href/src of a page, every id, and the cells of the spec table."""

    def __init__(self) -> None:
        super().__init__()
        self.refs: list[tuple[str, str, str]] = []  # (tag, attribute, value)
        self.ids: set[str] = set()

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        for name, value in attrs:
            if name in ("href", "src") and value is not None:
                self.refs.append((tag, name, value))
            if name == "id" and value:
                self.ids.add(value)


def refs_of(page: Path) -> _Refs:
    parser = _Refs()
    parser.feed(page.read_text(encoding="utf-8"))
    return parser


def assert_links_resolve(page: Path) -> None:
    """Every href/src is an anchor of the page, an embedded image, or a file of the run directory."""
    run_dir = page.parent.resolve()
    found = refs_of(page)
    assert found.refs
    for tag, attr, value in found.refs:
        if value.startswith("#"):
            assert value[1:] in found.ids, f"{value}: no such anchor"
        elif value.startswith("data:"):
            assert (tag, attr) == ("img", "src") and value.startswith("data:image/png;base64,"), value
        else:
            target = (run_dir / value).resolve()
            assert target.is_relative_to(run_dir) and target.exists(), f"{tag} {attr}={value}: no such file"


@pytest.mark.parametrize(("plots", "original"), [(True, False), (False, False), (True, True)])
def test_every_link_of_the_report_resolves_inside_the_run_directory(build_run, plots, original):
    run = build_run("cycle", 5, original=original)
    run_analysis(run, plots=plots, progress=None)
    page = run / "report.html"
    assert_links_resolve(page)
    html = page.read_text(encoding="utf-8")
    # Nothing the reader of a run directory does not have: no repository docs, no absolute paths.
    assert not re.search(r"\.md\b", html), re.search(r".{40}\.md\b", html)
    assert str(run.parent) not in html
    hrefs = {v for _, a, v in refs_of(page).refs if a == "href"}
    assert {"#summary", "#spec", "#problems", "#pictures", "#worldviews", "#peers", "#edges"} <= hrefs
    assert {"summary.json", "stats.txt"} <= hrefs
    assert original or {"spec.json", "logs/"} <= hrefs  # the original tool's directory has neither
    if plots:
        assert {"traffic.png", "p2p_graph_0_cycle.html"} <= hrefs
        assert original or "timeline.png" in hrefs  # the original tool's logs have no times


def test_the_spec_is_shown_as_json(build_run):
    run = build_run("mesh", 5, faults=("kill:4@0",))
    run_analysis(run, plots=False, progress=None)
    html = (run / "report.html").read_text(encoding="utf-8")
    spec = html.split('<section id="spec">')[1].split("</section>")[0]
    cells = dict(re.findall(r"<tr><td>([\w.]+)</td><td><code>(.*?)</code></td></tr>", spec))
    assert cells["allow_disconnected"] == "false"
    assert cells["seed"] == "null"
    assert cells["topology"] == "&#34;mesh&#34;"
    assert cells["faults"] == "[&#34;kill:4@0&#34;]"
    assert cells["options.link_shapes"] == "[]"
    assert not re.search(r"\b(False|True|None)\b", spec)
    assert "kill:4@0 fired at 0.000 s, after 0 deliveries" in html


def test_spec_rows_are_json_values_with_nested_keys_spelled_out():
    spec = {"n": 5, "seed": None, "faults": [{"action": "kill"}], "options": {"idle": 2.0, "shapes": []},
            "params": {}, "topology": "mesh"}
    assert spec_rows(spec, ["kill:4@0"]) == [
        ("n", "5"), ("seed", "null"), ("faults", '["kill:4@0"]'), ("options.idle", "2.0"),
        ("options.shapes", "[]"), ("params", "{}"), ("topology", '"mesh"'),
    ]


def test_numeric_cells_carry_their_raw_value_for_sorting(build_run):
    run = build_run("cycle", 5)
    run_analysis(run, plots=False, progress=None)
    html = (run / "report.html").read_text(encoding="utf-8")
    peers = html.split('id="peer-table"')[1].split("</table>")[0]
    assert '<td data-v="8">8</td>' in peers  # received: every peer of a cycle-5 gets 8 messages
    edges = html.split('id="edge-table"')[1].split("</table>")[0]
    assert edges.count("<tr") == 1 + 10  # the header and the 10 directed edges
