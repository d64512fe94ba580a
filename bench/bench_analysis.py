"""Benchmark the analysis on a mesh-9 run (986,400 deliveries).

    python3 bench/bench_analysis.py [RUN_DIR] [--repeat 3] [--workers N]

Without RUN_DIR a mesh-9 run is generated first in a temporary directory by
starting nine local peers (ports 18100-18108, a few seconds). Prints the time of
the analysis without plots (counting, prediction, summary.json, stats.txt, world
views, report), the time of the plots alone, and the peak RSS of this process.
The analysis-without-plots target is < 3 s for the 1M deliveries.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

BASE_PORT = 18100
MESH9_PER_PEER = 109_600


def generate_mesh9(run_dir: Path) -> None:
    from generator.spec import RunSpec

    logs = run_dir / "logs"
    logs.mkdir(parents=True, exist_ok=True)
    RunSpec.parse("mesh", 9).write(run_dir / "spec.json")
    procs = []
    for i in range(9):
        args = [sys.executable, "-m", "peer", "--id", str(i), "--n", "9",
                "--listen", f"127.0.0.1:{BASE_PORT + i}", "--log-dir", str(logs),
                "--expect", str(MESH9_PER_PEER)]
        for j in range(9):
            if j != i:
                args += ["-p", f"{j}=127.0.0.1:{BASE_PORT + j}"]
        procs.append(subprocess.Popen(args, cwd=ROOT))
    codes = [p.wait() for p in procs]
    if any(codes):
        raise SystemExit(f"peers exited with {codes}")


def peak_rss_mb() -> float:
    kb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    kids = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    return kb / 1024, kids / 1024


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("run_dir", nargs="?", type=Path, help="an existing mesh-9 run directory")
    ap.add_argument("--repeat", type=int, default=3, help="timed repetitions (best is reported)")
    ap.add_argument("--workers", type=int, default=None, help="reading processes (default: automatic)")
    ap.add_argument("--json", action="store_true", help="end with one JSON line of the figures (for bench/run.py)")
    args = ap.parse_args()

    tmp = None
    run_dir = args.run_dir
    if run_dir is None:
        tmp = tempfile.TemporaryDirectory(prefix="bench-analysis-")
        run_dir = Path(tmp.name) / "mesh-9"
        t = time.perf_counter()
        generate_mesh9(run_dir)
        print(f"generated mesh-9 run in {time.perf_counter() - t:.1f} s: {run_dir}")

    t = time.perf_counter()
    import analysis  # noqa: F401  (import cost reported separately)
    from analysis import run_analysis
    from analysis.plots import make_plots
    from analysis.stats import analyse

    print(f"import analysis: {time.perf_counter() - t:.2f} s")
    size = sum(f.stat().st_size for f in (run_dir / "logs").glob("*.txt"))
    print(f"input: {run_dir} ({size / 1e6:.1f} MB of logs), cpus: {os.cpu_count()}")

    counting, full = [], []
    for _ in range(args.repeat):
        t = time.perf_counter()
        a = analyse(run_dir, plots=False, workers=args.workers, write=False)
        counting.append(time.perf_counter() - t)
        t = time.perf_counter()
        a = run_analysis(run_dir, plots=False, progress=None, workers=args.workers)
        full.append(time.perf_counter() - t)
    s = a.summary
    print(f"deliveries {s['deliveries']:,} (predicted {s['expected_deliveries']:,}), ok={s['ok']}")
    print(f"analysis, counting only (analyse, write=False):  best {min(counting):.2f} s  "
          f"(runs: {', '.join(f'{x:.2f}' for x in counting)})")
    print(f"analysis without plots (run_analysis plots=False): best {min(full):.2f} s  "
          f"(runs: {', '.join(f'{x:.2f}' for x in full)})  target < 3 s: {'met' if min(full) < 3 else 'MISSED'}")
    rss_self, rss_kids = peak_rss_mb()
    print(f"peak RSS so far: {rss_self:.0f} MB (this process), {rss_kids:.0f} MB (largest reader/peer child)")

    t = time.perf_counter()
    files = make_plots(a, progress=None)
    plots = time.perf_counter() - t
    t = time.perf_counter()
    run_analysis(run_dir, plots=True, progress=None, workers=args.workers)
    total = time.perf_counter() - t
    print(f"plots alone: {plots:.2f} s for {len(files)} files; analysis with plots (run_analysis): {total:.2f} s")
    rss_self, rss_kids = peak_rss_mb()
    print(f"peak RSS: {rss_self:.0f} MB (this process), {rss_kids:.0f} MB (largest child)")
    if tmp is not None:
        tmp.cleanup()
    if args.json:
        print(json.dumps({
            "deliveries": s["deliveries"], "ok": s["ok"], "log_mb": round(size / 1e6, 1),
            "counting_s": round(min(counting), 3), "analysis_no_plots_s": round(min(full), 3),
            "plots_s": round(plots, 3), "analysis_with_plots_s": round(total, 3),
            "peak_rss_mb": round(rss_self), "peak_child_rss_mb": round(rss_kids),
        }))
    return 0


if __name__ == "__main__":
    sys.exit(main())
