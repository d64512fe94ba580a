"""``make bench``: measure, print a table, write bench/results.json.

Every figure comes from this run on this machine; nothing is a constant.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from generator.predict import predict  # noqa: E402
from generator.spec import RunSpec  # noqa: E402
from testbed.base import Progress, prepare_run  # noqa: E402
from testbed.local import LocalRunner  # noqa: E402

sys.path.insert(0, str(ROOT / "bench"))
from bench_compose import count_deliveries  # noqa: E402


def bench_local(sizes: list[int], repeats: int, runs_root: Path) -> list[dict]:
    rows = []
    for n in sizes:
        spec = RunSpec.parse("mesh", n)
        prediction = predict(spec.graph(), "mesh")
        for r in range(repeats):
            plan = prepare_run(spec, runs_root, prediction)
            t0 = time.perf_counter()
            result = LocalRunner().run(plan, Progress(interval=3600))
            wall = time.perf_counter() - t0
            deliveries, nbytes = count_deliveries(plan.log_dir, n)
            exact = deliveries == prediction.deliveries and nbytes == prediction.bytes and not result.failed_peers
            rows.append({
                "run": spec.name, "repeat": r, "wall_s": round(wall, 3), "deliveries": deliveries,
                "deliveries_per_s": round(deliveries / wall), "exact": exact,
            })
            print(f"local {spec.name} #{r}: {wall:6.2f} s  {deliveries:>9,} deliveries  "
                  f"{deliveries / wall:>10,.0f} /s  exact={exact}", flush=True)
    return rows


def bench_cycle_local(sizes: list[int], runs_root: Path) -> list[dict]:
    """Time to quiescence of cycle-N against N on the local backend: run start to last peer exit."""
    rows = []
    for n in sizes:
        spec = RunSpec.parse("cycle", n)
        prediction = predict(spec.graph(), "cycle")
        plan = prepare_run(spec, runs_root, prediction)
        t0 = time.perf_counter()
        result = LocalRunner().run(plan, Progress(interval=3600))
        wall = time.perf_counter() - t0
        deliveries, nbytes = count_deliveries(plan.log_dir, n)
        exact = deliveries == prediction.deliveries and nbytes == prediction.bytes and not result.failed_peers
        rows.append({"run": spec.name, "n": n, "wall_s": round(wall, 3), "deliveries": deliveries,
                     "bytes": nbytes, "exact": exact})
        print(f"local {spec.name}: {wall:6.2f} s to quiescence  {deliveries:>9,} deliveries  "
              f"{nbytes / 1e6:8.1f} MB  exact={exact}", flush=True)
    return rows


def run_script(script: str, args: list[str], json_file: bool = False) -> dict | list | None:
    """Run a bench script (its output streams through); return its JSON figures.

    Scripts give them either as a last stdout line (``--json``) or in a file (``--json FILE``).
    """
    path = ROOT / "bench" / script
    with tempfile.TemporaryDirectory() as tmp:
        target = Path(tmp) / "figures.json"
        flag = ["--json", str(target)] if json_file else ["--json"]
        out = subprocess.run([sys.executable, str(path), *args, *flag], cwd=ROOT, text=True,
                             stdout=subprocess.PIPE, stderr=sys.stderr)
        print(out.stdout, end="")
        if out.returncode != 0:
            print(f"{script} failed with exit code {out.returncode}", file=sys.stderr)
            return {"error": f"exit code {out.returncode}"}
        try:
            text = target.read_text() if json_file else out.stdout.strip().splitlines()[-1]
            return json.loads(text)
        except (OSError, ValueError, IndexError):
            return {"error": "no JSON result"}


def docker_available() -> bool:
    try:  # bounded: a wedged engine answers nothing, and this must not hang the benchmarks
        return subprocess.run(["docker", "info"], capture_output=True, timeout=30).returncode == 0
    except (OSError, subprocess.TimeoutExpired):
        return False


def main() -> int:
    ap = argparse.ArgumentParser(description="Benchmarks of the p2p testbed; prints figures, writes bench/results.json")
    ap.add_argument("--repeats", type=int, default=2, help="runs per local size (default 2)")
    ap.add_argument("--skip-compose", action="store_true", help="no container benchmarks")
    ap.add_argument("--compose-sizes", default="50,200,1000",
                    help="cycle sizes for the compose start-up benchmark (default 50,200,1000; 1000 takes ~30 min)")
    ap.add_argument("--mixed-n", default="200",
                    help="cycle size of the Python-vs-Rust peers benchmark (bench/mixed_peers.py; default 200)")
    ap.add_argument("--cycle-sizes", default="50,100,200,400", help="cycle sizes for local time to quiescence")
    args = ap.parse_args()

    results: dict = {
        "machine": {"cpus": os.cpu_count(), "python": platform.python_version(), "platform": platform.platform()},
        "started": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
    }
    with tempfile.TemporaryDirectory(prefix="p2p-bench-") as tmp:
        runs_root = Path(tmp)
        results["local"] = bench_local([8, 9], args.repeats, runs_root)
        results["cycle_local"] = bench_cycle_local([int(x) for x in args.cycle_sizes.split(",") if x], runs_root)
        mesh9 = sorted(runs_root.glob("mesh-9-*"))[-1]
        results["analysis"] = run_script("bench_analysis.py", [str(mesh9)])
    results["peer_memory"] = run_script("peer_memory.py", ["--n", "1000"])
    results["fault_trigger"] = run_script("fault_trigger.py", ["--repeats", "3"])
    results["live"] = run_script("live.py", ["--pairs", "5"])  # mesh-9 with and without the live server
    results["outputs"] = run_script("outputs.py", ["--repeat", "2"])  # run-directory size, plot time
    if not args.skip_compose and docker_available():
        sizes = [int(x) for x in args.compose_sizes.split(",") if x]
        small, large = [n for n in sizes if n <= 200], [n for n in sizes if n > 200]
        results["compose"] = []
        # Every variant for the small sizes; above 200 only the two that make the runner's
        # ratio (each variant of 1000 containers is a quarter of an hour here).
        for group, variants in ((small, "raw,hard,same,runner"), (large, "runner,same")):
            if group:
                got = run_script("bench_compose.py", ["--sizes", *map(str, group), "--variants", variants],
                                 json_file=True)
                results["compose"].extend(got if isinstance(got, list) else [got])
        # Python and Rust peers alternating on one cycle: memory per container, start to first dial.
        results["mixed_peers"] = run_script("mixed_peers.py", ["--n", args.mixed_n])
    else:
        results["compose"] = results["mixed_peers"] = None
        print("compose benchmarks skipped (no Docker engine or --skip-compose)")
    out = ROOT / "bench" / "results.json"
    out.write_text(json.dumps(results, indent=2) + "\n")
    print(f"\nresults written to {out.relative_to(ROOT)}")
    print(json.dumps({k: v for k, v in results.items() if k != "local"}, indent=2))
    exact = all(r["exact"] for r in results["local"] + results["cycle_local"])
    others = all((results[k] or {}).get("exact") for k in ("peer_memory", "fault_trigger", "live"))
    others = others and (results["mixed_peers"] is None or results["mixed_peers"].get("exact"))
    return 0 if exact and others else 1


if __name__ == "__main__":
    sys.exit(main())
