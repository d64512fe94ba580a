"""Links that change during a run (flap, shape faults) on the local backend, analysed: every
missing delivery is explained by the interval it was lost in, and by nothing else."""

from __future__ import annotations

import json
import shutil

from analysis.missing import read_listing
from analysis.stats import analyse
from generator.expect import expect_for
from generator.faults import Fault
from generator.spec import PeerOptions, RunSpec
from testbed.base import Progress, prepare_run
from testbed.local import LocalRunner
from tests.testbed.test_faults_local import received, run_with_faults

FLAP = "flap:0-1@deliveries=50,period=0.5,count=3"


def missing_entries(run_dir) -> list[dict]:
    return [m for m in read_listing(run_dir) if m["kind"] == "missing"]


def crosses(path: list[int], u: int, v: int) -> bool:
    return any({a, b} == {u, v} for a, b in zip(path, path[1:]))


def test_flap_losses_are_each_explained_by_a_down_interval(tmp_path):
    # 0.3 s per hop stretches the mesh-6 flood over ~1.5 s: the flap starts mid-flood (50
    # deliveries) and its three downs land while frames still cross 0-1.
    plan, prediction, _ = run_with_faults(tmp_path, "mesh", 6, [FLAP], latency=0.3, idle=2.0)
    recs = [r for r in map(json.loads, (plan.run_dir / "faults.jsonl").read_text().splitlines()) if "fault" in r]
    assert [(r["phase"], r["cycle"]) for r in recs] == [(p, c) for c in (1, 2, 3) for p in ("down", "up")]
    assert all(b["elapsed"] >= a["elapsed"] for a, b in zip(recs, recs[1:]))  # two may share a late look
    s = analyse(plan.run_dir).summary
    missing = missing_entries(plan.run_dir)
    assert s["prediction"] == "upper_bound" and s["explained"], s["unexplained"]
    assert 0 < len(missing) == s["missing_deliveries"] == prediction.deliveries - s["deliveries"]
    assert {m["explained_by"].rsplit(" (", 1)[0] for m in missing} == {FLAP}
    assert all(m["explained_by"].endswith(("(down 1)", "(down 2)", "(down 3)")) for m in missing)
    assert all(crosses(m["path"], 0, 1) for m in missing)
    # Had the link been down at other times (before the flood, after the run) or never,
    # nothing would explain them: NOT OK.
    for shift in (-1000.0, 1000.0, None):
        run = tmp_path / f"shifted{shift}"
        shutil.copytree(plan.run_dir, run)
        for p in (0, 1):
            events = run / "logs" / f"{p}.events.jsonl"
            recs = [json.loads(x) for x in events.read_text().splitlines()]
            for r in recs:
                if r["ev"] in ("partition", "heal") and shift is not None:
                    r["t"] += shift
            kept = [r for r in recs if shift is not None or r["ev"] not in ("partition", "heal")]
            events.write_text("".join(json.dumps(r) + "\n" for r in kept))
        s = analyse(run).summary
        assert s["verdict"] == "NOT OK", shift
        assert all(m["explained_by"] is None for m in missing_entries(run)), shift


def test_lossy_shape_losses_are_each_explained_by_the_shape(tmp_path):
    fault = "shape:0-1,2-3:loss=0.5@deliveries=50"
    plan, prediction, _ = run_with_faults(tmp_path, "mesh", 6, [fault], latency=0.2, idle=2.0)
    s = analyse(plan.run_dir).summary
    missing = missing_entries(plan.run_dir)
    assert s["explained"], s["unexplained"]
    assert 0 < len(missing) == prediction.deliveries - s["deliveries"]
    assert {m["explained_by"] for m in missing} == {f"{fault} (loss=0.5)"}
    assert all(crosses(m["path"], 0, 1) or crosses(m["path"], 2, 3) for m in missing)
    shapes = [json.loads(x) for x in (plan.log_dir / "0.events.jsonl").read_text().splitlines() if '"shape"' in x]
    assert [(e["nbr"], e["loss"], e["latency"]) for e in shapes] == [(1, 0.5, 0.2)]
    # Had the peers applied a loss of 0.05, the hash would drop only some of these frames:
    # the others are unexplained.
    for p in range(6):
        events = plan.log_dir / f"{p}.events.jsonl"
        recs = [json.loads(x) for x in events.read_text().splitlines()]
        events.write_text("".join(json.dumps({**r, "loss": 0.05} if r["ev"] == "shape" else r) + "\n" for r in recs))
    s = analyse(plan.run_dir).summary
    missing = missing_entries(plan.run_dir)
    assert s["verdict"] == "NOT OK"
    assert sum(m["explained_by"] is None for m in missing) > 0


def test_latency_only_shape_stays_exact(tmp_path):
    plan, prediction, _ = run_with_faults(tmp_path, "mesh", 6, ["shape:0-1:latency=0.4@deliveries=50"],
                                          latency=0.2, idle=2.0)
    assert plan.spec.exactly_predictable
    assert "shape:0-1" in (plan.run_dir / "faults.jsonl").read_text()
    logs = received(plan.log_dir, 6)
    assert sum(map(len, logs.values())) == prediction.deliveries == 1950
    assert sum(len(line) + 4 for lines in logs.values() for line in lines) == prediction.bytes
    assert analyse(plan.run_dir).summary["verdict"] == "OK"


def test_a_lossy_shape_from_the_start_replays_the_same_losses(tmp_path):
    # In place before the first frame, a shape's loss is the seeded hash on every frame:
    # two runs drop exactly the same frames (timing differs, the deliveries do not).
    runs = []
    for i in range(2):
        spec = RunSpec.parse("mesh", 5, seed=3, faults=(Fault.parse("shape:0-1,1-2:loss=0.5@0"),),
                             options=PeerOptions(link_deadline=2.0, idle=1.0))
        plan = prepare_run(spec, tmp_path / str(i), expect_for(spec, 2_000_000, False, Progress(interval=60).message))
        LocalRunner().run(plan, Progress(interval=60))
        runs.append({p: sorted(lines) for p, lines in received(plan.log_dir, 5).items()})
    assert runs[0] == runs[1]
    assert 0 < sum(map(len, runs[0].values())) < 320  # mesh-5 delivers 320 without loss
