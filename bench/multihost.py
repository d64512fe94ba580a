"""The same swarm run on a cluster of K nodes and of 1 node (testbed/multihost.py), side by side.

For each cluster size: start the cluster, copy the peer image to every node
(``docker save | docker exec -i NODE docker load``), run the topology with the swarm
runner against the manager, sample every node's memory while it runs (``docker stats``'s
figure: usage less page cache), analyse, remove the cluster. Prints one JSON object per
cluster size and a table; every figure is measured by this run.

    .venv/bin/python bench/multihost.py --topology cycle -n 300 --nodes 3,1
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import docker  # noqa: E402
from generator.predict import predict  # noqa: E402
from generator.spec import PeerOptions, RunSpec  # noqa: E402
from testbed import multihost  # noqa: E402
from testbed.base import Progress, prepare_run  # noqa: E402
from testbed.swarm import SwarmRunner, SwarmTimeouts  # noqa: E402


class MemorySampler(threading.Thread):
    """Every node's memory, sampled until stopped; keeps the peak per node."""

    def __init__(self, cluster: multihost.Cluster) -> None:
        super().__init__(daemon=True)
        self.cluster, self.peak, self.idle = cluster, {}, multihost.node_memory(cluster)
        self.stopped = threading.Event()

    def run(self) -> None:
        while not self.stopped.is_set():
            for name, used in multihost.node_memory(self.cluster).items():
                self.peak[name] = max(self.peak.get(name, 0), used)
            self.stopped.wait(1.0)


def one(spec: RunSpec, nodes: int, runs: Path, start_wait: float) -> dict:
    progress = Progress(interval=30)
    t0 = time.monotonic()
    cluster = multihost.up(nodes, share=[runs], progress=progress)
    row: dict = {"nodes": nodes, "cluster_up_s": round(time.monotonic() - t0, 1)}
    try:
        row["image_copy_s"] = round(multihost.copy_image(cluster), 1)
        client = docker.DockerClient(base_url=cluster.manager.url, timeout=300)
        runner = SwarmRunner(client, docker_cmd=("docker", "-H", cluster.manager.url), stack_root=None,
                             timeouts=SwarmTimeouts(start=start_wait))
        plan = prepare_run(spec, runs, predict(spec.graph(), spec.topology))
        sampler = MemorySampler(cluster)
        sampler.start()
        try:
            result = runner.run(plan, progress)
        finally:
            sampler.stopped.set()
            sampler.join()
        subprocess.run([str(ROOT / ".venv/bin/p2p"), "analyse", str(plan.run_dir), "--no-plots"],
                       stdout=subprocess.DEVNULL, check=False)
        summary = json.loads((plan.run_dir / "summary.json").read_text())
        per_node: dict[str, int] = {}
        for node in runner.placement.values():
            per_node[node] = per_node.get(node, 0) + 1
        row.update({
            "run_id": plan.run_id, "verdict": summary["verdict"], "deliveries": summary["deliveries"],
            "expected": summary["expected_deliveries"], "bytes": summary["bytes"],
            "exits_ok": sum(c == 0 for c in result.exit_codes.values()),
            "timings_s": {k: round(v, 1) for k, v in runner.timings.items()},
            "time_to_quiescence_s": round(summary["time_to_quiescence"], 2),
            "peers_per_node": per_node,
            "idle_mem_mib": {k: round(v / 2**20) for k, v in sampler.idle.items()},
            "peak_mem_mib": {k: round(v / 2**20) for k, v in sampler.peak.items()},
            "leftovers": multihost.leftovers(cluster, plan.run_id),
        })
    finally:
        multihost.down(cluster.cluster_id)
    return row


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--topology", "-t", default="cycle")
    ap.add_argument("-n", type=int, default=300)
    ap.add_argument("--nodes", default="3,1", help="cluster sizes, comma-separated (default 3,1)")
    ap.add_argument("--runs", type=Path, default=Path("/tmp/p2p-multihost-bench"))
    ap.add_argument("--link-deadline", type=float, default=None,
                    help="the peers' link deadline, s (default: p2p's, N s); raise it on a loaded machine, where "
                         "starting hundreds of tasks can take longer")
    args = ap.parse_args()
    args.runs.mkdir(parents=True, exist_ok=True)
    opts = PeerOptions() if args.link_deadline is None else PeerOptions(link_deadline=args.link_deadline)
    spec = RunSpec.parse(args.topology, args.n, options=opts)
    start_wait = max(120.0, opts.link_deadline_for(args.n))  # the peers wait that long for their links anyway
    for k in (int(x) for x in args.nodes.split(",")):
        row = one(spec, k, args.runs.resolve(), start_wait)
        print(json.dumps(row), flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
