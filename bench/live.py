"""Does watching a run slow it? Local mesh-9 with and without the live server, in interleaved pairs.

"With": the server runs in a thread of the runner's process (as ``p2p run --live``) and a
client polls it as the page and a Prometheus scrape would: ``/state.json`` every 1 s (the
page's rate), ``/metrics`` every 5 s (a short scrape interval), so every message log is read
as the run writes it. "Without": the
same run, nothing else. The pairs alternate which goes first; the figure is run wall time
(runner.run: start to every peer exited).
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import threading
import time
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from analysis.live import LiveSetup, LiveState  # noqa: E402
from generator.predict import predict  # noqa: E402
from generator.spec import RunSpec  # noqa: E402
from testbed.base import Progress, prepare_run  # noqa: E402
from testbed.live import LiveServer  # noqa: E402
from testbed.local import LocalRunner  # noqa: E402


def poll(url: str, stop: threading.Event, counts: dict[str, int]) -> None:
    """Fetch the page's state every second and the metrics every fifth second, until ``stop``."""
    tick = 0
    while not stop.wait(1.0):
        for path in ("state.json", "metrics") if tick % 5 == 4 else ("state.json",):
            with urllib.request.urlopen(url + path, timeout=10) as r:
                r.read()
            counts[path] = counts.get(path, 0) + 1
        tick += 1


def one_run(spec: RunSpec, prediction, runs_root: Path, live: bool) -> dict:
    plan = prepare_run(spec, runs_root, prediction)
    counts: dict[str, int] = {}
    state = LiveState(LiveSetup.of(plan.run_dir, spec, prediction))
    server = LiveServer(state, 0).start() if live else None
    stop = threading.Event()
    poller = threading.Thread(target=poll, args=(server.url, stop, counts)) if server else None
    if poller:
        poller.start()
    t0, cpu0 = time.perf_counter(), time.process_time()
    result = LocalRunner().run(plan, Progress(interval=3600))
    wall, cpu = time.perf_counter() - t0, time.process_time() - cpu0
    final = None
    if server:
        stop.set()
        poller.join()
        final = state.snapshot(fresh=True)["deliveries"]
        server.stop()
    ok = not result.failed_peers and (final is None or final == prediction.deliveries)
    # CPU of this process (runner and server threads, not the peers) while the run lasted.
    return {"live": live, "wall_s": round(wall, 3), "runner_cpu_s": round(cpu, 3), "ok": ok, "polls": counts}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--pairs", type=int, default=5)
    ap.add_argument("--n", type=int, default=9, help="mesh size (default 9)")
    ap.add_argument("--json", action="store_true", help="print the figures as JSON on the last line")
    args = ap.parse_args()
    spec = RunSpec.parse("mesh", args.n)
    prediction = predict(spec.graph(), "mesh")
    rows = []
    with tempfile.TemporaryDirectory(prefix="p2p-bench-live-") as tmp:
        for i in range(args.pairs):
            for live in ((False, True) if i % 2 == 0 else (True, False)):
                row = one_run(spec, prediction, Path(tmp), live)
                rows.append(row)
                print(f"pair {i}: {'with' if live else 'without'} --live  {row['wall_s']:6.2f} s  runner CPU {row['runner_cpu_s']:.2f} s  "
                      f"ok={row['ok']}  "
                      f"polls={row['polls']}", flush=True)
    without = [r["wall_s"] for r in rows if not r["live"]]
    with_live = [r["wall_s"] for r in rows if r["live"]]
    figures = {
        "run": spec.name, "pairs": args.pairs, "rows": rows,
        "without_median_s": statistics.median(without), "with_median_s": statistics.median(with_live),
        "without_range_s": [min(without), max(without)], "with_range_s": [min(with_live), max(with_live)],
        "paired_diff_s": [round(sum(r["wall_s"] * (1 if r["live"] else -1) for r in rows[i:i + 2]), 3)
                          for i in range(0, len(rows), 2)],  # with minus without, pair by pair
        "runner_cpu_median_s": {"without": statistics.median(r["runner_cpu_s"] for r in rows if not r["live"]),
                                "with": statistics.median(r["runner_cpu_s"] for r in rows if r["live"])},
        "exact": all(r["ok"] for r in rows),
    }
    print(f"with minus without, per pair: {figures['paired_diff_s']} s; runner CPU median "
          f"{figures['runner_cpu_median_s']}")
    print(f"{spec.name} local: without --live median {figures['without_median_s']:.2f} s "
          f"({min(without):.2f}-{max(without):.2f}), with --live median {figures['with_median_s']:.2f} s "
          f"({min(with_live):.2f}-{max(with_live):.2f})")
    if args.json:
        print(json.dumps(figures))
    return 0 if figures["exact"] else 1


if __name__ == "__main__":
    sys.exit(main())
