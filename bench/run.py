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


def count_deliveries(log_dir: Path, n: int) -> tuple[int, int]:
    deliveries = nbytes = 0
    for p in range(n):
        with open(log_dir / f"{p}.txt", "rb") as f:
            for line in f:
                deliveries += 1
                nbytes += len(line) + 3  # + 4-byte prefix - newline
    return deliveries, nbytes


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
    return subprocess.run(["docker", "info"], capture_output=True).returncode == 0


def main() -> int:
    ap = argparse.ArgumentParser(description="Benchmarks of the p2p testbed; prints figures, writes bench/results.json")
    ap.add_argument("--repeats", type=int, default=2, help="runs per local size (default 2)")
    ap.add_argument("--skip-compose", action="store_true", help="no container benchmarks")
    ap.add_argument("--compose-sizes", default="50,200", help="cycle sizes for the compose start-up benchmark")
    args = ap.parse_args()

    results: dict = {
        "machine": {"cpus": os.cpu_count(), "python": platform.python_version(), "platform": platform.platform()},
        "started": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
    }
    with tempfile.TemporaryDirectory(prefix="p2p-bench-") as tmp:
        runs_root = Path(tmp)
        results["local"] = bench_local([8, 9], args.repeats, runs_root)
        mesh9 = sorted(runs_root.glob("mesh-9-*"))[-1]
        results["analysis"] = run_script("bench_analysis.py", [str(mesh9)])
    if not args.skip_compose and docker_available():
        results["compose"] = run_script("bench_compose.py", ["--sizes", *args.compose_sizes.split(",")],
                                        json_file=True)
    else:
        results["compose"] = None
        print("compose benchmarks skipped (no Docker engine or --skip-compose)")
    out = ROOT / "bench" / "results.json"
    out.write_text(json.dumps(results, indent=2) + "\n")
    print(f"\nresults written to {out.relative_to(ROOT)}")
    print(json.dumps({k: v for k, v in results.items() if k != "local"}, indent=2))
    return 0 if all(r["exact"] for r in results["local"]) else 1


if __name__ == "__main__":
    sys.exit(main())
