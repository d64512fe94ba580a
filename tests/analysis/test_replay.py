"""What a rerun must reproduce (analysis/replay.py), on made-up summaries and delivery sets."""

from collections import Counter
from dataclasses import asdict

from analysis.replay import compare_runs, deterministic, set_digest
from generator.faults import Fault
from testbed.record import record_differences


def _summary(protocol="v1", prediction="exact", deliveries=40, nbytes=1040, missing=None, ttq=0.05, faults=()):
    return {"spec": {"protocol": protocol, "faults": list(faults)}, "prediction": prediction,
            "deliveries": deliveries, "bytes": nbytes, "missing_deliveries": missing,
            "time_to_quiescence": ttq, "peers": [{"duration": 0.3}, {"duration": 0.4}]}


LINES = Counter({(1, '{"id":0,"hops":[0]}'): 1, (2, '{"id":0,"hops":[0,1]}'): 1})


def test_which_runs_must_reproduce_their_delivery_set():
    assert deterministic({"protocol": "v1", "faults": []}, "upper_bound")  # seeded lossy v1
    assert deterministic({"protocol": "gossip"}, "exact")
    assert not deterministic({"protocol": "flood", "faults": []}, "deliveries")
    timed_kill = asdict(Fault.parse("kill:3@0.5"))  # as spec.json holds it
    assert deterministic({"protocol": "v1", "faults": [asdict(Fault.parse("kill:3@0"))]}, "upper_bound")
    assert not deterministic({"protocol": "v1", "faults": [timed_kill]}, "upper_bound")


def test_identical_lossy_rerun_passes_and_timings_never_fail():
    orig = _summary(prediction="upper_bound", deliveries=30, nbytes=800, missing=10)
    new = _summary(prediction="upper_bound", deliveries=30, nbytes=800, missing=10, ttq=0.09)
    replay = compare_runs(orig, LINES, [new], [Counter(LINES)])
    assert not replay.failed
    by = {c.what: c for c in replay.checks}
    assert by["delivery set"].must_equal and by["delivery set"].equal
    assert not by["time_to_quiescence"].must_equal and not by["time_to_quiescence"].equal


def test_one_different_line_fails_the_set_even_with_equal_counts():
    other = Counter({(1, '{"id":0,"hops":[0]}'): 1, (2, '{"id":0,"hops":[0,3]}'): 1})
    assert set_digest(other) != set_digest(LINES) and set_digest(Counter(LINES)) == set_digest(LINES)
    replay = compare_runs(_summary(prediction="upper_bound"), LINES, [_summary(prediction="upper_bound")], [other])
    assert [c.what for c in replay.failed] == ["delivery set"]
    assert "1 lines only in the original, 1 only in the rerun" in replay.checks[0].note


def test_flood_must_keep_its_deliveries_but_not_its_bytes():
    orig = _summary(protocol="flood", prediction="deliveries", deliveries=200, nbytes=5344)
    same = _summary(protocol="flood", prediction="deliveries", deliveries=200, nbytes=5400)
    replay = compare_runs(orig, LINES, [same], [Counter()])
    assert not replay.failed and "delivery set" not in {c.what for c in replay.checks}
    short = _summary(protocol="flood", prediction="deliveries", deliveries=199, nbytes=5344)
    assert [c.what for c in compare_runs(orig, LINES, [same, short], [Counter()] * 2).failed] == ["deliveries"]


def test_record_differences_are_listed():
    a = {"p2p_version": "0.1.0", "src_hash": "aa", "kernel": "6.1", "cpu_count": 2}
    assert record_differences(a, dict(a)) == []
    assert record_differences(a, {**a, "kernel": "6.8", "cpu_count": 4}) == ["kernel: 6.1 -> 6.8"]
    assert record_differences(None, a) == ["original run has no record.json"]
