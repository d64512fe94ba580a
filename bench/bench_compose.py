"""Compose start-up and memory: our ComposeRunner vs a raw `docker compose up -d` of idle containers.

    python3 bench/bench_compose.py [--sizes 50 200] [--json FILE]

For each size N, in the same session:
  raw     N services of the peer image running `python3 -c "import time; time.sleep(3600)"`,
          plain `docker compose up -d` (no hardening): time until `up -d` returns and until
          all N are running, then host memory per container once all run.
  hard    the same idle command in the file our renderer writes for cycle-N (hardening,
          init, limits, internal network, bind mount): separates hardening from peer load.
  runner  ComposeRunner on cycle-N (exact --expect, peers exit by themselves): time from
          `up -d` to all N containers started, until all exited, and `down`; host memory
          per peer container sampled while all N are running.
Memory per container is read from its cgroup: usage minus inactive file cache (what
`docker stats` shows) and RSS; `docker stats --no-stream` when no cgroup file is found.
Everything is labelled p2p.run=<bench run id> and removed by label afterwards.
"""

from __future__ import annotations

import argparse
import io
import json
import secrets
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO_ROOT))

import docker  # noqa: E402
import yaml  # noqa: E402

from generator.predict import predict  # noqa: E402
from generator.spec import RunSpec  # noqa: E402
from testbed.base import Progress, prepare_run  # noqa: E402
from testbed.compose import ComposeRunner, clean_by_label, render_plan  # noqa: E402

IDLE_CMD = ["python3", "-c", "import time; time.sleep(3600)"]  # outlives any start-up


# ---- memory ---------------------------------------------------------------------------------


def _cgroup_dir(cid: str) -> tuple[Path, int] | None:
    for base, version in (
        (Path("/sys/fs/cgroup/memory/docker") / cid, 1),
        (Path("/sys/fs/cgroup/memory/system.slice") / f"docker-{cid}.scope", 1),
        (Path("/sys/fs/cgroup/system.slice") / f"docker-{cid}.scope", 2),
        (Path("/sys/fs/cgroup/docker") / cid, 2),
    ):
        if base.is_dir():
            return base, version
    return None


def _stat(path: Path) -> dict[str, int]:
    return {k: int(v) for k, v in (line.split() for line in path.read_text().splitlines())}


def container_memory(cid: str) -> tuple[float, float] | None:
    """(usage minus inactive file cache, RSS) in MiB from the container's memory cgroup."""
    found = _cgroup_dir(cid)
    if found is None:
        return None
    path, version = found
    try:
        if version == 1:
            usage = int((path / "memory.usage_in_bytes").read_text())
            st = _stat(path / "memory.stat")
            return (usage - st.get("total_inactive_file", 0)) / 2**20, st.get("total_rss", 0) / 2**20
        usage = int((path / "memory.current").read_text())
        st = _stat(path / "memory.stat")
        return (usage - st.get("inactive_file", 0)) / 2**20, st.get("anon", 0) / 2**20
    except (OSError, ValueError):
        return None  # exited meanwhile


def docker_stats_mib(ids: list[str]) -> list[float]:
    out = subprocess.run(["docker", "stats", "--no-stream", "--format", "{{.MemUsage}}", *ids],
                         capture_output=True, text=True, timeout=300).stdout
    units = {"B": 1 / 2**20, "KiB": 1 / 1024, "MiB": 1, "GiB": 1024}
    vals = []
    for line in out.splitlines():
        used = line.split("/")[0].strip()
        for unit in sorted(units, key=len, reverse=True):
            if used.endswith(unit):
                vals.append(float(used[: -len(unit)]) * units[unit])
                break
    return vals


def memory_of(client, run_id: str) -> dict[str, float]:
    ids = [c.id for c in client.containers.list(filters={"label": f"p2p.run={run_id}", "status": "running"})]
    samples = [m for m in (container_memory(i) for i in ids) if m is not None]
    if samples:
        used = [u for u, _ in samples]
        return {"containers": len(samples), "source": "cgroup", "mean_mib": statistics.mean(used),
                "max_mib": max(used), "rss_mean_mib": statistics.mean(r for _, r in samples)}
    used = docker_stats_mib(ids)
    return {"containers": len(used), "source": "docker stats", "mean_mib": statistics.mean(used) if used else 0.0,
            "max_mib": max(used, default=0.0), "rss_mean_mib": float("nan")}


def running_count(client, run_id: str) -> int:
    return len(client.containers.list(filters={"label": f"p2p.run={run_id}", "status": "running"}, sparse=True))


# ---- raw compose -----------------------------------------------------------------------------


def raw_compose(n: int, run_id: str, image: str) -> str:
    lines = [f"name: p2p-{run_id}", "services:"]
    for i in range(n):
        lines += [
            f"  idle-{i}:",
            f"    image: {image}",
            "    pull_policy: never",
            f"    entrypoint: {json.dumps(IDLE_CMD)}",
            f"    labels: {{p2p.run: {run_id}}}",
        ]
    lines += ["networks:", "  default:", f"    labels: {{p2p.run: {run_id}}}"]
    return "\n".join(lines) + "\n"


def hardened_idle_compose(n: int, run_id: str, workdir: Path) -> str:
    spec = RunSpec.parse("cycle", n)
    plan = prepare_run(spec, workdir / "runs", None, run_id=run_id)
    doc = yaml.safe_load(render_plan(plan, workdir / f"{run_id}.yml", f"p2p-{run_id}"))
    for svc in doc["services"].values():
        svc["entrypoint"], svc["command"] = IDLE_CMD, []
    doc.pop("x-peer", None)
    return yaml.safe_dump(doc, sort_keys=False)


def bench_raw(client, n: int, image: str, workdir: Path, hardened: bool = False) -> dict:
    run_id = f"bench-{'hard' if hardened else 'raw'}-{n}-{secrets.token_hex(3)}"
    path = workdir / f"{run_id}.yml"
    path.write_text(hardened_idle_compose(n, run_id, workdir) if hardened else raw_compose(n, run_id, image))
    base = ["docker", "compose", "-p", f"p2p-{run_id}", "-f", str(path)]
    log = workdir / f"{run_id}.log"  # a file, not a pipe: 200 containers' progress lines would fill a pipe
    res: dict = {"run_id": run_id}
    up = None
    try:
        with open(log, "wb") as out:
            t0 = time.monotonic()
            up = subprocess.Popen([*base, "up", "-d"], stdout=out, stderr=subprocess.STDOUT)
        while running_count(client, run_id) < n:
            if up.poll() not in (None, 0):
                raise RuntimeError(f"{run_id}: up -d failed: {log.read_text()[-2000:]}")
            if time.monotonic() - t0 > 600:
                raise RuntimeError(f"{run_id}: not all running after 600 s: {log.read_text()[-2000:]}")
            time.sleep(0.1)
        res["all_running_s"] = time.monotonic() - t0
        up.wait()
        res["up_returned_s"] = max(res["all_running_s"], time.monotonic() - t0)
        if up.returncode != 0:
            raise RuntimeError(f"{run_id}: up -d failed: {log.read_text()[-2000:]}")
        res["memory"] = memory_of(client, run_id)
        t = time.monotonic()
        subprocess.run([*base, "down", "-v", "-t", "1"], capture_output=True, timeout=900)
        res["down_s"] = time.monotonic() - t
    finally:
        if up is not None and up.poll() is None:
            up.kill()
            up.wait()
            subprocess.run([*base, "down", "-v", "-t", "1"], capture_output=True, timeout=900)
        clean_by_label(client, run_id)
    return res


# ---- our runner ------------------------------------------------------------------------------


def bench_runner(client, n: int, workdir: Path) -> dict:
    spec = RunSpec.parse("cycle", n)
    pred = predict(spec.graph(), spec.topology)
    run_id = f"bench-run-{n}-{secrets.token_hex(3)}"
    plan = prepare_run(spec, workdir / "runs", pred, run_id=run_id)
    runner = ComposeRunner(client, poll=0.1)
    mem: dict = {}
    stop = threading.Event()

    def sample() -> None:  # own client: the runner's is busy in the main thread
        c = docker.from_env()
        while not stop.is_set():
            if running_count(c, run_id) >= n:
                mem.update(memory_of(c, run_id))
                return
            stop.wait(0.1)

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    try:
        result = runner.run(plan, Progress(stream=io.StringIO()))
    finally:
        stop.set()
        sampler.join(timeout=60)
        clean_by_label(client, run_id)
    delivered = sum(len((plan.log_dir / f"{p}.txt").read_bytes().splitlines()) for p in range(n))
    return {
        "run_id": run_id,
        "all_started_s": runner.timings.get("all_started"),
        "up_returned_s": runner.timings.get("up_returned"),
        "all_exited_s": runner.timings.get("all_exited"),
        "down_s": runner.timings.get("down"),
        "failed_peers": result.failed_peers,
        "deliveries": delivered,
        "predicted": pred.deliveries,
        "memory": mem or {"note": "peers exited before all were running at once"},
    }


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sizes", type=int, nargs="+", default=[50, 200])
    ap.add_argument("--image", default="p2p-peer:latest")
    ap.add_argument("--json", type=Path, help="also write the figures to this file")
    args = ap.parse_args(argv)
    client = docker.from_env()
    ComposeRunner(client).ensure_image(Progress(stream=sys.stderr))
    workdir = Path(tempfile.mkdtemp(prefix="p2p-bench-"))
    results = []
    try:
        for n in args.sizes:
            print(f"N={n}: raw compose of idle containers...", file=sys.stderr, flush=True)
            raw = bench_raw(client, n, args.image, workdir)
            print(f"N={n}: hardened idle containers (our compose file)...", file=sys.stderr, flush=True)
            hard = bench_raw(client, n, args.image, workdir, hardened=True)
            print(f"N={n}: ComposeRunner cycle-{n}...", file=sys.stderr, flush=True)
            ours = bench_runner(client, n, workdir)
            results.append({"n": n, "raw": raw, "hardened": hard, "runner": ours})
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    print("start-up: seconds from `up -d` to all N containers running (runner: started), ratio to raw")
    print(f"{'N':>5} {'raw idle':>9} {'hardened idle':>14} {'runner':>8} {'runner/raw':>11} "
          f"{'runner exited':>14} {'down raw/hard/ours':>19}")
    for r in results:
        raw, hard, ours = r["raw"], r["hardened"], r["runner"]
        print(f"{r['n']:>5} {raw['all_running_s']:>8.1f}s {hard['all_running_s']:>13.1f}s "
              f"{ours['all_started_s']:>7.1f}s {ours['all_started_s'] / raw['all_running_s']:>11.2f} "
              f"{ours['all_exited_s']:>13.1f}s {raw['down_s']:>7.1f}/{hard['down_s']:.1f}/{ours['down_s']:.1f}s")
    print("host memory per container (MiB, usage minus inactive file cache; RSS):")
    for r in results:
        for kind in ("raw", "hardened", "runner"):
            m = r[kind]["memory"]
            if "mean_mib" in m:
                label = {"raw": "idle python sleep", "hardened": "idle, hardened + init",
                         "runner": f"peer, cycle-{r['n']} mid-run"}[kind]
                print(f"  N={r['n']:<4} {label:<24} mean {m['mean_mib']:.1f}  max {m['max_mib']:.1f}  "
                      f"rss {m['rss_mean_mib']:.1f}  ({m['containers']} containers, {m['source']})")
            else:
                print(f"  N={r['n']:<4} {kind}: {m}")
    for r in results:
        ours = r["runner"]
        ok = ours["deliveries"] == ours["predicted"] and not ours["failed_peers"]
        print(f"  cycle-{r['n']}: {ours['deliveries']:,} deliveries (predicted {ours['predicted']:,})"
              f"{'' if ok else '  MISMATCH/FAILED ' + str(ours['failed_peers'])}")
    if args.json:
        args.json.write_text(json.dumps(results, indent=2) + "\n")
    left = client.containers.list(all=True, filters={"label": "p2p.run"}, sparse=True)
    if any(c.attrs.get("Labels", {}).get("p2p.run", "").startswith("bench-") for c in left):
        print("warning: bench containers left behind; run `p2p clean`", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
