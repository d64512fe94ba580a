import networkx as nx
import pytest
from hypothesis import given
from hypothesis import strategies as st

from generator.errors import TopologyError
from generator.topologies import build_graph, cycle_graph, mesh_graph, parse_topology, starfish_graph


@given(st.integers(3, 200))
def test_cycle_is_a_ring(n):
    g = cycle_graph(n)
    assert sorted(g.nodes) == list(range(n))
    assert g.number_of_edges() == n
    assert all(d == 2 for _, d in g.degree)
    assert all(g.has_edge(i, (i + 1) % n) for i in range(n))


@given(st.integers(2, 40))
def test_mesh_is_complete(n):
    g = mesh_graph(n)
    assert g.number_of_edges() == n * (n - 1) // 2
    assert all(d == n - 1 for _, d in g.degree)


def test_starfish_5_is_the_pentagram():
    g = starfish_graph(5)
    pentagram = [0, 2, 4, 1, 3]
    expected = {frozenset((pentagram[i], pentagram[(i + 1) % 5])) for i in range(5)}
    assert {frozenset(e) for e in g.edges} == expected


@given(st.integers(4, 300))
def test_starfish_is_circulant_2_3(n):
    g = starfish_graph(n)
    assert nx.utils.graphs_equal(g, nx.circulant_graph(n, [2, 3]))
    assert nx.number_of_selfloops(g) == 0
    if n >= 7:
        assert all(d == 4 for _, d in g.degree)


@pytest.mark.parametrize("name,n", [("cycle", 2), ("mesh", 1), ("starfish", 3), ("cycle", 0)])
def test_degenerate_sizes_are_errors(name, n):
    with pytest.raises(TopologyError, match="degenerate"):
        build_graph(name, n)


def test_parse_topology_spellings():
    assert parse_topology("mesh,7") == ("mesh", 7)
    assert parse_topology("Mesh", 7) == ("mesh", 7)
    assert parse_topology("cycle") == ("cycle", 5)
    with pytest.raises(TopologyError, match="unknown topology"):
        parse_topology("torus")
    with pytest.raises(TopologyError, match="conflicting"):
        parse_topology("mesh,7", 8)
