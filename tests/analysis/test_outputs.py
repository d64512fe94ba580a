"""Pictures, HTML pages, the report and the comparison: valid files, nothing external."""

from __future__ import annotations

import json
import re
import struct
from pathlib import Path

import pytest

pytest.importorskip("matplotlib")

from analysis import run_analysis
from analysis.compare import compare

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
EXTERNAL = re.compile(
    rb"""<(?:script|link|img|iframe|source)\b[^>]*\b(?:src|href)\s*=\s*["']?\s*(?:https?:)?//""", re.I
)


def png_size(path: Path) -> tuple[int, int]:
    data = path.read_bytes()[:33]
    assert data[:8] == PNG_MAGIC, f"{path} is not a PNG"
    length, kind = struct.unpack(">I4s", data[8:16])
    assert kind == b"IHDR" and length == 13
    return struct.unpack(">II", data[16:24])


def assert_sensible_png(path: Path) -> None:
    w, h = png_size(path)
    assert 300 <= w <= 6000 and 300 <= h <= 6000, (path, w, h)


def assert_offline(path: Path) -> None:
    data = path.read_bytes()
    assert not EXTERNAL.findall(data), f"{path} references an external resource"
    for tag in re.findall(rb"<(?:script|link)\b[^>]*>", data, re.I):
        assert b"http" not in tag.lower(), (path, tag)


def test_every_output_of_a_run(build_run):
    run = build_run("cycle", 5)
    # Peer 0 misses the link 2-3 and sees a link 2-4 that is not there.
    path = run / "logs" / "0.txt"
    kept = [ln for ln in path.read_text().splitlines() if "2,3" not in ln and "3,2" not in ln]
    path.write_text("".join(ln + "\n" for ln in kept) + '{"id":2,"hops":[2,4]}\n')
    messages = []
    a = run_analysis(run, plots=True, progress=messages.append)
    assert not a.ok and messages
    pngs = [run / "traffic.png", run / "traffic_cycle.png", run / "timeline.png"]
    pngs += [run / "worldview" / f"peer-{p}.png" for p in range(5)]
    for png in pngs:
        assert_sensible_png(png)
    pages = [run / f"p2p_graph_{p}_cycle.html" for p in range(5)]
    for page in [*pages, run / "worldview" / "index.html"]:
        assert_offline(page)
        text = page.read_text()
        assert "as perceived by peer" in text and 'src="' in text and len(text) < 4000
    # One copy of vis-network per run directory, byte for byte (only its source-map comment dropped).
    import importlib.util

    base = Path(importlib.util.find_spec("pyvis").submodule_search_locations[0])
    lib = (base / "templates" / "lib" / "vis-9.1.2" / "vis-network.min.js").read_text(encoding="utf-8")
    copy = run / "worldview" / "lib" / "vis-network.min.js"
    assert copy.read_text(encoding="utf-8") == lib.replace("\n//# sourceMappingURL=vis-network.min.js.map", "")
    assert len(list(run.rglob("vis-network*.js"))) == 1
    for page in pages:
        scripts = re.findall(r'<script src="([^"]+)"', page.read_text())
        assert scripts == ["worldview/lib/vis-network.min.js", "worldview/views.js", "worldview/viewer.js"]
        assert all((run / s).is_file() for s in scripts)
    # The data behind the hover text of a link to a direct neighbour: in/out frames and bytes.
    data = json.loads((run / "worldview" / "views.js").read_text().split("=", 1)[1].rstrip().rstrip(";"))
    assert data["flows"]["2,1"] == [4, 104] and data["flows"]["1,2"] == [4, 104]
    assert data["peers"]["0"]["missing"] == [[2, 3]] and data["peers"]["0"]["extra"] == [[2, 4]]
    report = run / "report.html"
    assert_offline(report)
    html = report.read_text()
    assert html.count('src="data:image/png;base64,') == len(pngs)
    for p in range(5):
        assert f'href="p2p_graph_{p}_cycle.html"' in html
    assert "NOT OK" in html and "1 missing, 1 extra" in html
    for f in a.files:
        assert f.exists() and f.is_relative_to(run)


def test_plots_off_still_writes_report(build_run):
    run = build_run("mesh", 5)
    a = run_analysis(run, plots=False, progress=None)
    assert a.ok
    assert (run / "report.html").exists() and (run / "summary.json").exists()
    assert not list(run.glob("*.png"))
    assert "data:image" not in (run / "report.html").read_text()


def test_large_runs_skip_per_peer_pictures(build_run, monkeypatch):
    import analysis.plots as plots

    monkeypatch.setattr(plots, "PER_PEER_LIMIT", 4)
    monkeypatch.setattr(plots, "LABEL_LIMIT", 4)
    run = build_run("cycle", 5)
    a = run_analysis(run, plots=True, progress=None)
    assert not list((run / "worldview").glob("peer-*.png"))
    assert not list(run.glob("p2p_graph_*.html"))
    # Still every view at a glance, and the viewer in neighbourhood mode.
    assert_sensible_png(run / "worldview" / "views.png")
    assert_offline(run / "worldview" / "index.html")
    assert '"full":false' in (run / "worldview" / "views.js").read_text()
    assert any("skipped" in n for n in a.notes) and any("no per-edge labels" in n for n in a.notes)
    assert_sensible_png(run / "traffic.png")
    # The views are still all there as data.
    assert len(list((run / "worldview").glob("peer-*.graphml"))) == 5


def test_compare_runs(build_run, tmp_path):
    runs = [build_run("cycle", 5), build_run("mesh", 5), build_run("starfish", 5)]
    out = tmp_path / "cmp"
    c = compare(runs, out)
    assert [r["name"] for r in c.rows] == ["cycle-5", "mesh-5", "starfish-5"]
    assert [r["deliveries"] for r in c.rows] == [40, 320, 40]
    assert [r["bytes_per_peer"] for r in c.rows] == [208, 1736, 208]
    assert all(r["ok"] for r in c.rows)
    data = json.loads((out / "compare.json").read_text())
    assert data["runs"] == c.rows
    assert "mesh-5" in (out / "compare.txt").read_text()
    assert_sensible_png(out / "compare.png")
