"""Real networks (zoo:NAME, sndlib:NAME from topohub) and --latency-from distance."""

import math

import networkx as nx
import pytest
import topohub

from generator.errors import SpecError, TopologyError
from generator.networks import (
    FIBRE_KM_S,
    graph_from_node_link,
    great_circle_km,
    link_latencies,
    link_lengths,
    map_positions,
    network_graph,
    network_names,
)
from generator.spec import PeerOptions, RunSpec
from generator.topologies import build_graph, parse_topology_params


def topohub_graph(key: str) -> nx.Graph:
    return nx.node_link_graph(topohub.get(key), edges="edges")


# ---- the families ----------------------------------------------------------------


def test_abilene_is_topohubs_graph_relabelled_by_id_with_names_positions_and_lengths():
    g = build_graph("zoo", 11, params={"name": "Abilene"})
    raw = topohub_graph("topozoo/Abilene")
    assert (g.number_of_nodes(), g.number_of_edges()) == (11, 14)
    assert nx.is_isomorphic(g, raw)
    # Relabelled in the order of topohub's ids: node i is topohub's node "i", link for link.
    as_ids = {(min(int(u), int(v)), max(int(u), int(v))) for u, v in raw.edges}
    assert {(min(u, v), max(u, v)) for u, v in g.edges} == as_ids
    for node, attrs in raw.nodes(data=True):
        assert g.nodes[int(node)]["name"] == attrs["name"]
        assert g.nodes[int(node)]["pos"] == tuple(attrs["pos"])
    for u, v, attrs in raw.edges(data=True):
        assert g.edges[int(u), int(v)]["km"] == attrs["dist"]
    assert g.nodes[0]["name"] == "New York"


@pytest.mark.parametrize("family,collection", [("zoo", "topozoo"), ("sndlib", "sndlib")])
def test_every_network_has_topohubs_size_and_positions(family, collection):
    names = network_names(family)
    assert len(names) >= 20
    for name in names:
        g = network_graph(family, name)
        raw = nx.Graph(topohub_graph(f"{collection}/{name}"))
        raw.remove_edges_from(list(nx.selfloop_edges(raw)))
        assert (g.number_of_nodes(), g.number_of_edges()) == (raw.number_of_nodes(), raw.number_of_edges()), name
        assert sorted(g.nodes) == list(range(g.number_of_nodes()))
        assert map_positions(g) is not None, name


def test_spellings_and_sizes():
    assert parse_topology_params("zoo:Abilene") == ("zoo", 11, {"name": "Abilene"})
    assert parse_topology_params("zoo:abilene", 11) == ("zoo", 11, {"name": "Abilene"})  # any case, stored as topohub's
    assert parse_topology_params("sndlib:Polska") == ("sndlib", 12, {"name": "polska"})
    assert parse_topology_params("zoo", params={"name": "ABILENE"})[1] == 11
    spec = RunSpec.parse("zoo:Abilene")
    assert (spec.n, spec.label, spec.topology_params()) == (11, "zoo-11 Abilene", {"name": "Abilene"})
    assert RunSpec.from_dict(spec.to_dict()) == spec


@pytest.mark.parametrize("text,n,message", [
    ("zoo:Abilene", 12, "conflicting sizes: 'zoo:Abilene' has 11 peers, not -n 12"),
    ("zoo:Abilen", None, r"no Internet Topology Zoo network 'Abilen'; did you mean Abilene"),
    ("sndlib:nowhere", None, r"no SNDlib network 'nowhere'.*p2p topologies --sndlib"),
    ("zoo:", None, "zoo: parameter name must be a name"),
    ("zoo", None, "zoo: parameter name is required"),
])
def test_errors(text, n, message):
    with pytest.raises(TopologyError, match=message):
        parse_topology_params(text, n)


def test_a_disconnected_network_is_refused_unless_allowed(monkeypatch):
    two = nx.Graph([(0, 1), (2, 3)])
    monkeypatch.setattr("generator.topologies.network_graph", lambda family, name: two.copy())
    with pytest.raises(TopologyError, match=r"zoo-4 \(name=Abilene\) is not connected \(2 components\)"):
        build_graph("zoo", 4, params={"name": "Abilene"})
    assert build_graph("zoo", 4, params={"name": "Abilene"}, allow_disconnected=True).number_of_edges() == 2


def test_node_link_data_is_collapsed_to_a_simple_graph_on_0_to_n_minus_1():
    data = {
        "directed": True, "multigraph": True,
        "nodes": [{"id": "10", "name": "B", "pos": [1.0, 2.0]}, {"id": "2", "name": "A"}, {"id": "7"}],
        "edges": [{"source": "10", "target": "2", "dist": 30.0}, {"source": "2", "target": "10", "dist": 20.0},
                  {"source": "2", "target": "10"}, {"source": "7", "target": "7", "dist": 1.0},
                  {"source": "7", "target": "2"}],
    }
    g = graph_from_node_link(data, "test")
    assert type(g) is nx.Graph and sorted(g.nodes) == [0, 1, 2]  # ids 2, 7, 10 in numeric order
    assert [g.nodes[i].get("name") for i in range(3)] == ["A", "7", "B"]
    assert g.nodes[2]["pos"] == (1.0, 2.0) and "pos" not in g.nodes[0]
    assert sorted(g.edges) == [(0, 1), (0, 2)]  # parallel links collapsed, the self-loop dropped
    assert g.edges[0, 2]["km"] == 20.0  # the shortest of the parallel links
    assert "km" not in g.edges[0, 1]


# ---- lengths and latencies ---------------------------------------------------------


def test_great_circle_distances():
    assert great_circle_km((0.0, 0.0), (0.0, 0.0)) == 0.0
    # A quarter of a meridian, and New York - London (about 5,570 km).
    assert great_circle_km((0.0, 0.0), (0.0, 90.0)) == pytest.approx(math.pi / 2 * 6371.0)
    assert great_circle_km((-74.01, 40.71), (-0.13, 51.51)) == pytest.approx(5570, abs=15)


def test_latency_is_length_over_two_thirds_of_c():
    assert FIBRE_KM_S == pytest.approx(199_861.6, abs=0.1)
    g = build_graph("zoo", 11, params={"name": "Abilene"})
    delays = link_latencies(g, "zoo-11")
    assert len(delays) == 14
    for (u, v), delay in delays.items():
        assert delay == pytest.approx(g.edges[u, v]["km"] / (299_792.458 * 2 / 3), rel=1e-12)
    # Without lengths: the great-circle distance of the positions; without positions: an error.
    del g.edges[0, 1]["km"]
    assert link_lengths(g)[(0, 1)] == pytest.approx(great_circle_km(g.nodes[0]["pos"], g.nodes[1]["pos"]))
    with pytest.raises(TopologyError, match="link 0-1 of cycle-3 has no length and neither end has position"):
        link_lengths(nx.cycle_graph(3), "cycle-3")


def spec(topology="zoo:Abilene", **opts):
    return RunSpec.parse(topology, options=PeerOptions(**opts))


def test_latency_from_distance_gives_every_link_its_own_latency():
    s = spec(latency_from="distance", jitter=0.001)
    g = s.graph()
    shapes = s.options.shapes_on(g)
    delays = link_latencies(g)
    assert set(shapes) == set(delays) and len(shapes) == 14
    assert all(shapes[e].latency == delays[e] and shapes[e].jitter == 0.001 for e in shapes)
    assert s.options.edge_shapes() == {}  # --link-shape items only
    assert RunSpec.from_dict(s.to_dict()) == s and s.to_dict()["options"]["latency_from"] == "distance"
    assert "latency_from" not in spec().to_dict()["options"]  # spec.json of other runs unchanged


def test_a_link_shape_key_wins_over_the_distance_latency():
    s = spec(latency_from="distance", link_shapes=("0-1:loss=0.5", "1-10:latency=0.25"))
    shapes = s.options.shapes_on(s.graph())
    delays = link_latencies(s.graph())
    assert shapes[(0, 1)].latency == delays[(0, 1)] and shapes[(0, 1)].loss == 0.5
    assert shapes[(1, 10)].latency == 0.25
    assert shapes[(2, 9)].latency == delays[(2, 9)]


def test_latency_from_refusals():
    with pytest.raises(SpecError, match="--latency and --latency-from both given"):
        PeerOptions(latency=0.01, latency_from="distance")
    with pytest.raises(SpecError, match="--latency-from must be one of distance, got 'speed'"):
        PeerOptions(latency_from="speed")
    with pytest.raises(SpecError, match="link 0-1 of mesh-5 has no length"):
        spec("mesh", latency_from="distance").graph()


def test_peer_arguments_carry_each_neighbours_latency(tmp_path):
    from testbed.base import prepare_run

    s = spec(latency_from="distance")
    plan = prepare_run(s, tmp_path, None)
    delays = link_latencies(plan.graph)
    args = plan.peer_args(plan.peers[3], lambda nb: f"127.0.0.1:{7000 + nb}", "logs")
    shapes = [args[i + 1] for i, a in enumerate(args) if a == "--link-shape"]
    assert sorted(int(x.split(":")[0]) for x in shapes) == sorted(plan.graph.neighbors(3))
    for item in shapes:
        nb, _, text = item.partition(":")
        assert f"latency={delays[tuple(sorted((3, int(nb))))]!r}" in text


def test_map_positions_put_north_up_and_west_left():
    g = build_graph("zoo", 11, params={"name": "Abilene"})
    pos = map_positions(g)
    seattle, new_york, houston = (next(p for p in g if g.nodes[p]["name"] == c) for c in ("Seattle", "New York",
                                                                                          "Houston"))
    assert pos[seattle][0] < pos[houston][0] < pos[new_york][0]
    assert pos[seattle][1] > pos[houston][1]
    assert map_positions(nx.cycle_graph(3)) is None
