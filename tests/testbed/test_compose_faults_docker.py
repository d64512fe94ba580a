"""Faults on real containers (docker SDK kill/pause/unpause, partitions via the shared log dir)."""

from __future__ import annotations

import io
import json

import pytest

from analysis.missing import read_listing
from analysis.stats import analyse
from generator.expect import expect_for
from generator.faults import Fault
from generator.spec import PeerOptions, RunSpec
from testbed.base import Progress, prepare_run

pytestmark = [pytest.mark.docker, pytest.mark.slow]

# Fixtures `runner` (a ComposeRunner, image built) and `run_ids` (random run ids, cleaned
# up by label whatever happens) are in tests/testbed/conftest.py.


def run(runner, run_ids, tmp_path, topology, n, faults, **opts):
    spec = RunSpec.parse(topology, n, faults=tuple(Fault.parse(f) for f in faults),
                         options=PeerOptions(**{"link_deadline": 8.0, "idle": 1.5, **opts}))
    prediction = expect_for(spec, 2_000_000, False, Progress(stream=io.StringIO()).message)
    plan = prepare_run(spec, tmp_path, prediction, run_id=run_ids(f"{topology}{n}"))
    result = runner.run(plan, Progress(stream=io.StringIO()))
    return plan, prediction, result


def test_container_killed_before_it_authors_leaves_exactly_mesh_4(runner, run_ids, tmp_path):
    plan, prediction, result = run(runner, run_ids, tmp_path, "mesh", 5, ["kill:4@0"])
    s = analyse(plan.run_dir).summary
    assert s["deliveries"] == s["expected_deliveries"] == prediction.deliveries == 60
    assert s["bytes"] == s["expected_bytes"] == prediction.bytes
    assert all(result.exit_codes[p] == 2 for p in range(4))  # each reported the link to 4 that never came
    assert {f["nbr"] for f in s["link_failures"]} == {4}


def test_container_killed_mid_run_lists_the_missing_deliveries(runner, run_ids, tmp_path):
    # An early trigger: the runner sees progress at ~0.1 s steps, and a whole mesh-8 takes ~1 s.
    plan, prediction, result = run(runner, run_ids, tmp_path, "mesh", 8, ["kill:3@deliveries=3000"])
    s = analyse(plan.run_dir).summary
    assert s["prediction"] == "upper_bound"
    assert 3_000 <= s["deliveries"] < s["expected_deliveries"] == 109_592
    assert s["missing_deliveries"] == s["expected_deliveries"] - s["deliveries"]
    index = json.loads((plan.run_dir / "missing.json").read_text())
    listing = read_listing(plan.run_dir)
    missing = {"missing": [m for m in listing if m["kind"] == "missing"]}
    # Every one is listed and explained by the kill of peer 3.
    assert len(missing["missing"]) == index["missing_count"] == s["missing_deliveries"]
    assert {m["explained_by"] for m in missing["missing"]} == {f for f in s["faults"] if f.startswith("kill:3")}
    assert all(3 in m["path"] for m in missing["missing"])
    assert result.exit_codes[3] == 137  # SIGKILL


def test_partition_and_pause_in_containers(runner, run_ids, tmp_path):
    plan, prediction, result = run(runner, run_ids, tmp_path, "cycle", 6, ["partition:0-1@0", "pause:3@0.2",
                                                                       "resume:3@1.2"])
    s = analyse(plan.run_dir).summary
    assert s["deliveries"] == s["expected_deliveries"] == prediction.deliveries == 30  # a line of 6
    assert result.failed_peers == []


def test_flap_and_lossy_shape_in_containers(runner, run_ids, tmp_path):
    """The link-change faults reach containers through the same control file: a flap's downs
    and a lossy shape each explain exactly the deliveries they cost (tests/testbed/
    test_link_changes_local.py has the local twin and the counter-checks)."""
    flap, shape = "flap:0-1@deliveries=50,period=0.5,count=3", "shape:2-3:loss=0.5@deliveries=50"
    # 0.3 s per hop stretches the mesh-6 flood over ~1.5 s, so both land mid-flood.
    plan, prediction, _ = run(runner, run_ids, tmp_path, "mesh", 6, [flap, shape], latency=0.3, idle=2.0)
    recs = [json.loads(x) for x in (plan.run_dir / "faults.jsonl").read_text().splitlines()]
    assert [(r["phase"], r["cycle"]) for r in recs if r.get("action") == "flap"] == [
        (p, c) for c in (1, 2, 3) for p in ("down", "up")]
    s = analyse(plan.run_dir).summary
    missing = [m for m in read_listing(plan.run_dir) if m["kind"] == "missing"]
    assert s["prediction"] == "upper_bound" and s["explained"], s["unexplained"]
    assert 0 < len(missing) == s["missing_deliveries"] == prediction.deliveries - s["deliveries"]
    assert {m["explained_by"].rsplit(" (", 1)[0] for m in missing} <= {flap, shape}
