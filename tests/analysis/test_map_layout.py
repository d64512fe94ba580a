"""Real networks are drawn on their coordinates (longitude, latitude), not a spring layout."""

from types import SimpleNamespace

from analysis.live import layout_of
from analysis.plots import layout
from generator.topologies import build_graph


def abilene():
    g = build_graph("zoo", 11, params={"name": "Abilene"})
    city = {g.nodes[p]["name"]: p for p in g}
    return g, city


def test_pictures_put_the_nodes_on_the_map():
    g, city = abilene()
    pos = layout(SimpleNamespace(graph=g, n=11, topology="zoo"))  # n <= 12 would otherwise be a circle
    assert pos[city["Seattle"]][0] < pos[city["Denver"]][0] < pos[city["Kansas City"]][0] < pos[city["New York"]][0]
    assert pos[city["Seattle"]][1] > pos[city["Los Angeles"]][1] > pos[city["Houston"]][1]  # north up
    xs, ys = zip(*pos.values())
    assert min(xs) == -1.0 and max(xs) == 1.0 and -1 <= min(ys) < max(ys) <= 1  # wider than high: the US


def test_the_live_page_puts_north_up_on_its_y_down_canvas():
    g, city = abilene()
    pos = layout_of(g)
    assert pos[city["Seattle"]][0] < pos[city["New York"]][0]
    assert pos[city["Seattle"]][1] < pos[city["Houston"]][1]
    assert all(0 <= c <= 1 for xy in pos.values() for c in xy)
