"""Swarm stack rendering: parse the YAML and check services, networks, labels and peer arguments (no Docker)."""

from __future__ import annotations

import itertools

import networkx as nx
import pytest
import yaml

from generator.predict import predict
from generator.render import PeerService, RenderError, service_name
from generator.render_stack import (
    COLLECTOR_PORT,
    COLLECTOR_SERVICE,
    collector_address,
    default_stack_path,
    render_stack,
    size_bytes,
    stack_name,
)
from generator.spec import RunSpec
from testbed.base import prepare_run

Loader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
RUN = "mesh-5-20240101-000000-abcd"
STACK = stack_name(RUN)
LOG_DIR = "/srv/p2p/runs/mesh-5-20240101-000000-abcd/logs"


def peers_of(graph: nx.Graph, extra: tuple[str, ...] = ()) -> list[PeerService]:
    return [
        PeerService(
            id=p,
            neighbours=tuple(sorted(graph.neighbors(p))),
            command=("--id", str(p),
                     *(a for nb in sorted(graph.neighbors(p)) for a in ("-p", f"{nb}={service_name(nb)}:7000")),
                     "--upload", collector_address(), *extra),
        )
        for p in sorted(graph.nodes)
    ]


def render(graph=None, **kw) -> dict:
    graph = nx.complete_graph(5) if graph is None else graph
    text = render_stack(kw.pop("stack", STACK), RUN, peers_of(graph), kw.pop("log_dir", LOG_DIR), (10001, 10001),
                        collector_node=kw.pop("collector_node", "nodeabc123"), **kw)
    return yaml.load(text, Loader=Loader)


def peer_services(doc: dict) -> dict[int, dict]:
    return {int(name.split("-")[1]): svc for name, svc in doc["services"].items() if name.startswith("peer-")}


def test_services_one_per_peer_plus_collector():
    doc = render()
    assert set(doc["services"]) == {COLLECTOR_SERVICE, *(f"peer-{i}" for i in range(5))}
    assert str(doc["version"]).startswith("3.")


@pytest.mark.parametrize("mode", ["dnsrr", "vip"])
def test_every_peer_is_a_hardened_single_replica_never_restarted(mode):
    doc = render(endpoint_mode=mode, mem_limit="32m", pids_limit=50, tmpfs_size="16m")
    for _p, svc in peer_services(doc).items():
        assert svc["image"] == "p2p-peer:latest"
        assert svc["user"] == "10001:10001"
        assert svc["read_only"] is True and svc["init"] is True and svc["cap_drop"] == ["ALL"]
        assert "security_opt" not in svc  # unsupported by swarm services
        assert svc["environment"] == {"RES_OPTIONS": "timeout:1 attempts:1"}  # fast failure for names not up yet
        dep = svc["deploy"]
        assert dep["mode"] == "replicated" and dep["replicas"] == 1
        assert dep["restart_policy"] == {"condition": "none"}
        assert dep["endpoint_mode"] == mode
        assert dep["resources"]["limits"] == {"memory": "32m", "pids": 50}
        assert svc["volumes"] == [{"type": "tmpfs", "target": "/logs", "tmpfs": {"size": 16 << 20}}]
        assert "placement" not in dep  # swarm spreads the peers over the nodes


def test_labels_on_services_and_containers():
    doc = render()
    for p, svc in peer_services(doc).items():
        want = {"p2p.run": RUN, "p2p.peer": str(p)}
        assert svc["labels"] == want  # containers
        assert svc["deploy"]["labels"] == want  # services
    col = doc["services"][COLLECTOR_SERVICE]
    assert col["labels"] == col["deploy"]["labels"] == {"p2p.run": RUN, "p2p.role": "collector"}


def test_network_is_an_attachable_labelled_overlay():
    doc = render()
    assert doc["networks"] == {
        "net0": {"driver": "overlay", "attachable": True, "internal": True, "labels": {"p2p.run": RUN}}
    }
    assert all(svc["networks"] == ["net0"] for svc in doc["services"].values())
    assert render(internal=False)["networks"]["net0"]["internal"] is False


def test_collector_pinned_to_the_runner_node_with_the_bind_mount():
    doc = render()
    col = doc["services"][COLLECTOR_SERVICE]
    assert col["entrypoint"] == ["python3", "-m", "peer.collector"]
    assert col["command"][:6] == ["--listen", f"0.0.0.0:{COLLECTOR_PORT}", "--out", "/logs", "--peers", "5"]
    assert col["volumes"] == [{"type": "bind", "source": LOG_DIR, "target": "/logs"}]
    assert col["deploy"]["placement"]["constraints"] == ["node.id == nodeabc123"]
    assert col["deploy"]["restart_policy"] == {"condition": "none"}
    assert col["read_only"] is True and col["cap_drop"] == ["ALL"]
    no_node = render(collector_node=None, collector_timeout=930)["services"][COLLECTOR_SERVICE]
    assert no_node["deploy"]["placement"]["constraints"] == ["node.role == manager"]
    assert no_node["command"][-2:] == ["--timeout", "930"]


def test_neighbour_arguments_address_service_names():
    graph = nx.cycle_graph(6)
    doc = render(graph)
    for p, svc in peer_services(doc).items():
        cmd = svc["command"]
        nbrs = [cmd[i + 1] for i, a in enumerate(cmd) if a == "-p"]
        assert nbrs == [f"{q}=peer-{q}:7000" for q in sorted(graph.neighbors(p))]
        assert cmd[cmd.index("--upload") + 1] == "collector:7999"


def test_runner_commands_from_a_plan(tmp_path):
    """SwarmRunner.services: RunPlan.peer_args + --listen + --upload (no Docker client needed)."""
    from testbed.swarm import SwarmRunner

    spec = RunSpec.parse("mesh", 5)
    pred = predict(spec.graph(), spec.topology)
    plan = prepare_run(spec, tmp_path / "runs", pred, run_id=RUN)
    runner = SwarmRunner(None, stack_root=None)
    text = runner.render(plan, STACK, "node1", (10001, 10001))
    doc = yaml.load(text, Loader=Loader)
    for p, svc in peer_services(doc).items():
        cmd = svc["command"]
        assert cmd[:2] == ["--listen", "0.0.0.0:7000"]
        assert cmd[cmd.index("--id") + 1] == str(p)
        assert cmd[cmd.index("--log-dir") + 1] == "/logs"
        assert cmd[cmd.index("--expect") + 1] == str(pred.received(p).frames)
        assert cmd[cmd.index("--upload") + 1] == "collector:7999"
        nbrs = [cmd[i + 1] for i, a in enumerate(cmd) if a == "-p"]
        assert nbrs == [f"{q}=peer-{q}:7000" for q in range(5) if q != p]
    col = doc["services"][COLLECTOR_SERVICE]
    assert col["volumes"][0]["source"] == str(plan.log_dir.resolve())
    assert col["command"][col["command"].index("--timeout") + 1] == "930"  # max_runtime 900 + margin


def test_large_runs_spread_over_several_overlays():
    graph = nx.cycle_graph(30)
    doc = render(graph, max_per_network=10)
    nets = doc["networks"]
    assert len(nets) >= 3
    assert all(n["driver"] == "overlay" and n["labels"] == {"p2p.run": RUN} for n in nets.values())
    members: dict[str, int] = {}
    svcs = peer_services(doc)
    for svc in svcs.values():
        for net in svc["networks"]:
            members[net] = members.get(net, 0) + 1
    assert max(members.values()) <= 10
    for u, v in graph.edges:
        assert set(svcs[u]["networks"]) & set(svcs[v]["networks"]), (u, v)
    assert sorted(doc["services"][COLLECTOR_SERVICE]["networks"]) == sorted(nets)


def test_dollar_signs_escaped_for_interpolation():
    graph = nx.path_graph(2)
    text = render_stack(STACK, RUN, peers_of(graph, extra=("--note", "$HOME")), LOG_DIR, (1, 1))
    assert "$$HOME" in text


@pytest.mark.parametrize(
    "kw, match",
    [
        ({"stack": "Bad Name"}, "stack name"),
        ({"log_dir": "runs/x/logs"}, "absolute"),
        ({"endpoint_mode": "vipx"}, "endpoint mode"),
        ({"tmpfs_size": "lots"}, "size"),
    ],
)
def test_render_errors(kw, match):
    with pytest.raises(RenderError, match=match):
        render(**kw)


def test_no_peers_and_duplicates_refused():
    with pytest.raises(RenderError, match="no peers"):
        render_stack(STACK, RUN, [], LOG_DIR, (1, 1))
    p = PeerService(id=0, neighbours=(), command=())
    with pytest.raises(RenderError, match="duplicate"):
        render_stack(STACK, RUN, [p, p], LOG_DIR, (1, 1))


def test_stack_names_fit_service_names():
    assert stack_name("mesh-5-20240101-000000-abcd") == "p2p-mesh-5-20240101-000000-abcd"
    long = stack_name("er:p=0.2,seed=7-" + "x" * 80 + "-20240101")
    assert len(long) <= 40 and long.startswith("p2p-er-p-0-2")
    assert len(f"{long}_peer-99999") <= 63
    assert stack_name("a" * 100 + "1") != stack_name("a" * 100 + "2")
    for a, b in itertools.combinations(["T-X", "t-x"], 2):
        assert stack_name(a) == stack_name(b)  # normalised to lower case


def test_sizes_and_paths(tmp_path):
    assert size_bytes("64m") == 64 << 20 and size_bytes("512k") == 512 << 10 and size_bytes("1G") == 1 << 30
    assert size_bytes(123) == 123 and size_bytes("100") == 100
    assert default_stack_path(tmp_path, "mesh-5") == tmp_path / "compose" / "mesh-5.stack.yml"
