"""Real networks through the CLI: listing, prediction, and Abilene run locally with propagation delays."""

import json
from pathlib import Path

import networkx as nx
import pytest

from generator.networks import link_latencies
from generator.predict import predict
from generator.spec import RunSpec
from testbed.cli import main

# Timestamps in the event logs are rounded to the microsecond; two of them are compared.
ROUNDING = 2e-6


def test_topologies_lists_the_networks(capsys):
    assert main(["topologies", "--zoo"]) == 0
    out = capsys.readouterr().out
    assert "Internet Topology Zoo (203 networks" in out
    assert any(line.split() == ["Abilene", "11", "nodes", "14", "links"] for line in out.splitlines())
    assert main(["topologies", "--sndlib"]) == 0
    assert any(line.split() == ["polska", "12", "nodes", "18", "links"] for line in capsys.readouterr().out.splitlines())
    assert main(["topologies"]) == 0
    out = capsys.readouterr().out
    assert "p2p topologies --zoo" in out and "zoo:NAME" in out and "sndlib:NAME" in out


def test_predict_and_its_errors(tmp_path, capsys):
    assert main(["predict", "-t", "zoo:Abilene"]) == 0
    out = capsys.readouterr().out
    assert out.startswith("zoo-11 Abilene (v1): 11 peers, 14 links\n")
    assert f"deliveries: {predict(RunSpec.parse('zoo:Abilene').graph()).deliveries:,}" in out
    assert main(["predict", "-t", "zoo:Abilene", "-n", "12"]) == 2
    err = capsys.readouterr().err
    assert err == "p2p: error: conflicting sizes: 'zoo:Abilene' has 11 peers, not -n 12\n"
    assert main(["run", "-t", "mesh", "--latency-from", "distance", "--backend", "local", "--out", str(tmp_path)]) == 2
    assert "link 0-1 of mesh-5 has no length" in capsys.readouterr().err
    assert list(tmp_path.iterdir()) == []  # refused before any run directory


def events(log_dir: Path, p: int) -> list[dict]:
    return [json.loads(line) for line in (log_dir / f"{p}.events.jsonl").read_text().splitlines()]


@pytest.mark.slow
def test_abilene_with_distance_latencies_is_exact_and_no_message_beats_light(tmp_path, capsys):
    code = main(["run", "-t", "zoo:Abilene", "--latency-from", "distance", "--backend", "local", "--out",
                 str(tmp_path), "--no-plots", "--peer-option", "arrivals=1"])
    assert code == 0
    run_dir = (tmp_path / "latest").resolve()
    spec = RunSpec.load(run_dir / "spec.json")
    assert spec.options.latency_from == "distance" and spec.topology_params() == {"name": "Abilene"}
    graph = spec.graph()
    assert (graph.number_of_nodes(), graph.number_of_edges()) == (11, 14)
    prediction = predict(graph, "zoo")
    summary = json.loads((run_dir / "summary.json").read_text())
    assert (summary["deliveries"], summary["bytes"]) == (prediction.deliveries, prediction.bytes)
    assert summary["verdict"] == "OK"

    # Propagation: a message of author a reaches peer p no earlier than the lightest path's
    # delay after a authored it (the "authored" event is written before its frames go out).
    for (u, v), delay in link_latencies(graph).items():
        graph.edges[u, v]["delay"] = delay
    log_dir = run_dir / "logs"
    logs = {p: events(log_dir, p) for p in graph}
    authored = {p: next(e["t"] for e in logs[p] if e["ev"] == "authored") for p in graph}
    margins = []
    for p in graph:
        firsts = {e["author"]: e["t"] for e in logs[p] if e["ev"] == "first"}
        assert set(firsts) == set(graph) - {p}
        light = nx.single_source_dijkstra_path_length(graph, p, weight="delay")  # undirected: a -> p = p -> a
        margins.extend(firsts[a] - authored[a] - light[a] for a in firsts)
    assert len(margins) == 11 * 10
    assert min(margins) >= -ROUNDING, f"a message arrived {-min(margins) * 1e3:.3f} ms before light could"
