"""Size of a run directory and time of its analysis with plots, for cycle-50 and starfish-11.

    python3 bench/outputs.py [--runs cycle-50,starfish-11] [--repeat 2] [--json]

Each run is made with the local backend (``p2p run --backend local``, a few seconds),
then analysed ``--repeat`` times by ``p2p analyse RUN_DIR`` in a fresh process (imports
included, as a user waits for them); the best wall time is reported, with and without
plots. Sizes are the bytes of every file in the run directory (``du -sb``), split into
the world-view pages, worldview/ (pictures, data, the one vis-network copy), report.html
and the rest. Targets (issue #14): cycle-50 under 5 MB, its plots in a few seconds.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
P2P = [sys.executable, "-m", "testbed.cli"]


def p2p_command() -> list[str]:
    """The installed ``p2p`` next to this interpreter, else the module."""
    exe = Path(sys.executable).with_name("p2p")
    return [str(exe)] if exe.exists() else P2P


def tree_bytes(path: Path) -> int:
    return sum(f.stat().st_size for f in path.rglob("*") if f.is_file())


def sizes(run_dir: Path) -> dict[str, int]:
    pages = sum(f.stat().st_size for f in run_dir.glob("p2p_graph_*.html"))
    worldview = tree_bytes(run_dir / "worldview") if (run_dir / "worldview").is_dir() else 0
    report = (run_dir / "report.html").stat().st_size if (run_dir / "report.html").exists() else 0
    total = tree_bytes(run_dir)
    return {"total": total, "graph_pages": pages, "worldview_dir": worldview, "report_html": report,
            "rest": total - pages - worldview - report}


def timed(cmd: list[str]) -> float:
    t0 = time.perf_counter()
    subprocess.run(cmd, cwd=ROOT, check=True, stdout=subprocess.DEVNULL)
    return time.perf_counter() - t0


def measure(topology: str, n: int, root: Path, repeat: int) -> dict:
    p2p = p2p_command()
    out = root / f"{topology}-{n}"
    subprocess.run([*p2p, "run", "--backend", "local", "-t", topology, "-n", str(n), "--out", str(out)],
                   cwd=ROOT, check=True, stdout=subprocess.DEVNULL)
    run_dir = sorted(p for p in out.iterdir() if p.is_dir() and not p.is_symlink())[-1]
    no_plots = min(timed([*p2p, "analyse", "--no-plots", str(run_dir)]) for _ in range(repeat))
    with_plots = min(timed([*p2p, "analyse", str(run_dir)]) for _ in range(repeat))
    row = {"run": f"{topology}-{n}", "analyse_s": round(no_plots, 2), "analyse_plots_s": round(with_plots, 2),
           "plots_s": round(with_plots - no_plots, 2), "bytes": sizes(run_dir),
           "files": sum(1 for f in run_dir.rglob("*") if f.is_file())}
    b = row["bytes"]
    print(f"{row['run']:>12}: {b['total'] / 1e6:6.2f} MB in {row['files']} files (pages {b['graph_pages'] / 1e6:.2f}, "
          f"worldview/ {b['worldview_dir'] / 1e6:.2f}, report.html {b['report_html'] / 1e6:.2f}, "
          f"rest {b['rest'] / 1e6:.2f}); analyse {no_plots:.2f} s, with plots {with_plots:.2f} s", flush=True)
    return row


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--runs", default="cycle-50,starfish-11", help="topology-N list (default cycle-50,starfish-11)")
    ap.add_argument("--repeat", type=int, default=2, help="analyses per run, best reported (default 2)")
    ap.add_argument("--json", action="store_true", help="print the figures as JSON on the last line")
    args = ap.parse_args()
    rows = []
    with tempfile.TemporaryDirectory(prefix="p2p-bench-outputs-") as tmp:
        for item in args.runs.split(","):
            topology, n = item.rsplit("-", 1)
            rows.append(measure(topology, int(n), Path(tmp), args.repeat))
    cycle50 = next((r for r in rows if r["run"] == "cycle-50"), None)
    result = {"cpus": os.cpu_count(), "runs": rows,
              "under_target": cycle50 is None or cycle50["bytes"]["total"] < 5_000_000}
    if args.json:
        print(json.dumps(result))
    return 0 if result["under_target"] else 1


if __name__ == "__main__":
    sys.exit(main())
