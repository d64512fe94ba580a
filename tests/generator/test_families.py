"""Topology families: structure, seeding, parameters, spellings, file import, RunSpec params."""

import json
import math

import networkx as nx
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from generator.errors import SpecError, TopologyError
from generator.spec import RunSpec
from generator.topologies import (
    FAMILIES,
    ba_graph,
    build_graph,
    circulant_graph,
    er_graph,
    grid_graph,
    line_graph,
    parse_topology,
    parse_topology_params,
    read_graph_file,
    regular_graph,
    ring_graph,
    rtree_graph,
    star_graph,
    starfish_graph,
    tree_graph,
    ws_graph,
)


def degrees(g):
    return sorted(d for _, d in g.degree)


def same(g, h):
    return sorted(map(sorted, g.edges)) == sorted(map(sorted, h.edges))


# ---- deterministic families ------------------------------------------------------


@given(st.integers(3, 60), st.lists(st.integers(1, 59), min_size=1, max_size=4))
def test_circulant_is_networkx_circulant(n, jumps):
    jumps = [j for j in jumps if j < n] or [1]
    g = circulant_graph(n, jumps=jumps)
    assert nx.utils.graphs_equal(g, nx.circulant_graph(n, jumps))
    assert nx.number_of_selfloops(g) == 0
    distinct = {min(j, n - j) for j in jumps}
    assert all(d == sum(1 if 2 * j == n else 2 for j in distinct) for _, d in g.degree)


def test_circulant_2_3_is_starfish_and_jumps_are_checked():
    for n in (5, 6, 9, 30):
        assert same(circulant_graph(n, jumps=(2, 3)), starfish_graph(n))
    with pytest.raises(TopologyError, match="degenerate.*jump 9"):
        circulant_graph(9, jumps=(2, 9))
    with pytest.raises(TopologyError, match="degenerate.*jump 0"):
        circulant_graph(9, jumps=(0,))
    with pytest.raises(TopologyError, match="not connected"):
        build_graph("circulant", 8, params={"jumps": (2, 4)})  # gcd(8, 2, 4) = 2


@pytest.mark.parametrize("n,k", [(3, 1), (7, 3), (10, 2), (20, 4)])
def test_ring_lattice(n, k):
    g = ring_graph(n, k=k)
    assert degrees(g) == [2 * k] * n
    assert g.number_of_edges() == n * k
    assert same(ring_graph(n, k=1), nx.cycle_graph(n))


def test_ring_needs_room_for_both_sides():
    with pytest.raises(TopologyError, match="degenerate"):
        ring_graph(6, k=3)


@given(st.integers(3, 100))
def test_star_and_line(n):
    s = star_graph(n)
    assert degrees(s) == [1] * (n - 1) + [n - 1] and s.degree(0) == n - 1
    line = line_graph(n)
    assert line.number_of_edges() == n - 1 and degrees(line) == [1, 1] + [2] * (n - 2)
    assert nx.is_tree(s) and nx.is_tree(line)


@pytest.mark.parametrize("n,rows,cols", [(4, 2, 2), (6, 2, 3), (12, 3, 4), (16, 4, 4), (30, 5, 6)])
def test_grid_takes_the_most_square_factorisation(n, rows, cols):
    g = grid_graph(n)
    assert g.number_of_edges() == 2 * rows * cols - rows - cols
    assert nx.utils.graphs_equal(nx.convert_node_labels_to_integers(nx.grid_2d_graph(rows, cols)), g)


@pytest.mark.parametrize("n,rows", [(9, 3), (12, 3), (12, 4), (20, 4), (20, 5)])
def test_torus(n, rows):
    g = grid_graph(n, rows=rows, wrap=True)
    assert degrees(g) == [4] * n and g.number_of_edges() == 2 * n
    expected = nx.convert_node_labels_to_integers(nx.grid_2d_graph(rows, n // rows, periodic=True))
    assert nx.utils.graphs_equal(g, expected)


@pytest.mark.parametrize("n,params,why", [
    (7, {}, "prime"), (12, {"rows": 5}, "does not divide"), (8, {"rows": 2, "wrap": True}, "both sides must be >= 3"),
    (3, {}, "factorisation"), (12, {"rows": 1}, "both sides must be >= 2"),
])
def test_grid_degenerate_sizes(n, params, why):
    with pytest.raises(TopologyError, match=why):
        build_graph("grid", n, params=params)


@given(st.integers(2, 80), st.integers(2, 5))
def test_balanced_tree(n, r):
    g = tree_graph(n, r=r)
    assert nx.is_tree(g) and g.number_of_nodes() == n
    assert all(g.has_edge(i, (i - 1) // r) for i in range(1, n))
    depth = max(nx.shortest_path_length(g, 0).values())
    assert depth <= math.ceil(math.log(n * (r - 1) + 1, r))  # balanced: logarithmic depth


def test_tree_with_branching_one_is_an_error():
    with pytest.raises(TopologyError, match="branching"):
        tree_graph(5, r=1)


# ---- seeded families ---------------------------------------------------------------

SEEDED = [
    ("rtree", 12, {}),
    ("regular", 12, {"d": 3}),
    ("er", 20, {"p": 0.3}),
    ("ws", 20, {"k": 4, "p": 0.3}),
    ("ba", 20, {"m": 2}),
]


@pytest.mark.parametrize("name,n,params", SEEDED)
def test_seeded_families_replay_and_vary(name, n, params):
    assert FAMILIES[name].random
    graphs = {}
    for seed in range(8):
        try:
            a = build_graph(name, n, seed=seed, params=params)
        except TopologyError as e:  # a disconnected draw is allowed to happen, and must say so
            assert "not connected" in str(e)
            continue
        assert same(a, build_graph(name, n, seed=seed, params=params))
        graphs[seed] = frozenset(map(frozenset, a.edges))
    assert len(graphs) >= 4
    assert len(set(graphs.values())) > 1, "different seeds should (usually) give different graphs"


@given(st.integers(2, 40), st.integers(0, 10_000))
@settings(max_examples=50)
def test_random_tree_is_a_tree(n, seed):
    g = rtree_graph(n, seed=seed)
    assert nx.is_tree(g) and sorted(g.nodes) == list(range(n))


@given(st.integers(4, 40), st.integers(1, 6), st.integers(0, 1000))
@settings(max_examples=60)
def test_random_regular(n, d, seed):
    if d >= n or n * d % 2:
        with pytest.raises(TopologyError, match="degenerate"):
            regular_graph(n, d=d, seed=seed)
        return
    assert degrees(regular_graph(n, d=d, seed=seed)) == [d] * n


def test_er_ws_ba_structure():
    assert er_graph(15, p=1.0, seed=1).number_of_edges() == 105
    g = ws_graph(30, k=4, p=0.5, seed=3)
    assert g.number_of_edges() == 60  # rewiring keeps the edge count
    ba = ba_graph(30, m=3, seed=4)
    assert ba.number_of_edges() == 3 * (30 - 3) and nx.is_connected(ba)


@pytest.mark.parametrize("name,n,params,why", [
    ("er", 10, {"p": 0}, "p=0"), ("er", 10, {"p": 1.5}, "p=1.5"), ("ws", 10, {"k": 3}, "k=3"),
    ("ws", 4, {"k": 4}, "below n"), ("ba", 5, {"m": 5}, "m=5"), ("regular", 5, {"d": 3}, "odd"),
])
def test_seeded_degenerate_parameters(name, n, params, why):
    with pytest.raises(TopologyError, match=why):
        build_graph(name, n, seed=1, params=params)


def test_disconnected_is_an_error_unless_allowed():
    with pytest.raises(TopologyError, match=r"not connected \(\d+ components\).*another seed"):
        build_graph("er", 30, seed=1, params={"p": 0.02})
    g = build_graph("er", 30, seed=1, params={"p": 0.02}, allow_disconnected=True)
    assert not nx.is_connected(g) and g.number_of_nodes() == 30


# ---- every family -----------------------------------------------------------------


@pytest.mark.parametrize("name", [f for f, fam in FAMILIES.items() if fam.size_from is None])  # not file, zoo, sndlib
def test_every_family_gives_peer_ids_and_no_self_loops(name):
    fam = FAMILIES[name]
    params = {"p": 0.5} if name == "er" else {}
    for n in range(fam.min_n, 31):
        try:
            g = build_graph(name, n, seed=n, params=params)
        except TopologyError as e:
            assert "degenerate" in str(e) or "not connected" in str(e)
            continue
        assert sorted(g.nodes) == list(range(n)) and nx.number_of_selfloops(g) == 0 and nx.is_connected(g)
    with pytest.raises(TopologyError, match="degenerate"):
        build_graph(name, fam.min_n - 1, seed=1, params=params)


# ---- spellings -----------------------------------------------------------------------


@pytest.mark.parametrize("text,n,params,expected", [
    ("mesh,7", None, None, ("mesh", 7, {})),
    ("circulant:2,3", 9, None, ("circulant", 9, {"jumps": (2, 3)})),
    ("circulant:jumps=2,3,n=9", None, None, ("circulant", 9, {"jumps": (2, 3)})),
    ("er:p=0.2,20", None, None, ("er", 20, {"p": 0.2})),
    ("er", 20, {"p": "0.2"}, ("er", 20, {"p": 0.2})),
    ("ER:p=0.2", 20, {"p": 0.2}, ("er", 20, {"p": 0.2})),
    ("grid:rows=3,wrap=1", 12, None, ("grid", 12, {"rows": 3, "wrap": True})),
    ("tree", 7, None, ("tree", 7, {"r": 2})),
    ("ws:k=6", 20, {"p": "0.25"}, ("ws", 20, {"k": 6, "p": 0.25})),
])
def test_spellings(text, n, params, expected):
    assert parse_topology_params(text, n, params) == expected


@pytest.mark.parametrize("text,n,params,why", [
    ("er:p=0.2,20", 21, None, "conflicting sizes"),
    ("er:p=0.2", 20, {"p": 0.3}, "given twice"),
    ("er", 20, None, "p is required"),
    ("er:q=1", 20, None, "unknown parameter 'q'"),
    ("mesh:3,4", None, None, "no bare values"),
    ("grid:rows=x", 12, None, "must be an integer"),
    ("circulant:2,a", 9, None, "list of integers"),
    ("torus", 9, None, "unknown topology"),
])
def test_bad_spellings(text, n, params, why):
    with pytest.raises(TopologyError, match=why):
        parse_topology_params(text, n, params)


def test_old_parse_topology_still_gives_name_and_size():
    assert parse_topology("mesh,7") == ("mesh", 7)
    assert parse_topology("circulant:2,3", 9) == ("circulant", 9)


# ---- file import ---------------------------------------------------------------------


def test_edge_list_round_trip_relabels_in_numeric_order(tmp_path):
    p = nx.petersen_graph()
    shift = {v: 10 + 3 * v for v in p.nodes}  # labels 10..37, not contiguous, written out of order
    lines = ["# petersen, shifted", ""] + [f"{shift[b]} {shift[a]}" for a, b in reversed(list(p.edges))]
    path = tmp_path / "petersen.edges"
    path.write_text("\n".join(lines) + "\n")
    g = read_graph_file(path)
    assert same(g, p)  # numeric order: 10 < 13 < ... so 10+3v -> v
    name, n, params = parse_topology_params(f"file:{path}")
    assert (name, n) == ("file", 10) and params == {"path": str(path.resolve())}
    assert same(build_graph(name, n, params=params), p)


def test_graphml_round_trip_with_string_labels(tmp_path):
    g = nx.relabel_nodes(nx.cycle_graph(12), {i: f"node-{i:02d}" for i in range(12)})
    path = tmp_path / "ring.graphml"
    nx.write_graphml(g, path)
    back = read_graph_file(path)
    assert same(back, nx.cycle_graph(12))  # "node-00" < "node-01" < ... as strings


def test_graphml_directed_is_read_undirected(tmp_path):
    d = nx.DiGraph([(0, 1), (1, 0), (1, 2)])
    path = tmp_path / "d.graphml"
    nx.write_graphml(d, path)
    assert same(read_graph_file(path), nx.path_graph(3))


def test_file_errors(tmp_path):
    loop = tmp_path / "loop.txt"
    loop.write_text("0 1\n1 1\n")
    with pytest.raises(TopologyError, match="self-loop"):
        read_graph_file(loop)
    two = tmp_path / "two.txt"
    two.write_text("0 1\n2 3\n")
    with pytest.raises(TopologyError, match="not connected"):
        build_graph("file", 4, params={"path": str(two)})
    assert build_graph("file", 4, params={"path": str(two)}, allow_disconnected=True).number_of_edges() == 2
    with pytest.raises(TopologyError, match="conflicting sizes"):
        parse_topology_params(f"file:{two}", 5)
    with pytest.raises(TopologyError, match="cannot read"):
        parse_topology_params(f"file:{tmp_path / 'missing.txt'}")
    bad = tmp_path / "bad.graphml"
    bad.write_text("<graphml><graph")
    with pytest.raises(TopologyError, match="cannot parse"):
        read_graph_file(bad)


# ---- RunSpec ------------------------------------------------------------------------


def test_runspec_params_round_trip(tmp_path):
    spec = RunSpec.parse("circulant:2,3", 9, seed=4)
    assert spec.params == (("jumps", (2, 3)),)
    data = json.loads(spec.to_json())
    assert data["params"] == {"jumps": [2, 3]} and data["allow_disconnected"] is False
    spec.write(tmp_path / "spec.json")
    assert RunSpec.load(tmp_path / "spec.json") == spec
    assert same(spec.graph(), starfish_graph(9))
    assert spec.name == "circulant-9" and spec.label == "circulant-9 jumps=2,3"


def test_runspec_accepts_mappings_and_fills_defaults():
    a = RunSpec("ws", 20, params={"p": "0.3"}, seed=1)
    b = RunSpec("ws", 20, params=(("k", 4), ("p", 0.3)), seed=1)
    assert a == b and dict(a.params) == {"k": 4, "p": 0.3}
    assert same(a.graph(), ws_graph(20, seed=1, k=4, p=0.3))


def test_old_spec_json_still_loads(tmp_path):
    old = {"topology": "mesh", "n": 5, "protocol": "v1", "seed": None, "port": 7000,
           "options": {"idle": 2.0, "link_deadline": 60.0, "max_runtime": 900.0}}
    (tmp_path / "spec.json").write_text(json.dumps(old))
    spec = RunSpec.load(tmp_path / "spec.json")
    assert (spec.topology, spec.n, spec.protocol) == ("mesh", 5, "v1")
    assert spec.params == () and spec.allow_disconnected is False and spec.options.link_deadline == 60.0
    assert spec.seed is None  # deterministic family, deterministic protocol: no seed drawn


def test_random_family_without_seed_draws_and_records_one(tmp_path):
    spec = RunSpec.parse("er:p=0.5", 12)
    assert isinstance(spec.seed, int)
    spec.write(tmp_path / "spec.json")
    again = RunSpec.load(tmp_path / "spec.json")
    assert same(again.graph(), spec.graph())


def test_runspec_rejects_unknown_parameters_and_topologies():
    with pytest.raises(SpecError, match="unknown parameter fanout.*topology mesh takes none.*protocol v1 takes none"):
        RunSpec("mesh", 5, params={"fanout": 2})
    with pytest.raises(TopologyError, match="unknown parameter"):
        RunSpec.parse("mesh", 5, params={"fanout": 2})
    with pytest.raises(SpecError, match="unknown topology"):
        RunSpec("torus", 9)
    with pytest.raises(SpecError, match="malformed spec"):
        RunSpec.from_dict({"topology": "er", "n": 5, "params": {"p": "x"}})


def test_runspec_allow_disconnected():
    with pytest.raises(TopologyError, match="not connected"):
        RunSpec.parse("er:p=0.02", 30, seed=1).graph()
    spec = RunSpec.parse("er:p=0.02", 30, seed=1, allow_disconnected=True)
    assert not nx.is_connected(spec.graph())
    assert RunSpec.from_dict(json.loads(spec.to_json())) == spec


def test_a_drawn_seed_gives_a_connected_graph_when_one_is_asked_for():
    # er-12 with p=0.3 is disconnected for about one seed in four: a drawn seed must not be one.
    for _ in range(40):
        spec = RunSpec.parse("er:p=0.3", 12)
        assert nx.is_connected(spec.graph())
    # A seed the user gave is never replaced.
    bad = next(s for s in range(1000) if not nx.is_connected(nx.gnp_random_graph(12, 0.3, seed=s)))
    spec = RunSpec.parse("er:p=0.3", 12, seed=bad, allow_disconnected=True)
    assert spec.seed == bad
