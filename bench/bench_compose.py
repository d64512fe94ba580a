"""Compose start-up and memory: our ComposeRunner vs a raw `docker compose up -d` of idle containers.

    python3 bench/bench_compose.py [--sizes 50 200] [--variants raw,hard,same,runner] [--json FILE]

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

import yaml  # noqa: E402

import docker  # noqa: E402
from generator.predict import predict  # noqa: E402
from generator.render import container_user  # noqa: E402
from generator.spec import RunSpec  # noqa: E402
from peer.logfiles import events_file, messages_file  # noqa: E402
from testbed.base import Progress, RunnerError, prepare_run  # noqa: E402
from testbed.compose import COMPOSE_PARALLEL, ComposeRunner, parallel_args  # noqa: E402
from testbed.containers import EXITED_STATES, STARTED_STATES, ContainerWatch  # noqa: E402
from testbed.engine import clean_by_label  # noqa: E402
from testbed.rendering import START_FILE, own_log_dir, render_plan  # noqa: E402

PARALLEL: int | None = COMPOSE_PARALLEL  # --parallel: for every variant alike
START_PARALLEL: int | None = None  # --start-parallel: the runner only (StagedStart)
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
    ids = [c.id for c in client.containers.list(filters={"label": f"p2p.run={run_id}", "status": "running"},
                                                sparse=True)]  # not sparse: one inspect per container
    samples = [m for m in (container_memory(i) for i in ids) if m is not None]
    if samples:
        used = [u for u, _ in samples]
        return {"containers": len(samples), "source": "cgroup", "mean_mib": statistics.mean(used),
                "max_mib": max(used), "rss_mean_mib": statistics.mean(r for _, r in samples)}
    used = docker_stats_mib(ids)
    return {"containers": len(used), "source": "docker stats", "mean_mib": statistics.mean(used) if used else 0.0,
            "max_mib": max(used, default=0.0), "rss_mean_mib": float("nan")}


def count(watch: ContainerWatch, states: frozenset[str]) -> int:
    return sum(s in states for s in watch.states(time.monotonic()).values())


def count_deliveries(log_dir: Path, n: int) -> tuple[int, int]:
    """(deliveries, wire bytes) from the message logs: a line is one frame of 4 + len(JSON) bytes."""
    deliveries = nbytes = 0
    for p in range(n):
        with open(messages_file(log_dir, p), "rb") as f:
            for line in f:
                deliveries += 1
                nbytes += len(line) + 3  # + 4-byte prefix - newline
    return deliveries, nbytes


def flood_span(log_dir: Path, n: int) -> float | None:
    """Seconds from the first peer passing the start barrier to the last delivery anywhere (peer clocks)."""
    go, last = [], []
    for p in range(n):
        try:
            lines = events_file(log_dir, p).read_text().splitlines()
        except OSError:
            continue
        for line in lines:
            rec = json.loads(line)
            if rec["ev"] == "go":
                go.append(rec["t"])
            elif rec["ev"] == "summary" and rec.get("last_delivery"):
                last.append(rec["last_delivery"])
    return max(last) - min(go) if go and last else None


# ---- raw compose -----------------------------------------------------------------------------


def raw_compose(n: int, run_id: str, image: str) -> str:
    lines = [f"name: p2p-{run_id}", "services:"]
    for i in range(n):
        lines += [
            f"  idle-{i}:",
            f"    image: {image}",
            "    pull_policy: never",
            f"    entrypoint: {json.dumps(IDLE_CMD)}",
            f"    labels: {{p2p.run: {run_id}, p2p.peer: '{i}'}}",
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


def same_file_compose(n: int, run_id: str, workdir: Path) -> tuple[str, Path]:
    """The very file ComposeRunner writes for cycle-N (start barrier included), and its log dir."""
    spec = RunSpec.parse("cycle", n)
    plan = prepare_run(spec, workdir / "runs", predict(spec.graph(), spec.topology), run_id=run_id)
    own_log_dir(plan.log_dir, container_user())
    return render_plan(plan, workdir / f"{run_id}.yml", f"p2p-{run_id}", barrier=True), plan.log_dir


def bench_raw(client, n: int, image: str, workdir: Path, kind: str = "raw") -> dict:
    """Plain `docker compose up -d` of ``kind``: raw idle, hardened idle, or the runner's own file."""
    run_id = f"bench-{kind}-{n}-{secrets.token_hex(3)}"
    path = workdir / f"{run_id}.yml"
    log_dir = None
    if kind == "same":
        text, log_dir = same_file_compose(n, run_id, workdir)
    else:
        text = hardened_idle_compose(n, run_id, workdir) if kind == "hard" else raw_compose(n, run_id, image)
    path.write_text(text)
    base = ["docker", "compose", *parallel_args(PARALLEL), "-p", f"p2p-{run_id}", "-f", str(path)]
    log = workdir / f"{run_id}.log"  # a file, not a pipe: 200 containers' progress lines would fill a pipe
    res: dict = {"run_id": run_id}
    up = None
    # Events, not listings, so that watching does not slow down what is watched.
    with ContainerWatch(client, run_id, relist=600) as watch:
        try:
            with open(log, "wb") as out:
                t0 = time.monotonic()
                up = subprocess.Popen([*base, "up", "-d"], stdout=out, stderr=subprocess.STDOUT)
            while count(watch, STARTED_STATES) < n:
                if up.poll() not in (None, 0):
                    raise RuntimeError(f"{run_id}: up -d failed: {log.read_text()[-2000:]}")
                if time.monotonic() - t0 > 3600:
                    raise RuntimeError(f"{run_id}: not all running after 3600 s: {log.read_text()[-2000:]}")
                time.sleep(0.1)
            res["all_running_s"] = time.monotonic() - t0
            up.wait()
            res["up_returned_s"] = max(res["all_running_s"], time.monotonic() - t0)
            if up.returncode != 0:
                raise RuntimeError(f"{run_id}: up -d failed: {log.read_text()[-2000:]}")
            res["memory"] = memory_of(client, run_id)
            if log_dir is not None:  # let the peers flood, as the runner would, and time it
                go = time.monotonic()
                (log_dir / START_FILE).touch()
                while count(watch, EXITED_STATES) < n:
                    if time.monotonic() - go > 3600:
                        raise RuntimeError(f"{run_id}: peers still running after 3600 s")
                    time.sleep(0.1)
                res["quiescence_s"] = time.monotonic() - go
                res["deliveries"] = sum(len(messages_file(log_dir, p).read_bytes().splitlines()) for p in range(n))
                res["flood_s"] = flood_span(log_dir, n)
            t = time.monotonic()
            subprocess.run([*base, "down", "-v", "-t", "1"], capture_output=True, timeout=3600)
            res["down_s"] = time.monotonic() - t
        finally:
            if up is not None and up.poll() is None:
                up.kill()
                up.wait()
                subprocess.run([*base, "down", "-v", "-t", "1"], capture_output=True, timeout=3600)
            res["cleanup_problem"] = sweep(client, run_id)
    return res


def sweep(client, run_id: str) -> str | None:
    """Remove what is left by label; a stale network (engine bug) is reported, not fatal to the bench."""
    try:
        clean_by_label(client, run_id)
    except RunnerError as e:
        print(f"warning: {e}", file=sys.stderr)
        return str(e)
    return None


# ---- our runner ------------------------------------------------------------------------------


def bench_runner(client, n: int, workdir: Path) -> dict:
    spec = RunSpec.parse("cycle", n)
    pred = predict(spec.graph(), spec.topology)
    run_id = f"bench-run-{n}-{secrets.token_hex(3)}"
    plan = prepare_run(spec, workdir / "runs", pred, run_id=run_id)
    runner = ComposeRunner(client, poll=0.1, parallel=PARALLEL, start_parallel=START_PARALLEL)
    mem: dict = {}
    stop = threading.Event()

    def sample() -> None:
        # Own client (the runner's is busy in the main thread); while all N run, keep the
        # sample with the highest mean: the peers at their fullest, mid-flood.
        c = docker.from_env(timeout=300)
        with ContainerWatch(c, run_id, relist=600) as watch:
            while not stop.is_set():
                if count(watch, frozenset({"running"})) >= n:
                    m = memory_of(c, run_id)
                    if m.get("containers") == n and m["mean_mib"] > mem.get("mean_mib", -1):
                        mem.update(m)
                stop.wait(max(1.0, n / 50))

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    try:
        result = runner.run(plan, Progress(stream=io.StringIO()))
    finally:
        stop.set()
        sampler.join(timeout=120)
        problem = sweep(client, run_id)
    delivered, nbytes = count_deliveries(plan.log_dir, n)
    t = runner.timings
    return {
        "run_id": run_id,
        "all_started_s": t.get("all_started"),
        "up_returned_s": t.get("up_returned"),
        "all_exited_s": t.get("all_exited"),
        "quiescence_s": t["all_exited"] - t["all_started"],
        "flood_s": flood_span(plan.log_dir, n),
        "collect_s": t.get("collect"),
        "down_s": t.get("down"),
        "failed_peers": result.failed_peers,
        "deliveries": delivered,
        "predicted": pred.deliveries,
        "bytes": nbytes,
        "predicted_bytes": pred.bytes,
        "memory": mem or {"note": "peers exited before all were running at once"},
        "cleanup_problem": result.cleanup_problem or problem,
    }


VARIANTS = {
    "raw": "raw `up -d`, idle python sleep",
    "hard": "raw `up -d`, idle in our hardened file",
    "same": "raw `up -d` of the runner's own file",
    "runner": "ComposeRunner",
}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sizes", type=int, nargs="+", default=[50, 200])
    ap.add_argument("--variants", default="raw,hard,same,runner",
                    help=f"comma-separated, of {', '.join(VARIANTS)} (default all)")
    ap.add_argument("--image", default="p2p-peer:latest")
    ap.add_argument("--parallel", type=int, default=COMPOSE_PARALLEL,
                    help="`docker compose --parallel` for every variant (default: the runner's own setting)")
    ap.add_argument("--start-parallel", type=int, default=None,
                    help="runner only: create with `up -d --no-start`, then start N containers at a time")
    ap.add_argument("--json", type=Path, help="also write the figures to this file")
    args = ap.parse_args(argv)
    global PARALLEL, START_PARALLEL
    PARALLEL, START_PARALLEL = args.parallel, args.start_parallel
    variants = [v for v in args.variants.split(",") if v]
    if not variants or set(variants) - set(VARIANTS):
        ap.error(f"--variants: choose from {', '.join(VARIANTS)}")
    client = docker.from_env(timeout=300)
    ComposeRunner(client).ensure_image(Progress(stream=sys.stderr))
    workdir = Path(tempfile.mkdtemp(prefix="p2p-bench-"))
    results = []
    try:
        for n in args.sizes:
            row: dict = {"n": n, "parallel": PARALLEL, "start_parallel": START_PARALLEL}
            for v in variants:
                print(f"N={n}: {VARIANTS[v]}...", file=sys.stderr, flush=True)
                row[v] = bench_runner(client, n, workdir) if v == "runner" else bench_raw(client, n, args.image, workdir, v)
            results.append(row)
            if args.json:  # after every size: a long bench that dies late keeps what it measured
                args.json.write_text(json.dumps(results, indent=2) + "\n")
    except BaseException:
        print(f"bench_compose: kept {workdir} (run directories and compose logs) for a look", file=sys.stderr)
        raise
    shutil.rmtree(workdir, ignore_errors=True)
    report(results, variants)
    left = client.containers.list(all=True, filters={"label": "p2p.run"}, sparse=True)
    if any(c.attrs.get("Labels", {}).get("p2p.run", "").startswith("bench-") for c in left):
        print("warning: bench containers left behind; run `p2p clean`", file=sys.stderr)
        return 1
    return 0


def report(results: list[dict], variants: list[str]) -> None:
    def started(r: dict, v: str) -> float:
        return r[v]["all_started_s"] if v == "runner" else r[v]["all_running_s"]

    print("start-up: seconds from `up -d` until all N containers run; runner: ratio to each raw variant"
          f" (`docker compose --parallel`: {PARALLEL if PARALLEL is not None else 'Compose default'})")
    print(f"{'N':>5} " + " ".join(f"{v:>8}" for v in variants)
          + "".join(f" {'runner/' + v:>12}" for v in variants if v != "runner" and "runner" in variants))
    for r in results:
        line = f"{r['n']:>5} " + " ".join(f"{started(r, v):>7.1f}s" for v in variants if v in r)
        if "runner" in variants:
            line += "".join(f" {started(r, 'runner') / started(r, v):>12.2f}" for v in variants if v != "runner")
        print(line)
    print("quiescence (start barrier -> all containers exited), flood (barrier -> last delivery), collect, down:")
    for r in results:
        for v in ("same", "runner"):
            if v in r:
                x = r[v]
                flood = f"{x['flood_s']:6.1f}s" if x.get("flood_s") is not None else "     ?"
                print(f"  cycle-{r['n']:<5} {v:<7} quiescence {x['quiescence_s']:7.1f}s  flood {flood}  "
                      f"deliveries {x['deliveries']:>10,}  down {x['down_s']:.1f}s"
                      + (f"  collect {x['collect_s']:.1f}s" if x.get("collect_s") is not None else ""))
    print("host memory per container (MiB, usage minus inactive file cache; RSS):")
    for r in results:
        for v in (v for v in variants if v in r):
            m = r[v]["memory"]
            if "mean_mib" in m:
                print(f"  N={r['n']:<5} {VARIANTS[v]:<40} mean {m['mean_mib']:.1f}  max {m['max_mib']:.1f}  "
                      f"rss {m['rss_mean_mib']:.1f}  ({m['containers']} containers, {m['source']})")
            else:
                print(f"  N={r['n']:<5} {v}: {m}")
    for r in results:
        if "runner" in r:
            ours = r["runner"]
            ok = (ours["deliveries"] == ours["predicted"] and ours.get("bytes") == ours.get("predicted_bytes")
                  and not ours["failed_peers"])
            print(f"  cycle-{r['n']}: {ours['deliveries']:,} deliveries (predicted {ours['predicted']:,}), "
                  f"{ours.get('bytes', 0):,} bytes (predicted {ours.get('predicted_bytes', 0):,})"
                  f"{'' if ok else '  MISMATCH/FAILED ' + str(ours['failed_peers'])}")
        problems = [r[v].get("cleanup_problem") for v in variants if v in r and r[v].get("cleanup_problem")]
        for pr in problems:
            print(f"  N={r['n']}: clean-up problem: {pr[:300]}")


if __name__ == "__main__":
    sys.exit(main())
