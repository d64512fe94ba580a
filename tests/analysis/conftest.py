"""Hand-built run directories with known answers (no peers, no Docker).

``build_run(tmp_path, "cycle", 5)`` writes what a clean protocol-v1 run of cycle-5
would leave: spec.json and logs/<id>.txt, .traffic.txt, .events.jsonl. The peers'
own counters (summary events, traffic files) are those of the full flood, so a
test that then edits a .txt file sees them disagree, as a lossy log would.
"""

from __future__ import annotations

import json
from pathlib import Path

import networkx as nx
import pytest

from generator.spec import RunSpec

T0 = 1_700_000_000.0


def line(author: int, hops: list[int]) -> str:
    return '{"id":%d,"hops":[%s]}' % (author, ",".join(map(str, hops)))


def flood(graph: nx.Graph) -> dict[int, list[str]]:
    """Every line each peer logs under v1: one per simple path ending at it."""
    logs: dict[int, list[str]] = {p: [] for p in graph}
    for author in sorted(graph):
        stack = [[author]]
        while stack:
            path = stack.pop()
            for v in sorted(graph[path[-1]]):
                if v not in path:
                    logs[v].append(line(author, path))
                    stack.append([*path, v])
    return logs


def _write_logs(log_dir: Path, graph: nx.Graph, logs: dict[int, list[str]], events: bool) -> None:
    log_dir.mkdir(parents=True, exist_ok=True)
    flows: dict[tuple[int, int], list[int]] = {}
    for p, lines in logs.items():
        for ln in lines:
            s = json.loads(ln)["hops"][-1]
            f = flows.setdefault((s, p), [0, 0])
            f[0] += 1
            f[1] += 4 + len(ln)
    for p in sorted(graph):
        (log_dir / f"{p}.txt").write_text("".join(ln + "\n" for ln in logs[p]))
        nbrs = sorted(graph[p])
        traffic = ""
        links = {}
        for nb in nbrs:
            fin = flows.get((nb, p), [0, 0])
            fout = flows.get((p, nb), [0, 0])
            if fin[0] or fout[0]:
                traffic += f"{nb}; {fin[1]}; {fout[1]}\n"
            links[str(nb)] = {"frames_in": fin[0], "bytes_in": fin[1], "frames_out": fout[0],
                              "bytes_out": fout[1], "undelivered": 0, "state": "closed"}
        (log_dir / f"{p}.traffic.txt").write_text(traffic)
        if not events:
            continue
        recv = sum(v["frames_in"] for v in links.values())
        sent = sum(v["frames_out"] for v in links.values())
        t = T0 + 0.01 * p
        recs = [
            {"t": t, "peer": p, "ev": "start", "n": max(graph) + 1, "neighbours": nbrs,
             "protocol": "v1", "expect": recv},
            {"t": t + 0.001, "peer": p, "ev": "listen", "addr": f"127.0.0.1:{18000 + p}"},
            {"t": t + 0.1, "peer": p, "ev": "authored", "frames": len(nbrs)},
            {"t": t + 0.2, "peer": p, "ev": "progress", "recv": recv // 2, "sent": sent // 2},
            {"t": t + 0.3, "peer": p, "ev": "progress", "recv": recv, "sent": sent},
            {"t": t + 0.35, "peer": p, "ev": "summary", "recv": recv, "sent": sent,
             "recv_bytes": sum(v["bytes_in"] for v in links.values()),
             "sent_bytes": sum(v["bytes_out"] for v in links.values()),
             "links": links, "errors": 0, "exit_reason": "expected", "duration": 0.35},
        ]
        (log_dir / f"{p}.events.jsonl").write_text("".join(json.dumps(r) + "\n" for r in recs))


@pytest.fixture
def build_run(tmp_path):
    """build_run(topology, n, name=..., original=False) -> run directory."""

    def build(topology: str, n: int, name: str | None = None, original: bool = False, faults: tuple = ()) -> Path:
        from generator.faults import Fault

        spec = RunSpec.parse(topology, n, faults=tuple(Fault.parse(f) for f in faults))
        graph = spec.graph()
        run = tmp_path / (name or f"{topology}-{n}")
        run.mkdir()
        if faults:
            # Peers killed at start only log their start; the others flood what survives.
            alive = spec.prediction_graph()
            spec.write(run / "spec.json")
            _write_logs(run / "logs", alive, flood(alive), events=True)
            for p in sorted(set(graph) - set(alive)):
                (run / "logs" / f"{p}.txt").write_text("")
                start = {"t": T0, "peer": p, "ev": "start", "n": n, "neighbours": sorted(graph[p]),
                         "protocol": "v1", "expect": None}
                (run / "logs" / f"{p}.events.jsonl").write_text(json.dumps(start) + "\n")
            return run
        logs = flood(graph)
        if original:
            # The original tool: <id>.txt and <id>.traffic.txt in one directory, nothing else.
            _write_logs(run, graph, logs, events=False)
        else:
            spec.write(run / "spec.json")
            _write_logs(run / "logs", graph, logs, events=True)
        return run

    return build
