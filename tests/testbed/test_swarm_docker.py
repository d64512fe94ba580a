"""Real Docker Swarm: the swarm backend gives the exact v1 counts and leaves nothing behind.

A module fixture initialises a single-node swarm (``docker swarm init --advertise-addr
127.0.0.1``) only when the engine is in none, and leaves it at the end only if it
created it; a swarm that was already there is left alone. Skipped without an
engine, except under CI=true, where that is a failure. Every run's objects carry
p2p.run=<random run id>; after each test no service, network or container with
that label may remain.
"""

from __future__ import annotations

import io
import secrets
import subprocess
from pathlib import Path

import pytest

from generator.predict import predict
from generator.spec import RunSpec
from testbed.base import Progress, RunnerError, prepare_run
from testbed.engine import list_labelled
from testbed.swarm import SWARM_INIT_HINT, SwarmRunner, clean_swarm, swarm_info
from tests.testbed.conftest import usable_docker_client
from tests.testbed.fakedocker import FakeClient

docker_slow = [pytest.mark.docker, pytest.mark.slow]


def _swarm_state(client) -> tuple[str, bool]:
    swarm = client.info().get("Swarm") or {}
    return swarm.get("LocalNodeState") or "inactive", bool(swarm.get("ControlAvailable"))


@pytest.fixture(scope="module")
def swarm_client():
    client = usable_docker_client()
    state, manager = _swarm_state(client)
    created = False
    had_gwbridge = bool(client.networks.list(names=["docker_gwbridge"]))
    if state == "inactive":
        out = subprocess.run(["docker", "swarm", "init", "--advertise-addr", "127.0.0.1"],
                             capture_output=True, text=True, timeout=120, stdin=subprocess.DEVNULL)
        if out.returncode != 0:
            pytest.fail(f"`docker swarm init` failed: {out.stderr.strip()}")
        created = True
    elif state != "active" or not manager:
        pytest.skip(f"this engine is in a swarm as {'a worker' if state == 'active' else state}; "
                    "not touching it")
    try:
        yield client
    finally:
        if created:
            out = subprocess.run(["docker", "swarm", "leave", "--force"], capture_output=True, text=True,
                                 timeout=120, stdin=subprocess.DEVNULL)
            assert out.returncode == 0, f"`docker swarm leave --force` failed: {out.stderr.strip()}"
            assert _swarm_state(client)[0] == "inactive"
            if not had_gwbridge:  # `swarm init` created it and `swarm leave` keeps it
                for net in client.networks.list(names=["docker_gwbridge"]):
                    net.remove()


@pytest.fixture(scope="module")
def runner(swarm_client) -> SwarmRunner:
    r = SwarmRunner(swarm_client, stack_root=None, poll=0.1)
    r.ensure_image(Progress(stream=io.StringIO()))
    return r


@pytest.fixture
def run_ids(runner):
    """Fresh random run ids; everything labelled with them is removed afterwards, pass or fail."""
    ids: list[str] = []

    def new(prefix: str) -> str:
        ids.append(f"t-{prefix}-{secrets.token_hex(4)}")
        return ids[-1]

    yield new
    leftovers = {}
    for run_id in ids:
        try:
            clean_swarm(runner.client, run_id)
        finally:
            left = list_labelled(runner.client, run_id)
            if left:
                leftovers[run_id] = left
    assert not leftovers, f"labelled objects left behind: {leftovers}"


def observed(log_dir: Path, n: int) -> dict[int, tuple[int, int]]:
    """Per peer: (deliveries, bytes) from <id>.txt, bytes = Σ (len(line) + 4)."""
    out = {}
    for p in range(n):
        lines = (log_dir / f"{p}.txt").read_bytes().splitlines()
        out[p] = (len(lines), sum(len(line) + 4 for line in lines))
    return out


@pytest.mark.parametrize("topology, n, deliveries", [("mesh", 5, 320), ("cycle", 10, 180)])
@pytest.mark.docker
@pytest.mark.slow
def test_swarm_runner_exact_counts(runner, run_ids, tmp_path, topology, n, deliveries):
    spec = RunSpec.parse(topology, n)
    pred = predict(spec.graph(), spec.topology)
    assert pred.deliveries == deliveries  # docs/design.md, "Deliveries and predictions": mesh-5 320, cycle-N 2N(N-1)
    plan = prepare_run(spec, tmp_path / "runs", pred, run_id=run_ids(topology))
    result = runner.run(plan, Progress(stream=io.StringIO()))
    assert result.backend == "swarm"
    assert result.exit_codes == {p: 0 for p in range(n)}, result
    seen = observed(plan.log_dir, n)
    assert sum(d for d, _ in seen.values()) == pred.deliveries
    assert sum(b for _, b in seen.values()) == pred.bytes
    for p, (d, b) in seen.items():
        flow = pred.received(p)
        assert (d, b) == (flow.frames, flow.bytes), f"peer {p}"
        assert (plan.log_dir / f"{p}.traffic.txt").exists()
        assert "uploaded 3 file(s)" in (plan.log_dir / f"{p}.stderr.txt").read_text()
    assert f"{n} peer(s) uploaded" in (plan.run_dir / "collector.log").read_text()
    assert (plan.run_dir / "stack.yml").exists()
    assert set(runner.timings) >= {"deployed", "all_started", "all_exited", "collected", "removed"}
    # The runner cleaned up by itself (the fixture's sweep is only the safety net).
    assert list_labelled(runner.client, plan.run_id) == []


@pytest.mark.docker
@pytest.mark.slow
def test_interrupt_removes_the_stack(runner, run_ids, tmp_path):
    """Ctrl-C while the peers run: KeyboardInterrupt propagates and nothing labelled remains."""

    class Interrupting(Progress):
        def update(self, text: str, force: bool = False) -> None:
            if " 0/" not in text.split("started")[0]:  # at least one task started
                raise KeyboardInterrupt

    spec = RunSpec.parse("cycle", 6)
    plan = prepare_run(spec, tmp_path / "runs", predict(spec.graph(), spec.topology), run_id=run_ids("intr"))
    with pytest.raises(KeyboardInterrupt):
        runner.run(plan, Interrupting(stream=io.StringIO(), interval=0.01))
    assert list_labelled(runner.client, plan.run_id) == []


@pytest.mark.docker
@pytest.mark.slow
def test_missing_image_is_a_clear_error(runner, run_ids, tmp_path):
    """A node without the image rejects the task: the runner says so (with the docker save hint) and cleans up."""

    class NoBuild(SwarmRunner):
        def ensure_image(self, progress):  # pretend the image is there
            pass

    r = NoBuild(runner.client, image="p2p-peer:absent-" + secrets.token_hex(3), stack_root=None, poll=0.1)
    spec = RunSpec.parse("cycle", 3)
    plan = prepare_run(spec, tmp_path / "runs", None, run_id=run_ids("noimg"))
    with pytest.raises(RunnerError, match="docker save"):
        r.run(plan, Progress(stream=io.StringIO()))
    assert list_labelled(runner.client, plan.run_id) == []


# ---- without Docker ------------------------------------------------------------------------


def test_no_swarm_is_a_clear_error_naming_swarm_init():
    with pytest.raises(RunnerError) as e:
        swarm_info(FakeClient({"LocalNodeState": "inactive", "ControlAvailable": False}))
    assert SWARM_INIT_HINT in str(e.value)
    assert SWARM_INIT_HINT == "docker swarm init --advertise-addr 127.0.0.1"


def test_a_worker_node_is_refused():
    with pytest.raises(RunnerError, match="manager"):
        swarm_info(FakeClient({"LocalNodeState": "active", "ControlAvailable": False}))


def test_an_active_manager_is_accepted():
    swarm = {"LocalNodeState": "active", "ControlAvailable": True, "NodeID": "abc"}
    assert swarm_info(FakeClient(swarm))["NodeID"] == "abc"


def test_a_leftover_after_a_complete_run_is_reported_beside_the_result(tmp_path, monkeypatch):
    """A stack whose network the engine will not remove: the exit codes still come back, with the problem."""

    class Scripted(SwarmRunner):
        def ensure_image(self, progress):
            pass

        def deploy(self, stack_file, stack, log):
            pass

        def _wait(self, plan, t0, progress):
            for p in plan.peers:  # what the collector would have written
                (plan.log_dir / f"{p.id}.events.jsonl").write_text("{}\n")
            self.timings["all_exited"] = 1.5
            return {p.id: 0 for p in plan.peers}

        def save_service_logs(self, plan, stack):
            pass

        def remove_stack(self, stack, log):
            return None

    spec = RunSpec.parse("cycle", 3)
    plan = prepare_run(spec, tmp_path / "runs", None, run_id="cycle-3-fake")
    runner = Scripted(FakeClient({"LocalNodeState": "active", "ControlAvailable": True, "NodeID": "n1"}),
                      stack_root=None, poll=0)

    def network_stays(client, run_id, timeout=0):
        raise RunnerError("could not remove network p2p-cycle-3-fake_peers: has active endpoints")

    monkeypatch.setattr("testbed.swarm.clean_swarm", network_stays)
    result = runner.run(plan, Progress(stream=io.StringIO()))
    assert result.exit_codes == {0: 0, 1: 0, 2: 0}
    assert result.duration == 1.5
    assert "clean-up of cycle-3-fake incomplete" in result.cleanup_problem
    assert "has active endpoints" in result.cleanup_problem
