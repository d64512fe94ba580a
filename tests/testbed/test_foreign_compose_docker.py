"""Real containers: a mixed mesh-7 where peers 0-3 run from an image through an adapter (our own
image, started as another implementation would be: its logs in the original layout at the
adapter's log dir), graded exactly."""

from __future__ import annotations

import io

import pytest

from analysis.grade import ImplGrade, grade
from generator.adapter import Implementation, parse_adapter
from generator.predict import predict
from generator.spec import RunSpec
from testbed.base import Progress, prepare_run, write_exits
from testbed.engine import list_labelled
from testbed.hostile import hostile_grades

pytestmark = [pytest.mark.docker, pytest.mark.slow]


def test_mixed_mesh_7_through_an_adapter_is_exact_and_passes(runner, run_ids, tmp_path):
    adapter = parse_adapter({
        "name": "image-via-adapter",
        "image_entrypoint": True,  # the image's ENTRYPOINT (python3 -m peer); command[0] is not used
        "command": ["peer", "--id", "{id}", "--n", "{n}", "--listen", "{listen}", "{neighbours}",
                    "--log-dir", "{log_dir}", "--idle", "{idle}"],
        "neighbour": ["-p", "{id}={host}:{port}"],
        "logs": {"dir": "/data"},  # not /logs: the run's logs are mounted where the adapter says
    })
    impl = Implementation("image-via-adapter", (0, 1, 2, 3), adapter, image=runner.image)
    spec = RunSpec.parse("mesh", 7, implementations=(impl,))
    pred = predict(spec.graph(), spec.topology)
    plan = prepare_run(spec, tmp_path / "runs", pred, run_id=run_ids("byo"))
    result = runner.run(plan, Progress(stream=io.StringIO()))
    write_exits(plan.run_dir, result)
    assert result.exit_codes == {p: 0 for p in range(7)}, result
    lines = sum(len((plan.log_dir / f"{p}.txt").read_bytes().splitlines()) for p in range(7))
    assert lines == pred.deliveries == 13_692
    grades = {g.name: g for g in grade(plan.run_dir)}
    assert {n: (g.verdict, g.received) for n, g in grades.items()} == {
        "p2p": ("PASS", 3 * 1956), "image-via-adapter": ("PASS", 4 * 1956)}
    assert list_labelled(runner.client, plan.run_id) == []


def test_hostile_battery_from_inside_the_network(runner, tmp_path):
    """`p2p grade --hostile` of a compose run of an image: the replay runs on compose and the battery
    from a container on the attacked peer's network (removed after), at our image through an adapter."""
    adapter = parse_adapter({
        "name": "image-via-adapter", "image_entrypoint": True,
        "command": ["peer", "--id", "{id}", "--n", "{n}", "--listen", "{listen}", "{neighbours}",
                    "--log-dir", "{log_dir}", "--idle", "{idle}"],
        "neighbour": ["-p", "{id}={host}:{port}"],
    })
    spec = RunSpec.parse("cycle", 6, implementations=(Implementation("image-via-adapter", (2, 3), adapter,
                                                                     image=runner.image),))
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    spec.write(run_dir / "spec.json")
    target = ImplGrade("image-via-adapter", (2, 3))
    hostile_grades(run_dir, [target], lambda _text: None)
    assert target.hostile["peer"] == 2
    assert target.hostile["refused"] == [], target.hostile
    assert len(target.hostile["sent"]) == 5 and target.hostile["silent_connections"] == 100
    # Our own peer survives it: a neighbour's dial cut while the 100 silent connections hold its
    # 64 handshake slots loses nothing (the dialer sends again what it wrote into it), and the
    # quiescence backstop no longer races the replay's 5 s idle exit.
    assert target.hostile["replay_verdict"] == "PASS", target.hostile["replay_reasons"]
    assert target.hostile_problems == []
    replay = next((run_dir / "hostile").glob("cycle-6-*"))
    assert list_labelled(runner.client, replay.name) == []  # the battery's container went too
