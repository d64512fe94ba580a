"""How late a delivery-triggered fault fires, and whether every such run is judged explained.

Runs ``kill:P@deliveries=X`` on the local backend a few times per (topology, X) and reads
faults.jsonl: overshoot = the delivery count the runner recorded when it fired minus X.
Each run is also analysed; the verdict must be OK or EXPLAINED (exit status 0).

    python bench/fault_trigger.py [--repeats 5] [--json]
"""

from __future__ import annotations

import argparse
import io
import json
import statistics
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from analysis.stats import analyse  # noqa: E402
from generator.expect import expect_for  # noqa: E402
from generator.faults import Fault  # noqa: E402
from generator.spec import PeerOptions, RunSpec  # noqa: E402
from testbed.base import Progress, prepare_run  # noqa: E402
from testbed.local import LocalRunner  # noqa: E402

CASES = (("mesh", 7, 1_000), ("mesh", 7, 5_000), ("mesh", 8, 20_000), ("mesh", 8, 60_000))


def one(runs: Path, topology: str, n: int, trigger: int) -> dict:
    fault = f"kill:3@deliveries={trigger}"
    spec = RunSpec.parse(topology, n, faults=(Fault.parse(fault),), options=PeerOptions(idle=1.0, link_deadline=2.0))
    quiet = Progress(stream=io.StringIO())
    plan = prepare_run(spec, runs, expect_for(spec, 2_000_000, False, quiet.message))
    LocalRunner().run(plan, quiet)
    fired = [json.loads(x) for x in (plan.run_dir / "faults.jsonl").read_text().splitlines()]
    fired = [r for r in fired if r.get("fault") == fault]
    s = analyse(plan.run_dir).summary
    return {"run": spec.name, "trigger": trigger, "fired_at": fired[0]["deliveries"] if fired else None,
            "verdict": s["verdict"], "explained": s["explained"], "deliveries": s["deliveries"]}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeats", type=int, default=5, help="runs per case (default 5)")
    ap.add_argument("--json", action="store_true", help="also print the figures as one JSON line (last line)")
    args = ap.parse_args()
    rows, summary = [], []
    with tempfile.TemporaryDirectory(prefix="p2p-trigger-") as tmp:
        for topology, n, trigger in CASES:
            got = [one(Path(tmp), topology, n, trigger) for _ in range(args.repeats)]
            rows += got
            over = [r["fired_at"] - trigger for r in got if r["fired_at"] is not None]
            line = {"case": f"{topology}-{n} kill@deliveries={trigger}", "runs": len(got),
                    "fired": len(over), "overshoot_median": statistics.median(over) if over else None,
                    "overshoot_max": max(over) if over else None,
                    "explained": sum(r["explained"] for r in got)}
            summary.append(line)
            print(f"{line['case']:32s} fired {line['fired']}/{line['runs']}  overshoot median "
                  f"{line['overshoot_median']}  max {line['overshoot_max']}  explained {line['explained']}/"
                  f"{line['runs']}", flush=True)
    ok = all(r["explained"] and r["fired_at"] is not None and r["fired_at"] >= r["trigger"] for r in rows)
    if args.json:
        print(json.dumps({"cases": summary, "exact": ok}))
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
