"""Every protocol in real runs on the local backend, against its predictor."""

import json
from collections import Counter
from pathlib import Path

import networkx as nx
import pytest

from generator.expect import expect_for
from generator.protocol_predict import predict_protocol
from generator.spec import PeerOptions, RunSpec
from testbed.base import Progress, prepare_run
from testbed.local import LocalRunner
from testbed.sweep import count_run

QUIET = Progress(interval=60)


@pytest.fixture(scope="module")
def petersen(tmp_path_factory) -> str:
    path = tmp_path_factory.mktemp("graphs") / "petersen.edges"
    path.write_text("".join(f"{a} {b}\n" for a, b in nx.petersen_graph().edges))
    return f"file:{path}"


def run(tmp_path, topology, n=None, protocol="v1", params=None, seed=None, idle=0.5):
    spec = RunSpec.parse(topology, n, protocol=protocol, params=params, seed=seed,
                         options=PeerOptions(idle=idle, link_deadline=20, max_runtime=60))
    prediction = expect_for(spec, 2_000_000, False, QUIET.message)  # the CLI's path: exact per-edge, or None
    plan = prepare_run(spec, tmp_path, prediction)
    result = LocalRunner().run(plan, QUIET)
    assert result.failed_peers == []
    return plan, spec, predict_protocol(spec.graph(), spec, family=spec.topology), count_run(plan.run_dir, spec.n)


def lines(log_dir: Path, n: int) -> dict[int, list[bytes]]:
    return {p: (log_dir / f"{p}.txt").read_bytes().splitlines() for p in range(n)}


def exit_reasons(log_dir: Path, n: int) -> set[str]:
    reasons = set()
    for p in range(n):
        for raw in (log_dir / f"{p}.events.jsonl").read_text().splitlines():
            rec = json.loads(raw)
            if rec["ev"] == "summary":
                reasons.add(rec["exit_reason"])
    return reasons


def per_peer(log_dir: Path, n: int) -> dict[int, int]:
    return {p: len(ls) for p, ls in lines(log_dir, n).items()}


@pytest.mark.parametrize("repeat", range(2))
@pytest.mark.parametrize("topology", ["cycle,5", "mesh,5", "starfish,5", "petersen", "circulant:1,3,n=8"])
def test_flood_makes_exactly_the_predicted_deliveries(tmp_path, petersen, topology, repeat):
    plan, spec, pp, got = run(tmp_path, petersen if topology == "petersen" else topology, protocol="flood")
    g = spec.graph()
    assert pp.deliveries == spec.n * (2 * g.number_of_edges() - spec.n + 1)
    assert got["deliveries"] == pp.deliveries
    assert got["coverage"] == 1.0 and got["log_problems"] == []
    for _p, ls in lines(plan.log_dir, spec.n).items():
        senders = Counter()
        for line in ls:
            msg = json.loads(line)
            senders[(msg["id"], msg["hops"][-1])] += 1
        assert max(senders.values()) == 1, "a peer forwards each author's message at most once"
    assert exit_reasons(plan.log_dir, spec.n) == {"idle"}  # no exact per-peer count: idle exit


@pytest.mark.parametrize("topology,n", [("star", 6), ("tree", 7), ("line", 5)])
def test_flood_on_a_tree_is_exact(tmp_path, topology, n):
    plan, spec, pp, got = run(tmp_path, topology, n, protocol="flood")
    assert pp.exact and pp.deliveries == n * (n - 1)
    assert (got["deliveries"], got["bytes"]) == (pp.deliveries, pp.bytes)
    assert per_peer(plan.log_dir, n) == pp.per_peer_frames
    assert exit_reasons(plan.log_dir, n) == {"expected"}


@pytest.mark.parametrize("topology,n,ttl,coverage", [
    ("mesh", 5, 2, 1.0), ("cycle", 6, 2, 0.8), ("petersen", None, 2, 1.0), ("starfish", 9, 3, 1.0),
    ("line", 6, 1, 10 / 30),
])
def test_ttl_is_exact(tmp_path, petersen, topology, n, ttl, coverage):
    plan, spec, pp, got = run(tmp_path, petersen if topology == "petersen" else topology, n, protocol="ttl",
                              params={"ttl": ttl})
    assert pp.exact
    assert (got["deliveries"], got["bytes"]) == (pp.deliveries, pp.bytes)
    assert per_peer(plan.log_dir, spec.n) == pp.per_peer_frames
    assert got["coverage"] == pytest.approx(coverage)
    assert exit_reasons(plan.log_dir, spec.n) == {"expected"}


@pytest.mark.parametrize("topology,n,fanout", [("mesh", 7, 2), ("petersen", None, 1), ("er:p=0.4", 10, 2)])
def test_gossip_replays_exactly_with_the_same_seed(tmp_path, petersen, topology, n, fanout):
    topo = petersen if topology == "petersen" else topology
    first = run(tmp_path / "a", topo, n, protocol="gossip", params={"fanout": fanout}, seed=21)
    second = run(tmp_path / "b", topo, n, protocol="gossip", params={"fanout": fanout}, seed=21)
    (plan1, spec, pp, got1), (plan2, _, _, got2) = first, second
    assert pp.exact
    assert (got1["deliveries"], got1["bytes"]) == (got2["deliveries"], got2["bytes"]) == (pp.deliveries, pp.bytes)
    logs1, logs2 = lines(plan1.log_dir, spec.n), lines(plan2.log_dir, spec.n)
    assert {p: Counter(ls) for p, ls in logs1.items()} == {p: Counter(ls) for p, ls in logs2.items()}
    assert per_peer(plan1.log_dir, spec.n) == pp.per_peer_frames
    assert got1["coverage"] == got2["coverage"] > 0
    assert exit_reasons(plan1.log_dir, spec.n) == {"expected"}


def test_gossip_with_another_seed_differs(tmp_path):
    _, spec, pp1, got1 = run(tmp_path / "a", "mesh", 7, protocol="gossip", seed=1)
    _, _, pp2, got2 = run(tmp_path / "b", "mesh", 7, protocol="gossip", seed=2)
    assert (got1["deliveries"], got1["bytes"]) == (pp1.deliveries, pp1.bytes)
    assert (got2["deliveries"], got2["bytes"]) == (pp2.deliveries, pp2.bytes)
    assert pp1.detail.per_edge != pp2.detail.per_edge
