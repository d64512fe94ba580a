"""The pages of a real local run in a real headless Chromium (tests/browser.py).

report.html and the interactive world views load with no console error and fetch nothing
but files of their run directory; every picture decodes; every link leads somewhere; the
tables sort when a header is clicked.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from urllib.parse import unquote, urlsplit

import pytest

pytestmark = pytest.mark.browser

N = 5
RUNS = {
    "mesh-5": ["-t", "mesh", "-n", str(N)],
    "mesh-5-kill-4": ["-t", "mesh", "-n", str(N), "--fault", "kill:4@0", "--link-deadline", "3"],
}


@pytest.fixture(scope="module")
def real_runs(tmp_path_factory) -> dict[str, Path]:
    """Each run of RUNS made once, on the local backend, with pictures: name -> run directory.
    The runs go side by side (local peers listen on ports the system picks): the fault run
    waits 3 s for its dead peer anyway."""
    started = {}
    for name, args in RUNS.items():
        out = tmp_path_factory.mktemp(name)
        cmd = [sys.executable, "-m", "testbed.cli", "run", "--backend", "local", "--idle", "0.5",
               "--out", str(out), *args]
        started[name] = (out, subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True))
    runs = {}
    for name, (out, proc) in started.items():
        _, err = proc.communicate(timeout=120)
        assert proc.returncode == 0, err
        (runs[name],) = [d for d in out.iterdir() if d.is_dir() and not d.is_symlink()]
    return runs


def url_path(url: str) -> Path:
    return Path(unquote(urlsplit(url).path))


def assert_clean_load(load, run: Path) -> None:
    assert load.errors() == [], load.console
    assert load.foreign_requests(run) == [], load.requests


@pytest.mark.parametrize("name", RUNS)
def test_the_report_loads_offline_with_every_picture_and_link(browser, real_runs, name):
    run = real_runs[name]
    load = browser.open(run / "report.html")
    assert_clean_load(load, run)
    browser.wait_for("return Array.from(document.images).every(i => i.complete)")
    widths = browser.run("return Array.from(document.images, i => i.naturalWidth)")
    # traffic.png, traffic_mesh.png, timeline.png and one world view per peer
    assert len(widths) == 3 + N and all(w > 0 for w in widths), widths
    # As the browser resolved them: a file of the run directory, or an element of this page.
    for url in browser.run("return Array.from(document.querySelectorAll('a[href]'), a => a.href)"):
        target, fragment = url_path(url), urlsplit(url).fragment
        assert target.is_relative_to(run) and target.exists(), url
        if fragment:
            assert target == run / "report.html" and browser.run(
                "return document.getElementById(arguments[0]) !== null", fragment), url
    sources = browser.run("return Array.from(document.querySelectorAll('[src]'), e => e.getAttribute('src'))")
    assert all(s.startswith("data:image/png;base64,") for s in sources), [s[:40] for s in sources]


def column(browser, table: str, col: int) -> list[str]:
    """The sort keys of one column of a table, top to bottom (data-v, else the text)."""
    return browser.run("""
        return Array.from(document.querySelectorAll('#' + arguments[0] + ' tbody tr'), r => {
          const c = r.cells[arguments[1]];
          return c.dataset.v !== undefined ? c.dataset.v : c.textContent.trim();
        });""", table, col)


def click_header(browser, table: str, col: int) -> None:
    browser.run("document.querySelector('#' + arguments[0] + ' thead tr').cells[arguments[1]].click()", table, col)


def ints(values: list[str]) -> list[int]:
    return [int(v) for v in values]


def test_the_report_tables_sort_when_a_header_is_clicked(browser, real_runs):
    run = real_runs["mesh-5-kill-4"]  # peer 4 was killed at start: it received nothing, it has no error count
    assert_clean_load(browser.open(run / "report.html"), run)
    assert ints(column(browser, "peer-table", 0)) == [0, 1, 2, 3, 4]
    click_header(browser, "peer-table", 1)  # received, ascending; ties keep their order
    assert ints(column(browser, "peer-table", 1)) == [0, 15, 15, 15, 15]
    assert ints(column(browser, "peer-table", 0)) == [4, 0, 1, 2, 3]
    click_header(browser, "peer-table", 1)  # again: descending
    assert ints(column(browser, "peer-table", 1)) == [15, 15, 15, 15, 0]
    click_header(browser, "peer-table", 8)  # errors: numbers first, then peer 4's "-"
    assert column(browser, "peer-table", 8) == ["0", "0", "0", "0", ""]
    click_header(browser, "peer-table", 0)
    click_header(browser, "peer-table", 0)
    assert ints(column(browser, "peer-table", 0)) == [4, 3, 2, 1, 0]
    assert browser.run("return document.querySelector('#peer-table th[aria-sort]').textContent") == "peer"

    rows = sorted(zip(ints(column(browser, "edge-table", 0)), ints(column(browser, "edge-table", 1))))
    assert len(rows) == N * (N - 1)
    click_header(browser, "edge-table", 4)  # bytes
    sent = ints(column(browser, "edge-table", 4))
    assert sent == sorted(sent) and sent[0] == 0 < sent[-1]
    click_header(browser, "edge-table", 0)
    click_header(browser, "edge-table", 0)  # src, descending
    src = ints(column(browser, "edge-table", 0))
    assert src == sorted(src, reverse=True)
    assert sorted(zip(src, ints(column(browser, "edge-table", 1)))) == rows  # the same rows, reordered


def world_view_pages(run: Path) -> list[Path]:
    """The interactive world-view pages of a run (the original tool's names, and any under worldview/)."""
    return sorted(run.glob("p2p_graph_*.html")) + sorted(run.glob("worldview/*.html"))


def drawn_nodes(browser) -> int:
    """How many nodes the page's vis.Network holds (tests/browser.py watches it being made)."""
    browser.wait_for("return window.__visNetworks && window.__visNetworks.length > 0")
    return browser.run("return Object.keys(window.__visNetworks.at(-1).getPositions()).length")


@pytest.mark.parametrize("name", RUNS)
def test_every_world_view_page_loads_offline_and_draws_every_peer(browser, real_runs, name):
    run = real_runs[name]
    pages = world_view_pages(run)
    assert len(pages) >= N
    with browser.watching_vis_networks():
        for page in pages:
            assert_clean_load(browser.open(page), run)
            assert drawn_nodes(browser) == N, page.name
            assert browser.run("return document.querySelector('canvas').width") > 0, page.name
