"""Faults on the local backend: kill, pause/resume, partition, through the real runner."""

from pathlib import Path

from generator.expect import expect_for
from generator.faults import Fault
from generator.spec import PeerOptions, RunSpec
from testbed.base import Progress, prepare_run
from testbed.local import LocalRunner


def run_with_faults(tmp_path, topology, n, faults, stagger=0.0, **opts):
    spec = RunSpec.parse(topology, n, faults=tuple(Fault.parse(f) for f in faults),
                         options=PeerOptions(**{"link_deadline": 2.0, "idle": 1.0, **opts}))
    prediction = expect_for(spec, 2_000_000, False, Progress(interval=60).message)
    plan = prepare_run(spec, tmp_path, prediction)
    result = LocalRunner(stagger=stagger).run(plan, Progress(interval=60))
    return plan, prediction, result


def received(log_dir: Path, n: int) -> dict[int, list[bytes]]:
    return {p: (log_dir / f"{p}.txt").read_bytes().splitlines() for p in range(n) if (log_dir / f"{p}.txt").exists()}


def test_peer_killed_before_it_authors_leaves_exactly_mesh_4(tmp_path):
    # Peers started 0.2 s apart (a loaded machine): the survivors are up long before the last one.
    plan, prediction, result = run_with_faults(tmp_path, "mesh", 5, ["kill:4@0"], stagger=0.2)
    assert prediction.deliveries == 60
    logs = received(plan.log_dir, 5)
    assert sum(map(len, logs.values())) == 60
    assert all(b'"id":4' not in line and b",4" not in line for lines in logs.values() for line in lines)
    # The survivors waited for the link to 4 until the deadline, then reported it and exit 2.
    assert result.exit_codes[4] != 0 and all(result.exit_codes[p] == 2 for p in range(4))
    assert all("never came up" in (plan.log_dir / f"{p}.stderr.txt").read_text() for p in range(4))
    assert "kill:4@0" in (plan.run_dir / "faults.jsonl").read_text()
    # Peer 4 was gone before anyone dialed: no survivor ever took a link to it for up (a dial
    # caught in its listening socket's backlog would make the survivor author early and give up
    # before the others' messages, sent at their link deadlines, arrived).
    import json

    for p in range(4):
        recs = [json.loads(x) for x in (plan.log_dir / f"{p}.events.jsonl").read_text().splitlines()]
        assert not any(r["ev"] == "link_up" and r["nbr"] == 4 for r in recs), p


def test_peer_killed_mid_run_loses_some_deliveries_and_the_rest_finish(tmp_path):
    plan, prediction, result = run_with_faults(tmp_path, "mesh", 8, ["kill:3@deliveries=15000"])
    total = sum(map(len, received(plan.log_dir, 8).values()))
    assert 15_000 <= total < prediction.deliveries == 109_592
    assert result.exit_codes[3] == -9
    assert all(result.exit_codes[p] == 0 for p in range(8) if p != 3)


def test_pause_and_resume_only_delay(tmp_path):
    plan, prediction, result = run_with_faults(tmp_path, "mesh", 6, ["pause:2@0.1", "resume:2@1.0"])
    logs = received(plan.log_dir, 6)
    assert sum(map(len, logs.values())) == prediction.deliveries == 1950
    assert sum(len(line) + 4 for lines in logs.values() for line in lines) == prediction.bytes


def test_partition_from_start_is_predicted_exactly(tmp_path):
    plan, prediction, result = run_with_faults(tmp_path, "cycle", 6, ["partition:0-1@0"])
    logs = received(plan.log_dir, 6)
    assert prediction.deliveries == 30
    assert sum(map(len, logs.values())) == 30
    assert result.failed_peers == []


def test_analysis_lists_exactly_the_deliveries_a_mid_run_kill_lost(tmp_path):
    from analysis.stats import analyse

    # mesh-8 takes about a second: long enough for the runner to see 15,000 deliveries mid-run.
    plan, prediction, result = run_with_faults(tmp_path, "mesh", 8, ["kill:3@deliveries=15000"])
    a = analyse(plan.run_dir)
    s = a.summary
    assert s["prediction"] == "upper_bound"
    assert s["deliveries"] < s["expected_deliveries"] == 109_592
    assert s["missing_deliveries"] == s["expected_deliveries"] - s["deliveries"] > 0
    assert s["unexpected_deliveries"] == 0
    import json

    from analysis.missing import read_listing

    index = json.loads((plan.run_dir / "missing.json").read_text())
    listing = read_listing(plan.run_dir)
    missing = {"missing": [m for m in listing if m["kind"] == "missing"]}
    # Every one is listed and explained by the kill of peer 3.
    assert len(missing["missing"]) == index["missing_count"] == s["missing_deliveries"]
    assert {m["explained_by"] for m in missing["missing"]} == {f for f in s["faults"] if f.startswith("kill:3")}
    # Every missing delivery is a simple path of the mesh; paths through the killed peer dominate.
    assert all(len(set(m["path"])) == len(m["path"]) and m["path"][0] == m["author"] for m in missing["missing"])
    assert all(3 in m["path"] for m in missing["missing"])


def test_restarted_peer_rejoins_its_links(tmp_path):
    import json

    plan, prediction, result = run_with_faults(tmp_path, "mesh", 5, ["restart:2@0.3"])
    assert result.exit_codes[2] == 0  # the second incarnation finished normally
    starts = [json.loads(x) for x in (plan.log_dir / "2.events.jsonl").read_text().splitlines()]
    assert sum(e["ev"] == "start" for e in starts) == 2
    for p in (0, 1, 3, 4):
        events = [json.loads(x) for x in (plan.log_dir / f"{p}.events.jsonl").read_text().splitlines()]
        ups = [e for e in events if e["ev"] == "link_up" and e["nbr"] == 2]
        assert len(ups) >= 2, f"peer {p} did not link up with the restarted peer 2 again"
    # The new incarnation authored again: every other peer got peer 2's message more than once.
    for p in (0, 1, 3, 4):
        lines = (plan.log_dir / f"{p}.txt").read_bytes().splitlines()
        assert sum(line.startswith(b'{"id":2,"hops":[2]}') for line in lines) == 2
