"""World views that scale: pictures only of the views worth one, every view at a glance,
one copy of vis-network, the viewer's data per neighbourhood above PER_PEER_LIMIT."""

from __future__ import annotations

import json
import shutil
import subprocess

import pytest

pytest.importorskip("matplotlib")

from analysis import run_analysis


def drop_link(run, peer: int, a: int, b: int) -> None:
    """Peer forgets every hop list that crossed the link a–b."""
    path = run / "logs" / f"{peer}.txt"
    kept = [ln for ln in path.read_text().splitlines() if f"{a},{b}" not in ln and f"{b},{a}" not in ln]
    path.write_text("".join(ln + "\n" for ln in kept))


def views_js(run) -> dict:
    text = (run / "worldview" / "views.js").read_text()
    return json.loads(text.split("=", 1)[1].strip().rstrip(";"))


def test_pictures_of_the_views_that_differ_and_every_view_at_a_glance(build_run):
    run = build_run("cycle", 20)
    drop_link(run, 3, 10, 11)
    drop_link(run, 17, 5, 6)
    drop_link(run, 17, 12, 13)
    stale = run / "worldview" / "peer-9.png"
    stale.parent.mkdir(parents=True, exist_ok=True)
    stale.write_bytes(b"left by an earlier analysis")
    a = run_analysis(run, plots=True, progress=None)
    assert sorted(p.name for p in (run / "worldview").glob("peer-*.png")) == ["peer-17.png", "peer-3.png"]
    assert (run / "worldview" / "views.png").stat().st_size > 10_000
    assert any("worldview/views.png sums up all 20" in n for n in a.notes)
    # Every peer keeps its interactive page, each a few KB; vis-network is there once.
    pages = sorted(run.glob("p2p_graph_*_cycle.html"))
    assert len(pages) == 20 and all(p.stat().st_size < 4000 for p in pages)
    assert [p.name for p in run.rglob("vis-network*.js")] == ["vis-network.min.js"]
    data = views_js(run)
    assert data["full"] and len(data["pos"]) == 20
    assert {(5, 6), (12, 13)} <= {tuple(e) for e in data["peers"]["17"]["missing"]}
    assert data["peers"]["0"]["missing"] == [] and data["peers"]["0"]["extra"] == []


def test_viewer_data_is_per_neighbourhood_above_the_limit(build_run, monkeypatch):
    import analysis.plots as plots

    monkeypatch.setattr(plots, "PER_PEER_LIMIT", 8)
    run = build_run("cycle", 20)
    drop_link(run, 3, 10, 11)
    # Nothing reaches peer 3 from peer 4 directly: it never sees its own link 3–4.
    path = run / "logs" / "3.txt"
    path.write_text("".join(ln + "\n" for ln in path.read_text().splitlines() if not ln.endswith((",4]}", "[4]}"))))
    a = run_analysis(run, plots=True, progress=None)
    assert not list(run.glob("p2p_graph_*.html")) and not list((run / "worldview").glob("peer-*.png"))
    assert any("shows any peer's neighbourhood" in n for n in a.notes)
    data = views_js(run)
    assert not data["full"] and data["pos"] is None
    # Peer 3 misses links all round; only the one in its own neighbourhood is drawn, all are counted.
    assert data["peers"]["3"]["missing_count"] > 1 and data["peers"]["3"]["missing"] == [[3, 4]]


@pytest.mark.skipif(shutil.which("node") is None, reason="no node to parse the viewer")
def test_the_viewer_script_parses(build_run):
    run = build_run("cycle", 5)
    run_analysis(run, plots=True, progress=None)
    for script in ("viewer.js", "views.js"):
        done = subprocess.run(["node", "--check", str(run / "worldview" / script)], capture_output=True, text=True)
        assert done.returncode == 0, done.stderr
