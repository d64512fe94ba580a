"""The local backend end to end: real peer processes on loopback, exact v1 counts."""

from pathlib import Path

import pytest

from generator.predict import predict
from generator.spec import PeerOptions, RunSpec
from testbed.base import Progress, prepare_run
from testbed.local import LocalRunner


def observed(log_dir: Path, n: int):
    deliveries = nbytes = 0
    for p in range(n):
        lines = (log_dir / f"{p}.txt").read_bytes().splitlines()
        deliveries += len(lines)
        nbytes += sum(len(line) + 4 for line in lines)
    return deliveries, nbytes


def run_local(tmp_path, topology, n, expect=True, runner=None, **opts):
    spec = RunSpec.parse(topology, n, options=PeerOptions(**opts))
    prediction = predict(spec.graph(), topology)
    plan = prepare_run(spec, tmp_path, prediction if expect else None)
    result = (runner or LocalRunner()).run(plan, Progress(interval=60))
    return plan, prediction, result


@pytest.mark.parametrize("repeat", range(3))
@pytest.mark.parametrize("topology,expected", [("cycle", 40), ("mesh", 320), ("starfish", 40)])
def test_small_runs_are_exact_every_time(tmp_path, topology, expected, repeat):
    plan, prediction, result = run_local(tmp_path, topology, 5)
    assert result.failed_peers == []
    assert prediction.deliveries == expected
    assert observed(plan.log_dir, 5) == (prediction.deliveries, prediction.bytes)
    assert (tmp_path / "latest").resolve() == plan.run_dir.resolve()


def test_mesh_8_is_exact(tmp_path):
    plan, prediction, result = run_local(tmp_path, "mesh", 8)
    assert result.failed_peers == []
    assert observed(plan.log_dir, 8) == (109_592, prediction.bytes)


@pytest.mark.slow
@pytest.mark.parametrize("expect", [True, False], ids=["expect", "idle-exit"])
def test_cycle_50_with_peers_starting_seconds_apart_loses_nothing(tmp_path, expect):
    # 50 peers in shuffled order, 0.12 s apart: the first starts ~6 s before the last.
    # Without --expect the peers must still wait for every author before their idle exit.
    runner = LocalRunner(stagger=0.12, order_seed=7)
    plan, prediction, result = run_local(tmp_path, "cycle", 50, expect=expect, runner=runner, idle=1.0)
    assert result.failed_peers == []
    assert observed(plan.log_dir, 50) == (4_900, prediction.bytes)


def test_a_neighbour_that_never_comes_is_named(tmp_path):
    spec = RunSpec.parse("cycle", 3, options=PeerOptions(link_deadline=1.0, idle=0.5))
    plan = prepare_run(spec, tmp_path, None)
    # Only peers 0 and 1 start: both lose their link to 2 at the deadline and say so.
    plan = type(plan)(spec=plan.spec, run_id=plan.run_id, run_dir=plan.run_dir, peers=plan.peers[:2],
                      graph=plan.graph)
    result = LocalRunner().run(plan, Progress(interval=60))
    assert result.exit_codes == {0: 2, 1: 2}
    for p in (0, 1):
        stderr = (plan.log_dir / f"{p}.stderr.txt").read_text()
        assert "link to peer 2" in stderr and "never came up" in stderr
    # 0 and 1 still exchanged their own messages over the link that came up (cycle-3 minus peer 2 = a line of 2).
    assert observed(plan.log_dir, 2)[0] == 2


@pytest.mark.slow
def test_cycle_200_is_exact_although_neighbours_finish_first(tmp_path):
    # Regression: peers that got all they expect exit and close their links; their
    # neighbours must keep waiting for their own expected deliveries, not give up.
    plan, prediction, result = run_local(tmp_path, "cycle", 200)
    assert result.failed_peers == []
    assert observed(plan.log_dir, 200) == (79_600, prediction.bytes)


def traffic(log_dir: Path, n: int) -> dict[tuple[int, int], tuple[int, int]]:
    """(sender, receiver) -> (bytes the receiver counted in, bytes the sender counted out)."""
    rows = {}
    for p in range(n):
        for line in (log_dir / f"{p}.traffic.txt").read_text().splitlines():
            nbr, bytes_in, bytes_out = (int(x) for x in line.split("; "))
            rows.setdefault((nbr, p), [0, 0])[0] = bytes_in
            rows.setdefault((p, nbr), [0, 0])[1] = bytes_out
    return {edge: tuple(v) for edge, v in rows.items()}


@pytest.mark.parametrize("grace", [1.0, 0.0], ids=["grace", "no-grace"])
@pytest.mark.parametrize("topology", ["cycle", "mesh"])
def test_peers_started_in_reverse_id_order_are_exact_per_edge(tmp_path, topology, grace):
    # The highest id starts first, 0.4 s apart: a higher id dials its lower neighbours after
    # its grace (into the backlog of a peer not started yet), and the lower one dials too when it
    # starts: duplicate connections, resends and repeats. With no grace every edge is dialed
    # from both ends. Per edge, both ends and the prediction must still agree to the byte.
    import dataclasses

    spec = RunSpec.parse(topology, 5, options=PeerOptions(peer=(("dial_grace", grace),)))
    prediction = predict(spec.graph(), topology)
    plan = prepare_run(spec, tmp_path, prediction)
    plan = dataclasses.replace(plan, peers=tuple(reversed(plan.peers)))
    # No grace: all at once too, where both ends' dials of an edge race (duplicates often).
    result = LocalRunner(stagger=0.4 if grace else 0.0).run(plan, Progress(interval=60))
    assert result.failed_peers == []
    assert observed(plan.log_dir, 5) == (prediction.deliveries, prediction.bytes)
    assert traffic(plan.log_dir, 5) == {e: (f.bytes, f.bytes) for e, f in prediction.per_edge.items()}
