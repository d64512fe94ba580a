"""Compose rendering: parse the YAML and check what every service and network must carry (no Docker)."""

from __future__ import annotations

import os
from pathlib import Path

import networkx as nx
import pytest
import yaml

from generator.predict import predict
from generator.render import (
    MAX_PER_NETWORK,
    PeerService,
    RenderError,
    assign_networks,
    container_user,
    default_compose_path,
    project_name,
    render_compose,
    service_name,
    write_compose,
    write_env,
)
from generator.spec import RunSpec
from generator.topologies import build_graph
from testbed.base import prepare_run
from testbed.rendering import EXIT_SLOT, EXIT_SLOTS_FROM, exit_slots_span, render_plan, render_run

Loader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
HARDENING = {
    "read_only": True,
    "cap_drop": ["ALL"],
    "init": True,
    "restart": "no",
    "pull_policy": "never",
    "image": "p2p-peer:latest",
}


def load(text: str) -> dict:
    return yaml.load(text, Loader=Loader)


def opts(command: list[str], flag: str) -> list[str]:
    return [command[i + 1] for i, a in enumerate(command) if a == flag]


def plan_for(tmp_path: Path, topology: str, n: int, run_id: str = "r-test-1"):
    spec = RunSpec.parse(topology, n)
    pred = predict(spec.graph(), spec.topology)
    return prepare_run(spec, tmp_path / "runs", pred, run_id=run_id), pred


def simple_peers(graph: nx.Graph) -> list[PeerService]:
    return [
        PeerService(p, tuple(sorted(graph[p])), ("--id", str(p), *(f"-p={q}" for q in sorted(graph[p]))))
        for p in sorted(graph)
    ]


@pytest.mark.parametrize("topology,n", [("cycle", 5), ("mesh", 5), ("starfish", 5), ("cycle", 8), ("starfish", 9)])
def test_services_match_graph(tmp_path, topology, n):
    plan, pred = plan_for(tmp_path, topology, n)
    path = default_compose_path(tmp_path, plan.spec.name)
    doc = load(render_plan(plan, path, "p2p-test", user=(10001, 10001)))
    graph = build_graph(topology, n)
    assert doc["name"] == "p2p-test"
    assert set(doc["services"]) == {service_name(i) for i in range(n)}
    received = pred.per_peer_received()
    for i in range(n):
        cmd = doc["services"][service_name(i)]["command"]
        assert all(isinstance(a, str) for a in cmd)
        nbrs = dict(a.split("=", 1) for a in opts(cmd, "-p"))
        assert {int(k) for k in nbrs} == set(graph[i]), f"peer {i}"
        assert all(addr == f"peer-{k}:7000" for k, addr in nbrs.items())
        assert opts(cmd, "--id") == [str(i)] and opts(cmd, "--n") == [str(n)]
        assert opts(cmd, "--listen") == ["0.0.0.0:7000"]
        assert opts(cmd, "--log-dir") == ["/logs"]
        assert opts(cmd, "--expect") == [str(received[i].frames)]
    # Every edge appears from both ends, and nothing else does.
    edges = {frozenset((i, int(a.split("=")[0]))) for i in range(n)
             for a in opts(doc["services"][service_name(i)]["command"], "-p")}
    assert edges == {frozenset(e) for e in graph.edges}


def test_labels_and_hardening_everywhere(tmp_path):
    plan, _ = plan_for(tmp_path, "mesh", 5, run_id="mesh-5-abc")
    doc = load(render_plan(plan, default_compose_path(tmp_path, "mesh-5"), "p2p-mesh-5", user=(10001, 10001)))
    assert doc["networks"], "at least one network"
    for name, net in doc["networks"].items():
        assert net["labels"]["p2p.run"] == "mesh-5-abc", name
        assert net["driver"] == "bridge"
    assert not doc.get("volumes"), "the logs are a bind mount, no named volume"
    for name, svc in doc["services"].items():
        assert svc["labels"]["p2p.run"] == "mesh-5-abc"
        assert svc["labels"]["p2p.peer"] == name.removeprefix("peer-")
        for key, value in HARDENING.items():
            assert svc[key] == value, (name, key)
        assert svc["user"] == "10001:10001"
        assert "no-new-privileges:true" in svc["security_opt"]
        assert svc["mem_limit"] and int(svc["pids_limit"]) > 0
        assert "ports" not in svc and "expose" not in svc and "privileged" not in svc
        assert set(svc["networks"]) <= set(doc["networks"])


def test_bind_mount_is_relative_to_the_compose_file(tmp_path):
    plan, _ = plan_for(tmp_path, "cycle", 5, run_id="cycle-5-xyz")
    path = default_compose_path(tmp_path, "cycle-5")
    assert path == tmp_path / "compose" / "cycle-5.yml"
    doc = load(render_plan(plan, path, "p2p-cycle-5", user=(1000, 1000)))
    for svc in doc["services"].values():
        (mount,) = svc["volumes"]
        assert mount["type"] == "bind" and mount["target"] == "/logs"
        assert mount["source"] == "../runs/cycle-5-xyz/logs"
        assert (path.parent / mount["source"]).resolve() == plan.log_dir.resolve()
        assert svc["user"] == "1000:1000"
    # Rendered into the run directory itself (what the runner does), the mount is ./logs.
    doc = load(render_plan(plan, plan.run_dir / "compose.yml", "p2p-x", user=(1000, 1000)))
    assert doc["services"]["peer-0"]["volumes"][0]["source"] == "./logs"


def test_container_user():
    assert container_user(0, 0) == (10001, 10001)
    assert container_user(1000, 100) == (1000, 100)


@pytest.mark.parametrize("topology,n", [("cycle", 2500), ("starfish", 2500), ("cycle", 1001)])
def test_networks_split_above_1000_peers(topology, n):
    graph = build_graph(topology, n)
    doc = load(render_compose("p2p-big", "big-1", simple_peers(graph), "../runs/big-1/logs", (10001, 10001)))
    assert len(doc["services"]) == n
    assert len(doc["networks"]) > 1
    nets = {int(name.removeprefix("peer-")): set(svc["networks"]) for name, svc in doc["services"].items()}
    for u, v in graph.edges:
        assert nets[u] & nets[v], f"edge {u}-{v} shares no network"
    members: dict[str, int] = {}
    for joined in nets.values():
        assert joined <= set(doc["networks"])
        for net in joined:
            members[net] = members.get(net, 0) + 1
    assert max(members.values()) <= MAX_PER_NETWORK
    assert set(members) == set(doc["networks"])
    for net in doc["networks"].values():
        assert net["labels"]["p2p.run"] == "big-1"


def test_one_network_up_to_1000_peers():
    graph = build_graph("cycle", 1000)
    doc = load(render_compose("p2p-big", "big-2", simple_peers(graph), "logs", (10001, 10001)))
    assert list(doc["networks"]) == ["net0"]
    assert all(svc["networks"] == ["net0"] for svc in doc["services"].values())
    assert doc["services"]["peer-0"]["volumes"][0]["source"] == "./logs"


def test_assign_networks_small_limit_and_too_dense():
    graph = build_graph("cycle", 30)
    nets = assign_networks({p: tuple(graph[p]) for p in graph}, max_per_network=10)
    assert len({k for ks in nets.values() for k in ks}) >= 3
    assert all(set(nets[u]) & set(nets[v]) for u, v in graph.edges)
    mesh = build_graph("mesh", 20)
    with pytest.raises(RenderError, match="cannot spread"):
        assign_networks({p: tuple(mesh[p]) for p in mesh}, max_per_network=10)


def test_strings_are_quoted_and_dollars_escaped():
    peers = [PeerService(0, (1,), ("--x", "a$b", 'q"uote', "yes", "1")), PeerService(1, (0,), ("--y",))]
    text = render_compose("p2p-q", "run-$1", peers, "../runs/x/logs", (10001, 10001))
    doc = load(text)
    # Compose turns $$ back into $; YAML must keep "yes" and "1" as strings.
    assert doc["services"]["peer-0"]["command"] == ["--x", "a$$b", 'q"uote', "yes", "1"]
    assert doc["services"]["peer-0"]["labels"]["p2p.run"] == "run-$$1"


def test_render_errors():
    peer = PeerService(0, (), ("--id", "0"))
    with pytest.raises(RenderError):
        render_compose("Bad Name", "r", [peer], "logs", (1, 1))
    with pytest.raises(RenderError):
        render_compose("p2p-ok", "r", [], "logs", (1, 1))
    with pytest.raises(RenderError):
        render_compose("p2p-ok", "r", [peer, peer], "logs", (1, 1))
    assert project_name("p2p-Mesh-5-20250101-ab12") == "p2p-mesh-5-20250101-ab12"
    assert project_name("p2p mesh.5") == "p2p-mesh-5"


def test_write_compose_and_env(tmp_path):
    path = write_compose("name: x\n", tmp_path / "compose" / "mesh-5.yml")
    assert path.read_text() == "name: x\n"
    assert not (tmp_path / "compose" / "__init__.py").exists()
    assert [p.name for p in path.parent.iterdir()] == ["mesh-5.yml"]
    (tmp_path / ".env").write_text("FOO=bar\nCOMPOSE_FILE=old.yml\nexport COMPOSE_PROJECT_NAME=old\n")
    env = write_env(tmp_path, path, "p2p-mesh-5")
    assert env.read_text().splitlines() == ["FOO=bar", "COMPOSE_FILE=compose/mesh-5.yml", "COMPOSE_PROJECT_NAME=p2p-mesh-5"]


def test_render_run_makes_plain_compose_ready(tmp_path):
    spec = RunSpec.parse("starfish", 5)
    pred = predict(spec.graph(), spec.topology)
    r = render_run(spec, pred, root=tmp_path, run_id="starfish-5-t1")
    assert r.compose_file == tmp_path / "compose" / "starfish-5.yml"
    assert r.project == "p2p-starfish-5"
    env = dict(line.split("=", 1) for line in (tmp_path / ".env").read_text().splitlines())
    assert env == {"COMPOSE_FILE": "compose/starfish-5.yml", "COMPOSE_PROJECT_NAME": "p2p-starfish-5"}
    assert os.readlink(tmp_path / "runs" / "latest") == "starfish-5-t1"
    assert RunSpec.load(tmp_path / "runs" / "latest" / "spec.json") == spec
    logs = tmp_path / "runs" / "starfish-5-t1" / "logs"
    assert logs.is_dir()
    if os.getuid() == 0:
        assert (logs.stat().st_uid, logs.stat().st_gid) == (10001, 10001)
    doc = load(r.compose_file.read_text())
    assert doc["name"] == "p2p-starfish-5"
    assert doc["services"]["peer-3"]["volumes"][0]["source"] == "../runs/starfish-5-t1/logs"
    assert doc["services"]["peer-3"]["labels"]["p2p.run"] == "starfish-5-t1"
    total = sum(int(opts(s["command"], "--expect")[0]) for s in doc["services"].values())
    assert total == pred.deliveries == 40


def test_render_run_without_prediction_has_no_expect(tmp_path):
    spec = RunSpec.parse("cycle", 4)
    r = render_run(spec, None, root=tmp_path)
    doc = load(r.compose_file.read_text())
    assert all("--expect" not in s["command"] for s in doc["services"].values())


@pytest.mark.parametrize("n", [5, EXIT_SLOTS_FROM - 1, EXIT_SLOTS_FROM, 1000])
def test_exit_slots_from_the_size_where_the_engine_deadlocks(tmp_path, n):
    plan, _ = plan_for(tmp_path, "cycle", n)
    for barrier in (False, True):
        doc = load(render_plan(plan, tmp_path / "c.yml", "p2p-t", user=(10001, 10001), barrier=barrier))
        slots = [opts(s["command"], "--exit-slot") for s in doc["services"].values()]
        starts = [opts(s["command"], "--start-file") for s in doc["services"].values()]
        assert len(slots) == n
        if n >= EXIT_SLOTS_FROM:
            assert all(s == [f"{EXIT_SLOT:g}"] for s in slots)
            assert exit_slots_span(n) == pytest.approx(n * EXIT_SLOT)
        else:
            assert all(s == [] for s in slots) and exit_slots_span(n) == 0
        assert all(s == (["/logs/.start"] if barrier else []) for s in starts)


@pytest.mark.parametrize("n,expected", [(5, "10"), (100, "10"), (250, "25"), (1000, "100")])
def test_handshake_timeout_grows_with_n_unless_given(tmp_path, n, expected):
    plan, _ = plan_for(tmp_path, "cycle", n)
    doc = load(render_plan(plan, tmp_path / "c.yml", "p2p-t", user=(10001, 10001), barrier=True))
    assert {tuple(opts(s["command"], "--handshake-timeout")) for s in doc["services"].values()} == {(expected,)}
    from generator.spec import PeerOptions

    assert PeerOptions(handshake_timeout=0.5).handshake_timeout_for(n) == 0.5


@pytest.mark.parametrize("n,expected", [(5, []), (10, []), (250, ["25"]), (1000, ["100"])])
def test_dial_grace_grows_with_n_unless_given(tmp_path, n, expected):
    """Up to 10 peers the peer's own 1 s grace (no flag: small compose files unchanged); N/10 s above."""
    plan, _ = plan_for(tmp_path, "cycle", n)
    doc = load(render_plan(plan, tmp_path / "c.yml", "p2p-t", user=(10001, 10001), barrier=True))
    assert {tuple(opts(s["command"], "--dial-grace")) for s in doc["services"].values()} == {tuple(expected)}
    from generator.spec import PeerOptions

    assert PeerOptions.from_cli(["dial_grace=0.5"]).dial_grace_for(n) == 0.5
