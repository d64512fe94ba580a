"""docs/extending.md says a protocol with a parameter, a peer option and a backend each take
2 files. The kept example diffs in docs/examples/ prove it: each touches exactly the 2 files
the guide names, still applies to this tree, and works there (a real local run, checked
against an oracle written here, not against the code the diff adds)."""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
import time
from pathlib import Path

import networkx as nx
import pytest

ROOT = Path(__file__).resolve().parents[1]
EXAMPLES = ROOT / "docs" / "examples"
GUIDE = ROOT / "docs" / "extending.md"

# diff -> the two files the guide says it takes
FILES = {
    "add-protocol.diff": ["generator/protocol_predict.py", "peer/protocols.py"],
    "add-peer-option.diff": ["peer/config.py", "peer/node.py"],
    "add-backend.diff": ["testbed/nice.py", "testbed/runners.py"],
}


def touched(diff: Path) -> list[str]:
    return sorted(line.split(" b/", 1)[1] for line in diff.read_text().splitlines() if line.startswith("diff --git "))


def test_every_kept_example_is_known_and_linked_from_the_guide():
    assert sorted(p.name for p in EXAMPLES.glob("*.diff")) == sorted(FILES)
    guide = GUIDE.read_text()
    for name in FILES:
        assert f"examples/{name}" in guide, f"docs/extending.md does not link {name}"


@pytest.mark.parametrize("name", sorted(FILES))
def test_each_example_touches_exactly_the_two_files_the_guide_names(name):
    assert touched(EXAMPLES / name) == sorted(FILES[name])


def _tree_with(tmp_path: Path, name: str) -> Path:
    """A copy of the repository's source packages with the example applied."""
    tree = tmp_path / "tree"
    for pkg in ("peer", "generator", "testbed", "analysis"):
        shutil.copytree(ROOT / pkg, tree / pkg, ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copy(ROOT / "pyproject.toml", tree)
    applied = subprocess.run(["git", "apply", "--verbose", str(EXAMPLES / name)], cwd=tree,
                             capture_output=True, text=True)
    assert applied.returncode == 0, f"{name} no longer applies to this tree:\n{applied.stderr}"
    return tree


def _p2p(tree: Path, *args: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(tree)}  # the copy's packages win over the installed ones
    return subprocess.run([sys.executable, "-m", "testbed.cli", *args, "--out", str(tree / "runs"), "--no-plots"],
                          cwd=tree, env=env, capture_output=True, text=True, timeout=300)


def _run_dir(tree: Path) -> Path:
    (run,) = [p for p in (tree / "runs").iterdir() if p.is_dir() and not p.is_symlink()]
    return run


def _simple_paths(graph: nx.Graph) -> int:
    """v1's deliveries: simple paths of length >= 1 from every author."""
    return sum(1 for a in graph for b in graph if a != b for _ in nx.all_simple_paths(graph, a, b))


@pytest.mark.slow
def test_the_backend_example_runs_an_exact_flood(tmp_path):
    tree = _tree_with(tmp_path, "add-backend.diff")
    done = _p2p(tree, "run", "--backend", "nice", "-t", "mesh", "-n", "5")
    assert done.returncode == 0, done.stdout + done.stderr
    run = _run_dir(tree)
    assert json.loads((run / "exits.json").read_text())["backend"] == "nice"
    summary = json.loads((run / "summary.json").read_text())
    assert summary["verdict"] == "OK"
    assert summary["deliveries"] == _simple_paths(nx.complete_graph(5)) == 320


def _kflood_frames(graph: nx.Graph, k: int) -> dict[int, int]:
    """Frames each peer receives under kflood: the author sends to every neighbour, each receiver
    forwards to the k lowest-id neighbours not in the hop list (which ends with the sender)."""
    got = dict.fromkeys(graph, 0)
    for author in graph:
        stack = [(v, [author]) for v in graph.neighbors(author)]
        while stack:
            v, hops = stack.pop()
            got[v] += 1
            targets = sorted(set(graph.neighbors(v)) - set(hops))[:k]
            stack.extend((t, [*hops, v]) for t in targets)
    return got


@pytest.mark.slow
@pytest.mark.parametrize(("family", "n", "k"), [("mesh", 5, 2), ("starfish", 9, 1)])
def test_the_protocol_example_is_predicted_and_run_exactly(tmp_path, family, n, k):
    tree = _tree_with(tmp_path, "add-protocol.diff")
    done = _p2p(tree, "run", "--backend", "local", "-t", family, "-n", str(n), "--protocol", "kflood",
                "--param", f"k={k}")
    assert done.returncode == 0, done.stdout + done.stderr
    summary = json.loads((_run_dir(tree) / "summary.json").read_text())
    graph = nx.complete_graph(5) if family == "mesh" else nx.circulant_graph(n, [2, 3])
    expected = _kflood_frames(graph, k)
    assert summary["verdict"] == "OK"
    assert summary["deliveries"] == sum(expected.values())
    assert {int(p["id"]): p["received"] for p in summary["peers"]} == expected


def _dial_errors(tree: Path, log_dir: Path, extra: list[str], late: float) -> int:
    """Start peer 0, then peer 1 ``late`` seconds later (its port refuses until then); how many
    dials of peer 0 failed before the link came up."""
    socks = [socket.socket() for _ in range(2)]
    for s in socks:
        s.bind(("127.0.0.1", 0))  # bound, not listening: a dial is refused until the peer listens
    ports = [s.getsockname()[1] for s in socks]
    env = {**os.environ, "PYTHONPATH": str(tree)}
    procs = []
    try:
        for me in (0, 1):
            if me:
                time.sleep(late)  # the experiment: a neighbour that starts late
            fd = socks[me].fileno()
            procs.append(subprocess.Popen(
                [sys.executable, "-m", "peer", "--id", str(me), "--n", "2", "--listen-fd", str(fd),
                 "-p", f"{1 - me}=127.0.0.1:{ports[1 - me]}", "--log-dir", str(log_dir), "--expect", "1", *extra],
                pass_fds=(fd,), env=env, cwd=tree, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE))
        codes = [p.wait(timeout=60) for p in procs]
        assert codes == [0, 0], [p.stderr.read() for p in procs]
    finally:
        for p in procs:
            p.kill()
        for s in socks:
            s.close()
    events = [json.loads(line) for line in (log_dir / "0.events.jsonl").read_text().splitlines()]
    return sum(sum(e["errors"].values()) for e in events if e.get("ev") == "dial_retries")


@pytest.mark.slow
def test_the_peer_option_example_changes_how_often_a_peer_redials(tmp_path):
    tree = _tree_with(tmp_path, "add-peer-option.diff")
    done = _p2p(tree, "run", "--backend", "local", "-t", "mesh", "-n", "4", "--peer-option", "dial_backoff=0.5")
    assert done.returncode == 0, done.stdout + done.stderr
    assert json.loads((_run_dir(tree) / "spec.json").read_text())["options"]["peer"] == {"dial_backoff": 0.5}
    # Waiting 2 s for a neighbour: the default backoff (0.02 s doubling up to 2 s) dials about 7
    # times; capped at 0.05 s, about 40 times.
    default = _dial_errors(tree, tmp_path / "default", [], late=2.0)
    fast = _dial_errors(tree, tmp_path / "fast", ["--dial-backoff", "0.05"], late=2.0)
    assert 1 <= default <= 10
    assert fast > 2 * default
