"""Link emulation through real peers on the local backend."""

import json
from pathlib import Path

import pytest

from generator.expect import expect_for
from generator.predict import predict
from generator.spec import PeerOptions, RunSpec
from testbed.base import Progress, prepare_run
from testbed.local import LocalRunner


def run(tmp_path, topology, n, seed=None, **opts):
    spec = RunSpec.parse(topology, n, seed=seed, options=PeerOptions(**{"idle": 1.0, **opts}))
    plan = prepare_run(spec, tmp_path, expect_for(spec, 2_000_000, False, Progress(interval=60).message))
    result = LocalRunner().run(plan, Progress(interval=60))
    assert result.failed_peers == []
    return plan


def deliveries(log_dir: Path, n: int) -> dict[int, list[bytes]]:
    return {p: sorted((log_dir / f"{p}.txt").read_bytes().splitlines()) for p in range(n)}


def events(log_dir: Path, p: int) -> list[dict]:
    return [json.loads(x) for x in (log_dir / f"{p}.events.jsonl").read_text().splitlines()]


@pytest.mark.slow
def test_ten_percent_loss_with_the_same_seed_gives_identical_deliveries(tmp_path):
    first = run(tmp_path / "a", "starfish", 7, seed=11, loss=0.1)
    second = run(tmp_path / "b", "starfish", 7, seed=11, loss=0.1)
    got = deliveries(first.log_dir, 7)
    assert got == deliveries(second.log_dir, 7)
    total = sum(map(len, got.values()))
    predicted = predict(RunSpec.parse("starfish", 7).graph()).deliveries
    assert 0 < total < predicted  # some frames (and every copy that would have followed them) were lost
    other = run(tmp_path / "c", "starfish", 7, seed=12, loss=0.1)
    assert deliveries(other.log_dir, 7) != got


@pytest.mark.slow
def test_latency_20ms_per_hop_on_cycle_10(tmp_path):
    # The last author's message needs 9 hops of 20 ms to reach its farthest peer:
    # quiescence comes 180 ms after the last authoring, plus processing (tolerance: 100 ms).
    plan = run(tmp_path, "cycle", 10, latency=0.02)
    assert sum(map(len, deliveries(plan.log_dir, 10).values())) == 180  # latency loses nothing
    evs = [events(plan.log_dir, p) for p in range(10)]
    last_authored = max(e["t"] for ev in evs for e in ev if e["ev"] == "authored")
    last_delivery = max(ev[-1]["last_delivery"] for ev in evs)
    assert 0.18 <= last_delivery - last_authored <= 0.28
