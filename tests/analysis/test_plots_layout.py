"""The traffic pictures' titles and labels do not overlap (measured with matplotlib's renderer)."""

from __future__ import annotations

import itertools
from typing import TYPE_CHECKING

import pytest

pytest.importorskip("matplotlib")

from analysis.plots import draw_pair_bars, draw_traffic
from analysis.stats import analyse

if TYPE_CHECKING:
    from matplotlib.path import Path


def text_outlines(fig) -> list[tuple[str, Path]]:
    """Every visible, non-empty text of the figure with its outline in pixels: the drawn
    box of a boxed (possibly rotated) label, else the text's bounding rectangle."""
    from matplotlib.path import Path as MplPath
    from matplotlib.text import Text

    renderer = fig.canvas.get_renderer()
    fig.draw(renderer)
    out = []
    for t in fig.findobj(Text):
        if not (t.get_visible() and t.get_text().strip() and t.get_figure() is not None):
            continue
        patch = t.get_bbox_patch()
        if patch is not None:
            outline = patch.get_path().transformed(patch.get_transform())
        else:
            (x0, y0), (x1, y1) = t.get_window_extent(renderer).get_points()
            outline = MplPath([(x0, y0), (x1, y0), (x1, y1), (x0, y1), (x0, y0)], closed=True)
        out.append((t.get_text(), outline))
    return out


def overlaps(fig) -> list[tuple[str, str]]:
    """Pairs of texts whose outlines cross or contain one another."""
    outlines = text_outlines(fig)
    return [(a, b) for (a, pa), (b, pb) in itertools.combinations(outlines, 2) if pa.intersects_path(pb, filled=True)]


@pytest.mark.parametrize(("topology", "n"), [("cycle", 5), ("starfish", 11), ("cycle", 50)])
@pytest.mark.parametrize("draw", [draw_traffic, draw_pair_bars])
def test_no_text_overlaps(build_run, topology, n, draw):
    a = analyse(build_run(topology, n), write=False, progress=None)
    fig = draw(a)
    assert len(text_outlines(fig)) >= 5
    assert overlaps(fig) == []


def test_the_overlap_check_sees_rotated_boxes():
    """Two boxed labels crossing at 45° overlap; moved apart they do not."""
    from analysis.plots import figure

    fig = figure(4, 4)
    box = {"boxstyle": "round,pad=0.15", "fc": "white"}
    fig.text(0.5, 0.5, "a label along a link", rotation=45, ha="center", va="center", bbox=box)
    fig.text(0.5, 0.5, "another label", rotation=-45, ha="center", va="center", bbox=box)
    assert overlaps(fig) == [("a label along a link", "another label")]
    fig.texts[1].set_position((0.85, 0.15))
    assert overlaps(fig) == []


@pytest.mark.parametrize("differs", [False, True])
def test_view_summary_has_no_text_overlaps(build_run, differs):
    from analysis.plots import draw_view_summary

    run = build_run("cycle", 20)
    if differs:
        path = run / "logs" / "3.txt"
        path.write_text("".join(ln + "\n" for ln in path.read_text().splitlines() if "10,11" not in ln and "11,10" not in ln))
    a = analyse(run, write=False, progress=None)
    fig = draw_view_summary(a, [3] if differs else [])
    texts = [t for t, _ in text_outlines(fig)]
    assert ("all 20 views equal the topology (20 edges)" in texts) != differs
    assert overlaps(fig) == []
