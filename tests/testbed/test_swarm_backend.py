"""SwarmRunner's waiting -- task states, deadlines, messages -- and its clean-up against the fake
Docker client (tests/testbed/fakedocker.py): no engine. test_swarm_docker.py runs the real thing.

Time is testbed.swarm's own, replaced by a clock that moves only when the runner sleeps
(one ``step`` per poll): every deadline below is reached in a known number of polls and no
test waits in real time.
"""

from __future__ import annotations

import io
import json
from collections.abc import Callable
from dataclasses import dataclass

import docker.errors
import pytest

from generator.render import PEER_LABEL, RUN_LABEL, service_name
from generator.render_stack import ROLE_LABEL, stack_name
from generator.spec import PeerOptions, RunSpec
from testbed import cli, engine
from testbed import swarm as swarm_mod
from testbed.base import Progress, RunnerError, prepare_run
from testbed.swarm import SwarmRunner, SwarmTimeouts, clean_swarm
from tests.testbed.fakedocker import FakeClient, FakeObj

RUN_ID = "cycle-3-fake"
MANAGER = {"LocalNodeState": "active", "ControlAvailable": True, "NodeID": "node-1"}


class FakeClock:
    """Stands in for ``time`` in testbed.swarm: ``sleep(s)`` moves ``now`` on by ``s`` plus one ``step``."""

    def __init__(self, step: float = 1.0) -> None:
        self.now, self.step, self.sleeps = 1000.0, step, 0

    def monotonic(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.sleeps += 1
        self.now += seconds + self.step


@pytest.fixture
def clock(monkeypatch) -> FakeClock:
    c = FakeClock()
    monkeypatch.setattr(swarm_mod, "time", c)
    return c


def make_runner(monkeypatch, client: FakeClient, cls: type[SwarmRunner] = SwarmRunner,
                **timeouts: float) -> SwarmRunner:
    """A runner on the fake; ``timeouts`` are SwarmTimeouts fields (``start=5``)."""
    return cls(client, build_script=None, stack_root=None, poll=0, timeouts=SwarmTimeouts(**timeouts))


@pytest.fixture
def client() -> FakeClient:
    c = FakeClient(dict(MANAGER))
    c.node_names = {"node-1": "manager-a", "node-2": "worker-b"}
    return c


def make_plan(tmp_path, n: int = 3, run_id: str = RUN_ID, **options):
    spec = RunSpec.parse("cycle", n, options=PeerOptions(**options))
    return prepare_run(spec, tmp_path / "runs", None, run_id=run_id)


# ---- a deployed stack in the fake ---------------------------------------------------------


@dataclass
class Stack:
    """What `docker stack deploy` leaves: a labelled service per peer and the collector, each with a task."""

    client: FakeClient
    peers: list[FakeObj]
    collector: FakeObj

    def task(self, who: int | str) -> dict:
        """The latest task of peer ``who`` or of "collector"."""
        return self.client.latest_task(self.collector if who == "collector" else self.peers[who])

    def move(self, who: int | str, state: str, **kwargs) -> None:
        self.client.set_task(self.task(who), state, **kwargs)


def deploy(client: FakeClient, n: int = 3, run_id: str = RUN_ID, *, tasks: bool = True) -> Stack:
    stack = stack_name(run_id)
    peers = [client.add("service", f"{stack}_{service_name(i)}", {RUN_LABEL: run_id, PEER_LABEL: str(i)})
             for i in range(n)]
    collector = client.add("service", f"{stack}_collector", {RUN_LABEL: run_id, ROLE_LABEL: "collector"})
    if tasks:
        for s in (*peers, collector):
            client.add_task(s, "pending")
    return Stack(client, peers, collector)


def lifecycle(stack: Stack, *, run_at: int = 2, exit_at: int = 5, collected_at: int | None = 6,
              codes: dict[int, int] | None = None,
              late: dict[int, int] | None = None) -> Callable[[FakeClient, int], None]:
    """A script: every task runs from tick ``run_at`` (peer p of ``late`` from ``late[p]``); peers end at
    ``exit_at`` (with ``codes``, default 0), the collector at ``collected_at`` (None: never)."""

    def script(client: FakeClient, tick: int) -> None:
        if client.latest_task(stack.collector) is None:  # the stack is gone
            return
        for i in range(len(stack.peers)):
            state = stack.task(i)["Status"]["State"]
            code = (codes or {}).get(i, 0)
            if tick >= exit_at and state == "running":
                stack.move(i, "complete" if code == 0 else "failed", exit_code=code,
                           err="" if code == 0 else f"task: non-zero exit ({code})")
            elif tick >= (late or {}).get(i, run_at) and state == "pending":
                stack.move(i, "running")
        state = stack.task("collector")["Status"]["State"]
        if collected_at is not None and tick >= collected_at and state == "running":
            stack.move("collector", "complete", exit_code=0)
        elif tick >= run_at and state == "pending":
            stack.move("collector", "running")

    return script


def wait(runner: SwarmRunner, plan, clock: FakeClock, out: io.StringIO | None = None) -> dict[int, int | None]:
    return runner._wait(plan, clock.now, Progress(stream=out or io.StringIO()))


# ---- waiting for the tasks -------------------------------------------------------------------


def test_every_peer_ends_0_and_the_collector_completes(monkeypatch, client, clock, tmp_path):
    client.script = lifecycle(deploy(client), late={1: 3})
    runner = make_runner(monkeypatch, client)
    assert wait(runner, make_plan(tmp_path), clock) == {0: 0, 1: 0, 2: 0}
    # One poll a second: the last peer running at the 3rd listing, ended at the 5th, collected at the 6th.
    assert runner.timings == {"all_started": 2.0, "all_exited": 4.0, "collected": 5.0}


def test_a_failed_peer_is_reported_with_its_exit_code(monkeypatch, client, clock, tmp_path):
    client.script = lifecycle(deploy(client), codes={2: 2})
    runner = make_runner(monkeypatch, client)
    assert wait(runner, make_plan(tmp_path), clock) == {0: 0, 1: 0, 2: 2}
    assert "collected" in runner.timings


def test_a_task_rejected_for_a_missing_image_names_peer_node_and_the_docker_save_hint(monkeypatch, client, clock,
                                                                                      tmp_path):
    stack = deploy(client)
    stack.move(1, "rejected", err="No such image: p2p-peer:latest")
    stack.task(1)["NodeID"] = "node-2"
    runner = make_runner(monkeypatch, client)
    with pytest.raises(RunnerError) as e:
        wait(runner, make_plan(tmp_path), clock)
    message = str(e.value)
    assert "swarm tasks did not run: peer 1: rejected on node worker-b: No such image: p2p-peer:latest" in message
    assert "copy it to node worker-b with\n    docker save p2p-peer:latest | ssh worker-b docker load" in message
    assert clock.sleeps == 0  # no point waiting: the first look says so


def test_a_rejected_collector_on_a_node_the_engine_cannot_name(monkeypatch, client, clock, tmp_path):
    stack = deploy(client)
    stack.move("collector", "rejected", err="invalid mount config: bind source path does not exist")
    stack.task("collector")["NodeID"] = "0123456789abcdef"
    runner = make_runner(monkeypatch, client)
    with pytest.raises(RunnerError, match="collector: rejected on node 0123456789ab: invalid mount") as e:
        wait(runner, make_plan(tmp_path), clock)
    assert "docker save" not in str(e.value)  # not an image problem: no image hint


def test_tasks_that_never_start_fail_at_the_start_deadline_with_count_and_ids(monkeypatch, client, clock, tmp_path):
    stack = deploy(client, tasks=False)
    client.add_task(stack.peers[0], "running")
    client.add_task(stack.peers[1], "pending", err="no suitable node (insufficient resources on 1 node)")
    client.add_task(stack.collector, "running")  # peer 2: no task at all
    runner = make_runner(monkeypatch, client, start=5, start_per_peer=1)
    with pytest.raises(RunnerError) as e:
        wait(runner, make_plan(tmp_path), clock)
    assert str(e.value) == ("2 peer task(s) not started within 8 s (peer 1: pending no suitable node (insufficient "
                            "resources on 1 node); peer 2: no task); are the nodes up and is p2p-peer:latest on "
                            "every node?")
    assert clock.sleeps == 9  # past 5 s + 1 s per peer, not before


def test_the_run_deadline_names_the_peers_still_running(monkeypatch, client, clock, tmp_path):
    stack = deploy(client)
    client.script = lifecycle(stack, exit_at=10**9)
    stack.move(0, "complete", exit_code=0)
    runner = make_runner(monkeypatch, client, start=5, run_margin=5)
    with pytest.raises(RunnerError) as e:
        wait(runner, make_plan(tmp_path, max_runtime=10), clock)
    assert str(e.value) == "peers [1, 2] still not done 20 s after the deploy; stopped them"
    assert clock.sleeps == 21  # max_runtime 10 + run margin 5 + start timeout 5, then one more poll


def test_a_collector_that_does_not_finish_in_the_upload_wait_is_a_message_and_the_codes_still_come(
        monkeypatch, client, clock, tmp_path):
    client.script = lifecycle(deploy(client), collected_at=None)
    runner = make_runner(monkeypatch, client, upload_wait=3)
    out = io.StringIO()
    assert wait(runner, make_plan(tmp_path), clock, out) == {0: 0, 1: 0, 2: 0}
    assert "swarm: the collector did not finish within 3 s after the last peer ended (state running)" in out.getvalue()
    assert runner.timings == {"all_started": 1.0, "all_exited": 4.0}


def test_tasks_of_other_runs_are_ignored_even_when_the_engine_ignores_the_label_filter(monkeypatch, client, clock,
                                                                                      tmp_path):
    other = deploy(client, run_id="other-run")
    for who in (0, 1, 2, "collector"):
        other.move(who, "rejected", err="No such image: p2p-peer:latest")
    client.add("service", "p2p-cycle-3-fake_extra", {RUN_LABEL: RUN_ID})  # ours, neither a peer nor the collector
    client.script = lifecycle(deploy(client))
    client.ignore_filters = True  # our own label check must still keep the other run out
    runner = make_runner(monkeypatch, client)
    assert wait(runner, make_plan(tmp_path), clock) == {0: 0, 1: 0, 2: 0}
    peers, collector, peer_of = runner.tasks(RUN_ID)
    assert sorted(peers) == [0, 1, 2] and collector.state == "complete"
    assert peer_of == {i: f"service-p2p-cycle-3-fake_peer-{i}" for i in range(3)}


def test_the_latest_task_of_a_service_wins_by_version_index(monkeypatch, client):
    stack = deploy(client, n=1, tasks=False)
    newest = client.add_task(stack.peers[0], "running", node="node-2")
    client.add_task(stack.peers[0], "rejected", err="No such image: p2p-peer:latest")
    client.add_task(stack.peers[0], "failed", exit_code=137)
    newest["Version"]["Index"] = 99  # listed first, changed last
    client.add_task(stack.collector, "complete", exit_code=0)
    peers, collector, _ = make_runner(monkeypatch, client).tasks(RUN_ID)
    assert peers == {0: swarm_mod.TaskInfo(state="running", exit_code=0, error="", node="node-2")}
    assert collector == swarm_mod.TaskInfo(state="complete", exit_code=0, error="", node="node-1")


def test_a_task_that_never_ran_has_no_exit_code(monkeypatch, client):
    stack = deploy(client, n=2)
    stack.move(0, "rejected", err="no such image")
    stack.move(1, "failed", exit_code=2, err="task: non-zero exit (2)")
    peers, _, _ = make_runner(monkeypatch, client).tasks(RUN_ID)
    assert (peers[0].exit_code, peers[0].error) == (None, "no such image")
    assert (peers[1].state, peers[1].exit_code) == ("failed", 2)


def test_task_listings_are_split_into_batches_for_big_runs(monkeypatch, client):
    n = 450
    stack = deploy(client, n=n, run_id="cycle-450-fake")
    for i in range(n):
        stack.move(i, "running")
    runner = make_runner(monkeypatch, client)
    peers, collector, peer_of = runner.tasks("cycle-450-fake")
    assert sorted(peers) == list(range(n)) and all(t.state == "running" for t in peers.values())
    assert collector.state == "pending" and len(peer_of) == n
    batch = swarm_mod.TASK_QUERY_BATCH
    assert batch == 200
    assert [len(q) for q in client.task_queries] == [batch, batch, n + 1 - 2 * batch]
    assert len({s for q in client.task_queries for s in q}) == n + 1  # every service asked about once


# ---- the whole run, with the docker CLI steps acting on the fake -----------------------------


class NoCLI(SwarmRunner):
    """The real runner; build, `docker stack deploy` and `docker stack rm` replaced by their effect on the fake."""

    on_deploy: Callable[[], None] = staticmethod(lambda: None)

    def ensure_image(self, progress):
        pass

    def deploy(self, stack_file, stack, log):
        assert stack_file.exists()
        self.on_deploy()

    def remove_stack(self, stack, log):
        for s in list(self.client.objects["service"]):
            if s.name.startswith(f"{stack}_"):
                s.remove()
        return None


def test_a_whole_run_saves_service_logs_and_reports_peers_whose_logs_never_arrived(monkeypatch, client, clock,
                                                                                    tmp_path):
    plan = make_plan(tmp_path)
    runner = make_runner(monkeypatch, client, NoCLI)
    stack: list[Stack] = []

    def on_deploy():
        stack.append(deploy(client))
        client.add("network", f"{stack_name(RUN_ID)}_peers", {RUN_LABEL: RUN_ID})
        for i, s in enumerate(stack[0].peers):
            s.output = f"peer {i} output\n".encode()
        stack[0].collector.output = b"2 peer(s) uploaded\n"
        moves = lifecycle(stack[0])

        def script(c, tick):
            moves(c, tick)
            if tick == 5:  # what the collector writes: peers 0 and 1 uploaded, 2 did not
                for p in (0, 1):
                    (plan.log_dir / f"{p}.events.jsonl").write_text(json.dumps({"ev": "summary"}) + "\n")

        client.script = script

    runner.on_deploy = on_deploy
    out = io.StringIO()
    result = runner.run(plan, Progress(stream=out))
    assert result.backend == "swarm" and result.cleanup_problem is None
    assert result.exit_codes == {0: 0, 1: 0, 2: None}  # exited 0, but nothing of it arrived
    assert result.duration == runner.timings["all_exited"] == 4.0
    assert "swarm: no logs arrived from peers [2]" in out.getvalue()
    assert (plan.log_dir / "1.stderr.txt").read_bytes() == b"peer 1 output\n"
    assert (plan.run_dir / "collector.log").read_bytes() == b"2 peer(s) uploaded\n"
    assert (plan.run_dir / "stack.yml").exists()
    assert client.labelled(RUN_ID) == []


def test_unavailable_service_logs_are_noted_in_their_files(monkeypatch, client, tmp_path):
    plan = make_plan(tmp_path)
    deploy(client)
    client.logs_error = docker.errors.APIError("logs unavailable")
    make_runner(monkeypatch, client).save_service_logs(plan, stack_name(RUN_ID))
    assert "(service logs of p2p-cycle-3-fake_peer-0 unavailable: logs unavailable)" in (
        plan.log_dir / "0.stderr.txt").read_text()


# ---- clean-up ----------------------------------------------------------------------------------


def add_run(client: FakeClient, run_id: str) -> Stack:
    """A run's services with a container each, its network and volume."""
    stack = deploy(client, n=2, run_id=run_id)
    for s in (*stack.peers, stack.collector):
        client.add("container", f"{s.name}.1.x", {RUN_LABEL: run_id, "com.docker.swarm.service.id": s.id})
    client.add("network", f"{stack_name(run_id)}_peers", {RUN_LABEL: run_id})
    client.add("volume", f"{stack_name(run_id)}_v", {RUN_LABEL: run_id})
    return stack


def swarm_removes_containers_of_gone_services(after: int) -> Callable[[FakeClient, int], None]:
    """A script: from the ``after``-th container listing, containers whose service is gone are gone too."""

    def script(client: FakeClient, tick: int) -> None:
        if tick >= after:
            services = {s.id for s in client.objects["service"]}
            client.objects["container"] = [c for c in client.objects["container"]
                                           if c.labels.get("com.docker.swarm.service.id", "") in services
                                           or "com.docker.swarm.service.id" not in c.labels]

    return script


def test_clean_swarm_waits_for_swarm_to_remove_the_containers_then_removes_networks(client, clock):
    add_run(client, "run-a")
    add_run(client, "run-b")
    client.script = swarm_removes_containers_of_gone_services(after=3)
    removed = clean_swarm(client, "run-a", timeout=60)
    assert removed == {"services": 3, "containers": 0, "networks": 1, "volumes": 1}
    assert clock.sleeps == 2  # two listings still showed the containers
    assert client.labelled("run-a") == [] and len(client.labelled("run-b")) == 8


def test_clean_swarm_force_removes_containers_left_at_the_timeout_and_names_a_busy_network(client, clock):
    add_run(client, "run-a")
    net = next(n for n in client.objects["network"] if n.labels.get(RUN_LABEL) == "run-a")
    net.remove_error = docker.errors.APIError("network has active endpoints")
    with pytest.raises(RunnerError) as e:
        clean_swarm(client, "run-a", timeout=2)
    assert str(e.value).startswith("could not remove 1 labelled object(s): network p2p-run-a_peers: ")
    assert client.labelled("run-a") == ["p2p-run-a_peers"]  # the containers went at the timeout, and the volume


def test_clean_swarm_gives_up_on_a_network_still_in_use(client, clock):
    add_run(client, "run-a")
    client.script = swarm_removes_containers_of_gone_services(after=1)
    net = next(n for n in client.objects["network"] if n.labels.get(RUN_LABEL) == "run-a")
    net.remove_error = docker.errors.APIError("network has active endpoints")
    with pytest.raises(RunnerError, match=r"could not remove 1 object\(s\) labelled p2p.run=run-a within 2 s: "
                                          r"network p2p-run-a_peers \(network has active endpoints\)"):
        clean_swarm(client, "run-a", timeout=2)


def test_cli_clean_removes_the_services_of_every_run(client, clock, monkeypatch, capsys):
    add_run(client, "run-a")
    add_run(client, "run-b")
    client.add("service", "someone-elses", {"other": "x"})
    client.script = swarm_removes_containers_of_gone_services(after=1)
    ours = {kind: sum(RUN_LABEL in o.labels for o in objs) for kind, objs in client.objects.items()}
    monkeypatch.setattr(engine, "docker_client", lambda: client)
    assert cli.main(["clean"]) == 0
    # Everything the clean-up removed is counted, not only what the last label sweep found; the
    # containers went with their services (swarm removed them), so none was removed by us.
    assert (f"removed {ours['service']} services, 0 containers, {ours['network']} networks, "
            f"{ours['volume']} volumes (label p2p.run)") in capsys.readouterr().out
    assert [s.name for s in client.objects["service"]] == ["someone-elses"]


def test_a_node_that_leaves_loses_its_peers_for_good_and_records_the_kill(monkeypatch, client, clock, tmp_path):
    """Swarm keeps saying "running" for the tasks of a node that is down: the runner marks them lost
    (no exit code, even when the node comes back), records the kill in faults.jsonl, and goes on."""
    from analysis.explain import read_fault_log

    stack = deploy(client)
    stack.task(2)["NodeID"] = "node-2"
    script = lifecycle(stack, run_at=1, exit_at=5, collected_at=None)
    peer2_exit = {}

    def with_node_leaving(c: FakeClient, tick: int) -> None:
        if tick == 3:
            c.node_states["node-2"] = "down"
        if tick == 8:  # back, and its peer's task now ended: still lost
            c.node_states["node-2"] = "ready"
        script(c, tick)
        if tick >= 5 and not peer2_exit:  # node-2 never reports peer 2 ending while away
            peer2_exit[2] = stack.task(2)["Status"]["State"]
            stack.move(2, "running")

    client.script = with_node_leaving
    runner = make_runner(monkeypatch, client, upload_wait=3)
    plan = make_plan(tmp_path)
    out = io.StringIO()
    assert wait(runner, plan, clock, out) == {0: 0, 1: 0, 2: None}
    assert runner.lost == {2: "worker-b"}
    assert "node worker-b left the swarm" in out.getvalue() and "peers [2] lost" in out.getvalue()
    applied, problems = read_fault_log(plan.run_dir)
    assert problems == [] and [str(a.fault).split("@")[0] for a in applied] == ["kill:2"]
    assert json.loads((plan.run_dir / "placement.json").read_text())["nodes"] == {"manager-a": [0, 1],
                                                                                   "worker-b": [2]}
