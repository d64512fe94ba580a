"""Predictors of the non-v1 protocols, checked against independent references and an
event simulation of the peers' own protocol code under chosen link delays."""

import heapq
import random

import networkx as nx
import pytest

from generator.errors import P2PError, SpecError
from generator.expect import expect_for
from generator.predict import Prediction, PredictionTooLarge, predict
from generator.protocol_predict import PREDICTORS, predict_protocol
from generator.spec import RunSpec
from peer.protocols import PROTOCOLS
from peer.wire import encode_frame, encode_payload, parse_payload

GRAPHS = {
    "cycle5": nx.cycle_graph(5),
    "mesh5": nx.complete_graph(5),
    "starfish7": nx.circulant_graph(7, [2, 3]),
    "petersen": nx.petersen_graph(),
    "grid12": nx.convert_node_labels_to_integers(nx.grid_2d_graph(3, 4)),
    "er": nx.gnp_random_graph(11, 0.4, seed=3),
}


def simulate(graph, protocol, delay, seed=None, **params):
    """Event simulation: every frame u->v arrives after delay(u, v, hops); returns {(u, v): [frames, bytes]}."""
    n = graph.number_of_nodes()
    protos = {v: PROTOCOLS[protocol](v, list(graph.neighbors(v)), n, seed, **params) for v in graph.nodes}
    queue, seq, flows = [], 0, {}
    for a in graph.nodes:
        payload, targets = protos[a].author()
        for t in targets:
            heapq.heappush(queue, (delay(a, t, [a]), seq, a, t, payload))
            seq += 1
    while queue:
        now, _, u, v, payload = heapq.heappop(queue)
        f = flows.setdefault((u, v), [0, 0])
        f[0] += 1
        f[1] += len(encode_frame(payload))
        author, hops, _ = parse_payload(payload, n)
        assert hops[-1] == u and (v not in hops or protos[v].accepts_own_id)
        fwd, targets = protos[v].receive(author, hops, payload, True)
        for t in targets:
            heapq.heappush(queue, (now + delay(v, t, hops + [v]), seq, v, t, fwd))
            seq += 1
    return flows


def totals(flows):
    return sum(f[0] for f in flows.values()), sum(f[1] for f in flows.values())


def as_flows(p: Prediction):
    return {e: [f.frames, f.bytes] for e, f in p.per_edge.items() if f.frames}


def spec_for(protocol, n, seed=None, **params):
    return RunSpec("mesh", n, protocol=protocol, seed=seed, params=params)


# ---- ttl ----------------------------------------------------------------------------


@pytest.mark.parametrize("name", GRAPHS)
@pytest.mark.parametrize("ttl", [1, 2, 3, 5])
def test_ttl_counts_simple_paths_up_to_ttl_links(name, ttl):
    g = GRAPHS[name]
    deliveries = nbytes = 0
    for a in g.nodes:
        for b in g.nodes:
            if a != b:
                for path in nx.all_simple_paths(g, a, b, cutoff=ttl):
                    deliveries += 1
                    nbytes += len(encode_frame(encode_payload(a, path[:-1])))
    pp = predict_protocol(g, spec_for("ttl", g.number_of_nodes(), ttl=ttl))
    assert pp.exact and (pp.deliveries, pp.bytes) == (deliveries, nbytes)
    sim = simulate(g, "ttl", lambda u, v, h: random.random(), ttl=ttl)
    assert sim == as_flows(pp.detail)


def test_ttl_of_n_minus_1_is_v1():
    g = GRAPHS["petersen"]
    assert predict_protocol(g, spec_for("ttl", 10, ttl=9)).detail == predict(g)


# ---- gossip -------------------------------------------------------------------------


@pytest.mark.parametrize("name", GRAPHS)
@pytest.mark.parametrize("fanout", [1, 2, 3])
def test_gossip_prediction_replays_any_arrival_order(name, fanout):
    g = GRAPHS[name]
    pp = predict_protocol(g, spec_for("gossip", g.number_of_nodes(), seed=11, fanout=fanout))
    assert pp.exact
    rng = random.Random(fanout)
    for _ in range(3):
        sim = simulate(g, "gossip", lambda u, v, h: rng.random(), seed=11, fanout=fanout)
        assert sim == as_flows(pp.detail)


def test_gossip_with_a_fanout_above_every_degree_is_v1():
    g = GRAPHS["grid12"]
    assert predict_protocol(g, spec_for("gossip", 12, seed=1, fanout=4)).detail == predict(g)


def test_gossip_seed_changes_the_prediction():
    g = GRAPHS["er"]
    flows = [predict_protocol(g, spec_for("gossip", 11, seed=s, fanout=2)).detail.per_edge for s in range(4)]
    assert len({tuple(sorted(f.items())) for f in flows}) == 4


# ---- flood --------------------------------------------------------------------------


@pytest.mark.parametrize("g,expected", [
    (nx.cycle_graph(5), 30), (nx.complete_graph(5), 80), (nx.circulant_graph(5, [2, 3]), 30),
    (nx.petersen_graph(), 210), (nx.circulant_graph(9, [2, 3]), 252),
])
def test_flood_deliveries_are_exact(g, expected):
    n, e = g.number_of_nodes(), g.number_of_edges()
    pp = predict_protocol(g, spec_for("flood", n))
    assert pp.deliveries == expected == n * (2 * e - n + 1)
    assert not pp.exact and pp.bytes is None and pp.per_peer_frames is None


@pytest.mark.parametrize("name", GRAPHS)
def test_flood_deliveries_do_not_depend_on_timing(name):
    g = GRAPHS[name]
    expected = predict_protocol(g, spec_for("flood", g.number_of_nodes())).deliveries
    trees = {a: set(nx.dfs_edges(g, a)) for a in g.nodes}

    def dfs_delay(u, v, hops):  # first copies along depth-first trees
        return 0.001 if (u, v) in trees[hops[0]] else 1000.0

    rng = random.Random(7)
    delays = [lambda u, v, h: 1.0, dfs_delay] + [lambda u, v, h: rng.expovariate(1.0)] * 5
    byte_totals = set()
    for delay in delays:
        deliveries, nbytes = totals(simulate(g, "flood", delay))
        assert deliveries == expected
        byte_totals.add(nbytes)
    if not nx.is_forest(g):
        assert len(byte_totals) > 1  # bytes do depend on which copy arrives first


def test_flood_on_a_tree_is_exact_and_equals_v1():
    for g in (nx.path_graph(6), nx.star_graph(5), nx.full_rary_tree(3, 13)):
        pp = predict_protocol(g, spec_for("flood", g.number_of_nodes()))
        assert pp.exact and pp.detail == predict(g) and pp.deliveries == g.number_of_nodes() * (g.number_of_nodes() - 1)
        assert totals(simulate(g, "flood", lambda u, v, h: random.random())) == (pp.deliveries, pp.bytes)


def test_flood_on_a_disconnected_graph_sums_components():
    g = nx.disjoint_union(nx.complete_graph(4), nx.cycle_graph(3))
    assert predict_protocol(g, spec_for("flood", 7)).deliveries == 4 * 9 + 3 * 4


# ---- dispatch and the CLI -------------------------------------------------------------


def test_v1_dispatch_is_the_v1_predictor():
    g = GRAPHS["starfish7"]
    pp = predict_protocol(g, spec_for("v1", 7))
    assert pp.exact and pp.detail == predict(g) and pp.per_peer_frames == {
        p: f.frames for p, f in predict(g).per_peer_received().items()}


def test_gossip_without_seed_is_not_predicted():
    spec = RunSpec("mesh", 5, protocol="gossip", seed=1)
    unseeded = RunSpec.__new__(RunSpec)
    object.__setattr__(unseeded, "__dict__", {**spec.__dict__, "seed": None})
    pp = predict_protocol(nx.complete_graph(5), unseeded)
    assert pp.deliveries is None and not pp.exact and pp.upper_bound == 5 * (2 + 4 + 8 + 16)


def test_expect_for_gives_peers_expectations_only_when_exact():
    said: list[str] = []
    assert expect_for(RunSpec.parse("mesh", 5, protocol="flood"), 10**6, False, said.append) is None
    assert said and "peers exit on idle" in said[-1]
    tree = expect_for(RunSpec.parse("star", 5, protocol="flood"), 10**6, False, said.append)
    assert isinstance(tree, Prediction) and tree.deliveries == 20
    ttl = expect_for(RunSpec.parse("mesh", 6, protocol="ttl", params={"ttl": 2}), 10**6, False, said.append)
    assert ttl.deliveries == 6 * (5 + 20)
    gossip = expect_for(RunSpec.parse("mesh", 6, protocol="gossip", seed=2), 10**6, False, said.append)
    assert isinstance(gossip, Prediction)


def test_expect_for_refuses_runaways():
    said: list[str] = []
    with pytest.raises(P2PError, match="refusing"):
        expect_for(RunSpec.parse("mesh", 12, protocol="ttl", params={"ttl": 8}), 100_000, False, said.append)
    assert expect_for(RunSpec.parse("mesh", 12, protocol="ttl", params={"ttl": 8}), 100_000, True, said.append) is None
    assert "(--force)" in said[-1]
    with pytest.raises(P2PError, match="up to 60,840 deliveries"):
        expect_for(RunSpec.parse("mesh", 40, protocol="flood"), 1_000, False, said.append)


def test_expect_for_v1_refuses_runaways_and_forces():
    said: list[str] = []
    with pytest.raises(P2PError, match="refusing to run"):
        expect_for(RunSpec.parse("mesh", 9), 1_000, False, said.append)
    assert expect_for(RunSpec.parse("mesh", 5), 1_000, False, said.append).deliveries == predict(
        nx.complete_graph(5)).deliveries


def test_registry_covers_exactly_every_protocol():
    assert set(PREDICTORS) == set(PROTOCOLS)


def test_unknown_protocol_is_a_spec_error_naming_the_known_ones():
    spec = RunSpec("mesh", 5)
    unknown = RunSpec.__new__(RunSpec)
    object.__setattr__(unknown, "__dict__", {**spec.__dict__, "protocol": "telepathy"})
    with pytest.raises(SpecError, match="telepathy") as info:
        predict_protocol(nx.complete_graph(5), unknown)
    assert isinstance(info.value, P2PError)
    assert all(name in str(info.value) for name in PROTOCOLS)


def test_prediction_too_large_for_gossip():
    with pytest.raises(PredictionTooLarge):
        predict_protocol(nx.complete_graph(12), spec_for("gossip", 12, seed=1, fanout=3), cap=1000)
