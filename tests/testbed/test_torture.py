"""Torture: local runs under random faults at random moments, checked against an oracle
that does not use the analysis' own code.

Each run is mesh-6 or cycle-8 with a random fault timeline (kills, pauses + resumes,
restarts, partitions + heals, at random times or delivery counts) and, in some runs, a
SIGKILL of a random peer from outside the testbed (so nothing in faults.jsonl explains
it). In every run:

- the exit status follows the contract: 0 exactly when the analysis calls the run
  explained, 1 otherwise, never anything else; a run without an outside kill exits 0;
- missing.jsonl is complete: its `missing` entries are exactly the predicted
  (receiver, path) pairs that no log holds, computed here from networkx and the raw logs;
- every explanation names a fault that fired and that acted on the path;
- with an outside kill, every unexplained missing path runs through the killed peer;
- log before forward: every line any peer logged with sender k (hops H, len(H) >= 2)
  has H[:-1] in k's log, although peers died by SIGKILL mid-flood.
"""

from __future__ import annotations

import json
import os
import random
import signal
import threading
import time
from pathlib import Path

import networkx as nx
import pytest

from analysis.missing import read_listing
from generator.faults import Fault
from testbed.cli import main

pytestmark = [pytest.mark.slow]

RUNS = 20


def random_faults(rng: random.Random, graph: nx.Graph) -> list[str]:
    peers = sorted(graph)
    edges = sorted(tuple(sorted(e)) for e in graph.edges)
    out: list[str] = []
    for _ in range(rng.randint(1, 3)):
        kind = rng.choice(("kill", "kill_at", "pause", "restart", "partition"))
        p = rng.choice(peers)
        t = round(rng.uniform(0.0, 0.4), 3)
        if kind == "kill":
            out.append(f"kill:{p}@{t}")
        elif kind == "kill_at":
            out.append(f"kill:{p}@deliveries={rng.randint(1, 600)}")
        elif kind == "pause":
            out += [f"pause:{p}@{t}", f"resume:{p}@{round(t + rng.uniform(0.05, 0.8), 3)}"]
        elif kind == "restart":
            out.append(f"restart:{p}@{t}")
        else:
            u, v = rng.choice(edges)
            out.append(f"partition:{u}-{v}@{t}")
            if rng.random() < 0.5:
                out.append(f"heal:{u}-{v}@{round(t + rng.uniform(0.05, 0.5), 3)}")
    return out


def peer_pids(out_dir: Path) -> dict[int, int]:
    """Live peer processes of this run (by their --log-dir under out_dir): peer id -> pid."""
    found = {}
    for d in Path("/proc").iterdir():
        if not d.name.isdigit():
            continue
        try:
            args = (d / "cmdline").read_bytes().split(b"\0")
        except OSError:
            continue
        if b"peer" in args and any(str(out_dir).encode() in a for a in args) and b"--id" in args:
            found[int(args[args.index(b"--id") + 1])] = int(d.name)
    return found


def outside_kill(out_dir: Path, rng: random.Random, killed: list[int], stop: threading.Event) -> None:
    """SIGKILL one random peer once the run has logged a few deliveries."""
    deadline = time.monotonic() + 20
    while not stop.is_set() and time.monotonic() < deadline:
        logs = list(out_dir.glob("*/logs/*.txt"))
        lines = sum(p.read_bytes().count(b"\n") for p in logs if p.name.split(".")[0].isdigit())
        pids = peer_pids(out_dir)
        if lines >= rng.randint(5, 200) and pids:
            victim = rng.choice(sorted(pids))
            try:
                os.kill(pids[victim], signal.SIGKILL)
                killed.append(victim)
            except ProcessLookupError:
                pass
            return
        time.sleep(0.005)


def read_logs(log_dir: Path, n: int) -> dict[int, set[tuple[int, ...]]]:
    logs = {}
    for p in range(n):
        path = log_dir / f"{p}.txt"
        lines = path.read_bytes().split(b"\n") if path.exists() else []
        logs[p] = {tuple(json.loads(ln)["hops"]) for ln in lines if ln.strip()}
    return logs


def predicted(graph: nx.Graph) -> set[tuple[int, tuple[int, ...]]]:
    out = set()
    for a in graph:
        for r in graph:
            if r != a:
                for path in nx.all_simple_paths(graph, a, r):
                    out.add((r, tuple(path[:-1])))
    return out


def acts_on(fault: Fault, path: list[int]) -> bool:
    steps = {frozenset(e) for e in zip(path, path[1:])}
    return bool(set(fault.peers) & set(path)) or any(frozenset(e) in steps for e in fault.edges)


@pytest.mark.parametrize("seed", range(RUNS))
def test_torture(tmp_path, seed, capsys):
    rng = random.Random(1000 + seed)
    topology, n = rng.choice((("mesh", 6), ("cycle", 8)))
    graph = nx.complete_graph(n) if topology == "mesh" else nx.cycle_graph(n)
    faults = random_faults(rng, graph)
    out_dir = tmp_path / "runs"
    outside = rng.random() < 0.3
    killed: list[int] = []
    stop = threading.Event()
    killer = threading.Thread(target=outside_kill, args=(out_dir, rng, killed, stop), daemon=True)
    if outside:
        killer.start()
    args = ["run", "--backend", "local", "-t", topology, "-n", str(n), "--no-plots", "--out", str(out_dir),
            "--idle", "2", "--link-deadline", "2"]
    for f in faults:
        args += ["--fault", f]
    try:
        rc = main(args)
    finally:
        stop.set()
        if outside:
            killer.join()
    captured = capsys.readouterr()
    where = f"seed {seed}: {topology}-{n} faults {faults} outside kill {killed}\n{captured.out}\n{captured.err}"
    run = (out_dir / "latest").resolve()
    s = json.loads((run / "summary.json").read_text())

    # The exit status follows the contract.
    assert rc in (0, 1), where
    assert (rc == 0) == s["explained"], where
    if not killed:
        assert rc == 0, where + f"\nunexplained: {s['unexplained']}"

    # missing.jsonl is complete: exactly the predicted deliveries no log holds.
    at_start = [f for f in map(Fault.parse, faults) if f.at_start]
    gone = {p for f in at_start for p in f.peers}
    pgraph = graph.subgraph(p for p in graph if p not in gone)
    logs = read_logs(run / "logs", n)
    observed = {(r, hops) for r, lines in logs.items() for hops in lines}
    want_missing = predicted(pgraph) - observed
    listing = read_listing(run)
    got_missing = {(e["receiver"], tuple(e["path"][:-1])) for e in listing if e["kind"] == "missing"}
    assert got_missing == want_missing, where
    assert s["missing_deliveries"] == len(want_missing), where

    # Every explanation names a fault that fired and acted on the path.
    fired = [json.loads(x)["fault"] for x in (run / "faults.jsonl").read_text().splitlines()
             if "fault" in json.loads(x)] if (run / "faults.jsonl").exists() else []
    fired += [str(f) for f in at_start]
    for e in listing:
        if e["kind"] == "missing" and e["explained_by"] is not None:
            assert e["explained_by"] in fired, where
            assert acts_on(Fault.parse(e["explained_by"]), e["path"]), (e, where)
        elif e["explained_by"] is None:
            assert killed and killed[0] in e["path"], (e, where)

    # Log before forward.
    for r, lines in logs.items():
        for hops in lines:
            if len(hops) >= 2:
                assert hops[:-1] in logs[hops[-1]], (r, hops, where)
