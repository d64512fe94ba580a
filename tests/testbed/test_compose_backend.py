"""ComposeRunner logic against a fake Docker client and a fake `docker compose` (no engine needed)."""

from __future__ import annotations

import io
import json
import os
import queue
import re
import shutil
import subprocess
import threading
import time
import types

import docker.errors
import pytest
import yaml

import docker
from generator.faults import Fault
from generator.predict import predict
from generator.render import render_compose
from generator.spec import PeerOptions, RunSpec
from generator.topologies import build_graph
from testbed import cli, engine
from testbed.base import Progress, RunnerError, RunResult, prepare_run
from testbed.compose import ComposeRunner, ComposeTimeouts
from testbed.containers import ContainerWatch, StagedStart
from testbed.engine import EngineStuck, check_compose, clean_by_label, docker_client
from testbed.rendering import EXIT_SLOTS_FROM, link_deadline_note, render_run
from tests.testbed.fakedocker import FakeClient

# ---- fakes -------------------------------------------------------------------------------


class FakeProc:
    def __init__(self, rc_after: int, rc: int = 0):
        self.rc_after, self.rc, self.polls, self.terminated = rc_after, rc, 0, False
        self.returncode = None

    def poll(self):
        if self.terminated:
            self.returncode = -15
        else:
            self.polls += 1
            if self.polls >= self.rc_after:
                self.returncode = self.rc
        return self.returncode

    def terminate(self):
        self.terminated = True

    def kill(self):
        self.terminated = True

    def wait(self, timeout=None):
        return self.poll()


class FakeRunner(ComposeRunner):
    """The real runner with `docker compose up/down` replaced; `up` creates the fake containers."""

    def __init__(self, client, *, up_rc=0, up_after=2, up_log=b"", **kwargs):
        super().__init__(client, build_script=None, poll=0, **kwargs)
        self.up_rc, self.up_after, self.up_log = up_rc, up_after, up_log
        self.calls: list[list[str]] = []
        self.proc: FakeProc | None = None
        self.down_problem: str | None = None

    def start_up(self, base, log):
        self.calls.append([*base, "up", "-d"])
        log.write_bytes(self.up_log)
        run_id = self.plan.run_id
        self.client.add("network", f"{run_id}_net0", {"p2p.run": run_id})
        for p in self.plan.peers:
            c = self.client.add("container", f"{run_id}-peer-{p.id}", {"p2p.run": run_id, "p2p.peer": str(p.id)})
            c.output = f"peer {p.id} output\n".encode()
        self.proc = FakeProc(self.up_after, self.up_rc)
        return self.proc

    def down(self, base, log, timeout):
        self.calls.append([*base, "down", "-v"])
        return self.down_problem

    def run(self, plan, progress):
        self.plan = plan
        return super().run(plan, progress)


def lifecycle(exit_codes: dict[int, int] | None = None, run_at: int = 2, exit_at: int = 5):
    """A script: containers run from tick `run_at` and exit (with `exit_codes`, default 0) at `exit_at`."""

    def script(client: FakeClient, tick: int) -> None:
        for c in client.objects["container"]:
            if "p2p.peer" not in c.labels:
                continue
            if tick >= exit_at and c.status == "running":
                c.status, c.exit_code = "exited", (exit_codes or {}).get(int(c.labels["p2p.peer"]), 0)
            elif tick >= run_at and c.status == "created":
                c.status = "running"

    return script


@pytest.fixture
def client():
    c = FakeClient()
    c.add("container", "someone-elses", {"other": "x"})
    c.add("network", "someone-elses-net", {})
    c.add("volume", "someone-elses-vol", {"p2p.other": "y"})
    return c


@pytest.fixture
def plan(tmp_path):
    spec = RunSpec.parse("cycle", 5)
    return prepare_run(spec, tmp_path / "runs", predict(spec.graph(), spec.topology), run_id="cycle-5-fake")


def progress():
    return Progress(stream=io.StringIO())


def assert_only_foreign_left(client: FakeClient, run_id: str):
    assert client.labelled(run_id) == []
    names = {o.name for objs in client.objects.values() for o in objs}
    assert {"someone-elses", "someone-elses-net", "someone-elses-vol"} <= names


# ---- the run -----------------------------------------------------------------------------


def test_happy_run(client, plan):
    client.script = lifecycle()
    runner = FakeRunner(client)
    result = runner.run(plan, progress())
    assert result.backend == "compose"
    assert result.exit_codes == {i: 0 for i in range(5)} and result.failed_peers == []
    assert result.duration == runner.timings["all_exited"]
    assert {"up_returned", "all_started", "all_exited", "down"} <= set(runner.timings)
    project = "p2p-cycle-5-fake"
    compose_file = str(plan.run_dir / "compose.yml")
    assert runner.calls[0] == ["docker", "compose", "-p", project, "-f", compose_file, "up", "-d"]
    assert runner.calls[1] == ["docker", "compose", "-p", project, "-f", compose_file, "down", "-v"]
    doc = yaml.safe_load((plan.run_dir / "compose.yml").read_text())
    assert doc["name"] == project and len(doc["services"]) == 5
    for i in range(5):
        assert (plan.log_dir / f"{i}.stderr.txt").read_bytes() == f"peer {i} output\n".encode()
    assert_only_foreign_left(client, plan.run_id)


def test_nonzero_exit_is_reported(client, plan):
    client.script = lifecycle({3: 2})
    result = FakeRunner(client).run(plan, progress())
    assert result.exit_codes[3] == 2 and result.failed_peers == [3]
    assert_only_foreign_left(client, plan.run_id)


def test_up_failure_raises_with_its_output_and_cleans(client, plan):
    client.script = lifecycle()
    runner = FakeRunner(client, up_rc=1, up_after=1, up_log=b"Error response from daemon: no such image\n")
    with pytest.raises(RunnerError, match="(?s)up -d` failed.*no such image"):
        runner.run(plan, progress())
    assert runner.calls[-1][-2:] == ["down", "-v"]
    assert_only_foreign_left(client, plan.run_id)


def test_ctrl_c_cleans_up_by_label(client, plan):
    def script(c, tick):
        lifecycle(exit_at=10**9)(c, tick)
        if tick == 4:
            raise KeyboardInterrupt

    client.script = script
    runner = FakeRunner(client, up_after=10**9)  # `up -d` still running when Ctrl-C arrives
    out = io.StringIO()
    with pytest.raises(KeyboardInterrupt):
        runner.run(plan, Progress(stream=out))
    assert runner.proc.terminated
    assert runner.calls[-1][-2:] == ["down", "-v"]
    assert "interrupted" in out.getvalue()
    assert_only_foreign_left(client, plan.run_id)


def test_ctrl_c_at_scale_stops_the_peers_one_slot_apart_before_down(client, tmp_path):
    # `down` of hundreds of running containers at once deadlocks Docker 20.10 (moby/moby#46661).
    n = EXIT_SLOTS_FROM
    spec = RunSpec.parse("cycle", n)
    plan = prepare_run(spec, tmp_path / "runs", None, run_id=f"cycle-{n}-ctrl-c")

    def script(c, tick):
        lifecycle(exit_at=10**9)(c, tick)
        if tick == 4:
            raise KeyboardInterrupt

    client.script = script
    runner = FakeRunner(client, up_after=10**9, timeouts=ComposeTimeouts(exit_slot=0.002))
    killed_before_down: list[int] = []
    original_down = runner.down

    def down(base, log, timeout):
        killed_before_down.append(len(client.killed))
        return original_down(base, log, timeout)

    runner.down = down
    out = io.StringIO()
    started = time.monotonic()
    with pytest.raises(KeyboardInterrupt):
        runner.run(plan, Progress(stream=out))
    assert killed_before_down == [n]  # every peer had its SIGTERM before `down`
    assert time.monotonic() - started >= n * 0.002  # one slot apart
    assert f"stopping {n} running peer(s) 0.002 s apart" in out.getvalue()
    assert_only_foreign_left(client, plan.run_id)


def test_peers_that_never_exit_time_out(client, tmp_path):
    spec = RunSpec.parse("mesh", 3, options=PeerOptions(max_runtime=0.05))
    plan = prepare_run(spec, tmp_path / "runs", None, run_id="mesh-3-stuck")
    client.script = lifecycle(exit_at=10**9)
    with pytest.raises(RunnerError, match=r"peers \[0, 1, 2\] still not exited"):
        FakeRunner(client, timeouts=ComposeTimeouts(run_margin=0.0)).run(plan, progress())
    assert_only_foreign_left(client, plan.run_id)


def test_stalled_run_is_stopped(client, tmp_path):
    """Peer 2 exits with a failed link; the others would wait for max_runtime: they are stopped instead."""
    spec = RunSpec.parse("cycle", 5, options=PeerOptions(idle=0.001))
    plan = prepare_run(spec, tmp_path / "runs", None, run_id="cycle-5-stall")

    def script(c, tick):
        lifecycle(exit_at=10**9)(c, tick)
        for obj in c.objects["container"]:
            if obj.labels.get("p2p.peer") == "2" and tick >= 3:
                obj.status, obj.exit_code = "exited", 2

    client.script = script
    out = io.StringIO()
    result = FakeRunner(client, timeouts=ComposeTimeouts(stall_min=0.05)).run(plan, Progress(stream=out))
    assert result.failed_peers == [2]
    assert sorted(client.killed) == [f"cycle-5-stall-peer-{i}" for i in (0, 1, 3, 4)]
    assert "stopped 4 still-running peer(s) [0, 1, 3, 4]" in out.getvalue()
    assert_only_foreign_left(client, plan.run_id)


def write_summaries(log_dir, peers):
    for p in peers:
        with open(log_dir / f"{p}.events.jsonl", "a") as f:
            f.write(json.dumps({"ev": "summary", "recv": 8, "sent": 8}) + "\n")


def test_peers_done_but_engine_still_lists_them_running_is_reported_not_waited_for(client, plan):
    # Docker 20.10's libnetwork deadlock: the processes are gone, the engine never says so.

    def script(c, tick):
        lifecycle(exit_at=10**9)(c, tick)
        if tick == 4:
            write_summaries(plan.log_dir, range(5))

    client.script = script
    runner = FakeRunner(client, timeouts=ComposeTimeouts(engine_lag=0.2))
    started = time.monotonic()
    with pytest.raises(EngineStuck, match=r"(?s)every peer wrote its summary.*5 of their containers.*moby/moby#46661"):
        runner.run(plan, progress())
    assert time.monotonic() - started < 30  # not max_runtime (900 s)
    assert runner.calls[-1][-2:] == ["down", "-v"]  # the engine still answers: cleaned as usual
    assert_only_foreign_left(client, plan.run_id)


def test_a_peer_that_is_done_and_exits_slowly_is_not_an_engine_fault(client, plan):

    def script(c, tick):
        lifecycle(exit_at=40)(c, tick)
        if tick == 4:
            write_summaries(plan.log_dir, range(5))

    client.script = script
    result = FakeRunner(client, timeouts=ComposeTimeouts(engine_lag=30.0)).run(plan, progress())
    assert result.failed_peers == []


def test_peers_waiting_for_their_exit_slots_are_not_stopped_as_stalled(client, tmp_path):
    # Every peer is done (summary written); they exit one by one, slower than the stall time.
    spec = RunSpec.parse("cycle", 5, options=PeerOptions(idle=0.0001))
    plan = prepare_run(spec, tmp_path / "runs", None, run_id="cycle-5-slots")

    def script(c, tick):
        lifecycle(exit_at=10**9)(c, tick)
        if tick == 4:
            write_summaries(plan.log_dir, range(5))
        for obj in c.objects["container"]:
            peer = obj.labels.get("p2p.peer")
            if peer is not None and tick >= 10 + 30 * int(peer) and obj.status == "running":
                obj.status, obj.exit_code = "exited", 0
                time.sleep(0.01)  # the stall clock must see time pass between exits

    client.script = script
    result = FakeRunner(client, timeouts=ComposeTimeouts(stall_min=0.005, engine_lag=30.0)).run(plan, progress())
    assert client.killed == []
    assert result.failed_peers == []


def test_cleanup_skips_down_when_the_engine_hangs(client, plan):
    hang = threading.Event()
    client.script = lifecycle()
    runner = FakeRunner(client, timeouts=ComposeTimeouts(cleanup_ping=0.2))

    def ping():
        hang.wait(5)
        return True

    client.ping = ping
    try:
        result = runner.run(plan, progress())
    finally:
        hang.set()
    assert result.failed_peers == []
    assert re.search(r"(?s)does not answer within 0.2 s; nothing of cycle-5-fake was removed.*p2p clean --run cycle-5-fake",
                     result.cleanup_problem)
    assert all(call[-2:] != ["down", "-v"] for call in runner.calls)


def test_link_deadline_warning_and_faults_refused_for_plain_compose(client, tmp_path):
    assert link_deadline_note(RunSpec.parse("cycle", 200)) is None  # default scales with N
    assert link_deadline_note(RunSpec.parse("cycle", 200, options=PeerOptions(link_deadline=200))) is None
    chosen = RunSpec.parse("cycle", 200, options=PeerOptions(link_deadline=45))
    assert "warning: link deadline 45 s" in link_deadline_note(chosen)
    faulty = RunSpec.parse("cycle", 5, faults=(Fault.parse("kill:3@0"),))
    # A plain `docker compose up` has nobody to apply a fault timeline; the runner does (docker tests).
    with pytest.raises(RunnerError, match="need a runner"):
        render_run(faulty, None, root=tmp_path)


def test_engine_error_is_wrapped_and_cleanup_still_runs(client, plan):
    client.script = lifecycle()
    runner = FakeRunner(client)
    original = client.on_list

    def flaky(kind):
        if kind == "container" and client.ticks == 2:
            client.ticks += 1
            raise docker.errors.APIError("engine went away")
        original(kind)

    client.on_list = flaky
    with pytest.raises(RunnerError, match="engine went away") as exc:
        runner.run(plan, progress())
    assert isinstance(exc.value.__cause__, docker.errors.DockerException)
    assert_only_foreign_left(client, plan.run_id)


def test_incomplete_cleanup_after_a_good_run_is_reported_with_the_result(client, plan):
    client.script = lifecycle()
    runner = FakeRunner(client)
    runner.down_problem = "`docker compose down` exited 1"
    result = runner.run(plan, progress())
    assert result.exit_codes == {i: 0 for i in range(5)}
    assert re.search(r"clean-up of cycle-5-fake incomplete.*p2p clean --run cycle-5-fake", result.cleanup_problem)


def test_cli_run_with_leftovers_prints_the_analysis_then_exits_3(client, tmp_path, monkeypatch, capsys):
    class LeavesANetwork(FakeRunner):
        def run(self, plan, progress):
            for p in range(plan.spec.n):  # a complete mesh-3 v1 run: two deliveries per author per peer
                others = [q for q in range(3) if q != p]
                lines = [json.dumps({"id": a, "hops": [a]}, separators=(",", ":")) for a in others]
                lines += [json.dumps({"id": a, "hops": [a, b]}, separators=(",", ":"))
                          for a in others for b in others if b != a]
                (plan.log_dir / f"{p}.txt").write_text("".join(line + "\n" for line in lines))
            return RunResult({0: 0, 1: 0, 2: 0}, 1.0, "compose", cleanup_problem="network x left")

    monkeypatch.setattr(cli, "choose_runner", lambda backend, progress: LeavesANetwork(client))
    code = cli.main(["run", "--backend", "compose", "-t", "mesh", "-n", "3", "--out", str(tmp_path), "--no-plots"])
    captured = capsys.readouterr()
    assert code == cli.EXIT_LEFTOVERS == 3
    assert "network x left" in captured.err
    assert (tmp_path / "latest" / "summary.json").exists()


def test_missing_image_without_build_script(client, plan):
    client.image_names.clear()
    runner = FakeRunner(client)
    with pytest.raises(RunnerError, match="p2p-peer:latest is missing"):
        runner.run(plan, progress())
    assert runner.calls == []  # nothing started, nothing to bring down
    assert client.labelled(plan.run_id) == []


def test_build_script_output_is_streamed(client, tmp_path):
    ok = tmp_path / "docker" / "ok.sh"
    ok.parent.mkdir()
    ok.write_text('echo "build-image: $1 $2"\necho "build-image: p2p-peer:latest is up to date"\n')
    out = io.StringIO()
    ComposeRunner(client, build_script=ok).ensure_image(Progress(stream=out))
    assert "build-image: --tag p2p-peer:latest" in out.getvalue()
    assert "is up to date" in out.getvalue()
    bad = tmp_path / "docker" / "bad.sh"
    bad.write_text("echo boom; exit 3\n")
    with pytest.raises(RunnerError, match="exit 3"):
        ComposeRunner(client, build_script=bad).ensure_image(progress())


# ---- connecting ------------------------------------------------------------------------------


def test_connect_without_engine(monkeypatch):
    def no_engine(**kwargs):
        raise docker.errors.DockerException("Error while fetching server API version: connection refused")

    monkeypatch.setattr(docker, "from_env", no_engine)
    with pytest.raises(RunnerError, match="no Docker engine answers") as exc:
        ComposeRunner.connect()
    assert isinstance(exc.value.__cause__, docker.errors.DockerException)
    assert ComposeRunner.try_connect() is None


def test_engine_that_never_answers_fails_within_the_ping_timeout(monkeypatch, tmp_path):
    # A wedged daemon accepts connections and says nothing: that must be an error at once,
    # not DOCKER_TIMEOUT (300 s) per call.
    import socket
    import threading
    import time

    path = tmp_path / "silent.sock"
    server = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    server.bind(str(path))
    server.listen(8)
    held: list[socket.socket] = []
    stop = threading.Event()

    def accept_and_hold():
        server.settimeout(0.1)
        while not stop.is_set():
            try:
                held.append(server.accept()[0])
            except OSError:
                continue

    t = threading.Thread(target=accept_and_hold, daemon=True)
    t.start()
    monkeypatch.setenv("DOCKER_HOST", f"unix://{path}")
    try:
        started = time.monotonic()
        with pytest.raises(RunnerError, match="within 0.5 s"):
            docker_client(ping_timeout=0.5)
        assert time.monotonic() - started < 10
        assert held, "the client never reached the silent engine"
    finally:
        stop.set()
        t.join()
        for conn in held:
            conn.close()
        server.close()


def test_connect_without_compose_plugin(monkeypatch, client):
    monkeypatch.setattr(docker, "from_env", lambda **kw: client)
    false = shutil.which("false")
    with pytest.raises(RunnerError, match="ensure-compose.sh"):
        ComposeRunner.connect(compose_cmd=(false,))
    with pytest.raises(RunnerError, match="ensure-compose.sh"):
        ComposeRunner.try_connect(compose_cmd=(false,))
    with pytest.raises(RunnerError, match="docker CLI is not installed"):
        check_compose(("/nonexistent/docker", "compose"))
    true = shutil.which("true")
    runner = ComposeRunner.connect(compose_cmd=(true,))
    assert isinstance(runner, ComposeRunner) and runner.client is client


# ---- clean -------------------------------------------------------------------------------------


def add_run(client: FakeClient, run_id: str) -> None:
    client.add("container", f"{run_id}-c", {"p2p.run": run_id, "p2p.peer": "0"})
    client.add("network", f"{run_id}-n", {"p2p.run": run_id})
    client.add("volume", f"{run_id}-v", {"p2p.run": run_id})


@pytest.mark.parametrize("engine_ignores_filters", [False, True])
def test_clean_touches_only_labelled(client, engine_ignores_filters):
    add_run(client, "run-a")
    add_run(client, "run-b")
    client.ignore_filters = engine_ignores_filters  # our own label check must still protect the rest
    assert clean_by_label(client, "run-a") == {"containers": 1, "networks": 1, "volumes": 1}
    assert client.labelled("run-a") == [] and len(client.labelled("run-b")) == 3
    assert clean_by_label(client) == {"containers": 1, "networks": 1, "volumes": 1}
    assert_only_foreign_left(client, "run-b")
    assert clean_by_label(client) == {"containers": 0, "networks": 0, "volumes": 0}


def test_clean_reports_failures(client):
    add_run(client, "run-a")
    client.fail_remove = True
    with pytest.raises(RunnerError, match="could not remove 3 labelled"):
        clean_by_label(client)


def test_cli_clean_and_render(client, tmp_path, monkeypatch, capsys):
    add_run(client, "run-a")
    monkeypatch.setattr(engine, "docker_client", lambda: client)
    assert cli.main(["clean", "--run", "run-a"]) == 0
    assert "removed 0 services, 1 containers, 1 networks, 1 volumes" in capsys.readouterr().out
    assert_only_foreign_left(client, "run-a")

    monkeypatch.chdir(tmp_path)
    assert cli.main(["render", "--topology", "mesh", "-n", "5"]) == 0
    out = capsys.readouterr().out.splitlines()
    assert out[0] == "compose/mesh-5.yml"
    assert "docker compose up" in out[1]
    assert (tmp_path / "compose" / "mesh-5.yml").is_file()
    assert "COMPOSE_FILE=compose/mesh-5.yml" in (tmp_path / ".env").read_text()
    assert (tmp_path / "runs" / "latest" / "spec.json").is_file()
    # A runaway mesh is refused before anything is written.
    assert cli.main(["render", "--topology", "mesh", "-n", "12"]) == cli.EXIT_ERROR
    assert not (tmp_path / "compose" / "mesh-12.yml").exists()


# ---- the Compose CLI accepts what we render (no engine needed) -------------------------------


def _compose_cli() -> bool:
    if shutil.which("docker") is None:
        return False
    try:
        return subprocess.run(["docker", "compose", "version"], capture_output=True, timeout=30).returncode == 0
    except (OSError, subprocess.TimeoutExpired):
        return False


@pytest.mark.skipif(not _compose_cli(), reason="`docker compose` CLI not installed (docker/ensure-compose.sh)")
@pytest.mark.parametrize("case", ["mesh-5", "split-2500"])
def test_docker_compose_config_accepts_rendering(tmp_path, case):
    if case == "mesh-5":
        r = render_run(RunSpec.parse("mesh", 5), predict(build_graph("mesh", 5), "mesh"), root=tmp_path)
        path = r.compose_file
    else:
        from generator.render import PeerService

        graph = build_graph("starfish", 2500)
        peers = [PeerService(p, tuple(sorted(graph[p])), ("--id", str(p))) for p in graph]
        (tmp_path / "logs").mkdir()
        path = tmp_path / "big.yml"
        path.write_text(render_compose("p2p-big", "big", peers, "logs", (10001, 10001)))
    out = subprocess.run(["docker", "compose", "-f", str(path), "config", "-q"], capture_output=True, text=True,
                         cwd=tmp_path, timeout=120)
    assert out.returncode == 0, out.stderr
    if case == "mesh-5":  # plain `docker compose` in the root picks the file up through .env
        out = subprocess.run(["docker", "compose", "config", "--services"], capture_output=True, text=True,
                             cwd=tmp_path, timeout=60, env=_env_without_compose_vars())
        assert out.returncode == 0, out.stderr
        assert sorted(out.stdout.split()) == [f"peer-{i}" for i in range(5)]


def _env_without_compose_vars() -> dict[str, str]:
    return {k: v for k, v in os.environ.items() if not k.startswith("COMPOSE_")}


# ---- following containers through events --------------------------------------------------


class FakeEvents:
    """An engine event stream: yields what is queued, ends when closed."""

    def __init__(self, events):
        self.queue = queue.Queue()
        for ev in events:
            self.queue.put(ev)
        self.closed = False

    def __iter__(self):
        while (ev := self.queue.get()) is not None:
            yield ev

    def close(self):
        self.closed = True
        self.queue.put(None)


def event(action, run_id, peer):
    return {"Type": "container", "Action": action,
            "Actor": {"Attributes": {"p2p.run": run_id, "p2p.peer": str(peer)}}}


def wait_for_states(watch, now, want):
    deadline = time.monotonic() + 5
    while (got := watch.states(now)) != want:
        assert time.monotonic() < deadline, got
        time.sleep(0.01)


def test_container_watch_follows_events_and_a_stale_listing_never_undoes_them(client):
    run_id = "watch-run"
    for p in range(3):
        client.add("container", f"{run_id}-peer-{p}", {"p2p.run": run_id, "p2p.peer": str(p)})
    stream = FakeEvents([event("start", run_id, 0), event("start", run_id, 1), event("die", run_id, 1),
                         event("start", "another-run", 2), event("exec_start: sh", run_id, 2)])
    asked = {}

    def events(**kwargs):
        asked.update(kwargs)
        return stream

    client.events = events
    with ContainerWatch(client, run_id, relist=1000) as watch:
        assert asked["filters"] == {"type": "container", "label": f"p2p.run={run_id}"}
        # The first look lists (every fake container says "created"); events then win, and
        # the listing only fills in peer 2, of which no event of this run spoke.
        wait_for_states(watch, 0.0, {0: "running", 1: "exited", 2: "created"})
        assert watch.listings == 1
        stream.queue.put(event("die", run_id, 0))
        wait_for_states(watch, 1.0, {0: "exited", 1: "exited", 2: "created"})
        assert watch.listings == 1  # within `relist`: events only
        # A listing taken later never rolls an exited peer back to "created".
        assert watch.states(2000.0) == {0: "exited", 1: "exited", 2: "created"} and watch.listings == 2
    assert stream.closed


def test_container_watch_without_an_event_stream_lists_every_time(client):
    client.add("container", "w-peer-0", {"p2p.run": "w", "p2p.peer": "0"})
    with ContainerWatch(client, "w", relist=1000) as watch:  # the fake has no events()
        assert watch.states(0.0) == {0: "created"}
        assert watch.states(0.1) == {0: "created"} and watch.listings == 2


# ---- staged start --------------------------------------------------------------------------


def test_staged_start_creates_with_compose_then_starts_a_few_at_a_time(client, tmp_path):
    import threading

    run_id = "staged"
    lock = threading.Lock()
    at_once = {"now": 0, "max": 0}
    calls = []

    def start(self):
        with lock:
            at_once["now"] += 1
            at_once["max"] = max(at_once["max"], at_once["now"])
        time.sleep(0.01)
        with lock:
            at_once["now"] -= 1
        self.status = "running"

    def popen(args, **kwargs):
        calls.append(args)
        for p in range(20):  # what `up -d --no-start` does: create, start none
            c = client.add("container", f"{run_id}-peer-{p}", {"p2p.run": run_id, "p2p.peer": str(p)})
            c.start = types.MethodType(start, c)
        return types.SimpleNamespace(wait=lambda: 0, poll=lambda: 0)

    staged = StagedStart(client, popen, ["docker", "compose", "-p", "x"], tmp_path / "log", run_id, 3)
    assert staged.wait(timeout=10) == 0 and staged.poll() == 0
    assert calls == [["docker", "compose", "-p", "x", "up", "-d", "--no-start"]]
    ours = [c for c in client.objects["container"] if c.labels.get("p2p.run") == run_id]
    assert len(ours) == 20 and all(c.status == "running" for c in ours) and staged.started == 20
    assert 1 < at_once["max"] <= 3
    assert client.objects["container"][0].status == "created"  # someone else's: never started


def test_staged_start_reports_a_failed_create_and_a_failed_start(client, tmp_path):
    failed_create = StagedStart(
        client, lambda args, **kw: types.SimpleNamespace(wait=lambda: 3), ["dc"], tmp_path / "log", "r", 2)
    assert failed_create.wait(timeout=10) == 3

    def popen(args, **kwargs):
        c = client.add("container", "r2-peer-0", {"p2p.run": "r2", "p2p.peer": "0"})
        c.start = lambda: (_ for _ in ()).throw(docker.errors.APIError("no such network"))
        return types.SimpleNamespace(wait=lambda: 0)

    failed_start = StagedStart(client, popen, ["dc"], tmp_path / "log2", "r2", 2)
    assert failed_start.wait(timeout=10) == 1
    assert "no such network" in (tmp_path / "log2").read_text()


def test_arp_table_note_says_how_to_raise_a_limit_too_small_for_the_run(tmp_path):
    from testbed.rendering import arp_entries, arp_table_note

    assert arp_entries(RunSpec.parse("cycle", 1000)) == 3000  # 2 per edge + 1 per peer
    assert arp_entries(RunSpec.parse("mesh", 40)) == 1600
    limit = tmp_path / "gc_thresh3"
    limit.write_text("1024\n")
    assert arp_table_note(RunSpec.parse("cycle", 300), limit) is None  # 900 entries fit
    note = arp_table_note(RunSpec.parse("cycle", 1000), limit)
    assert "1024" in note and "3000" in note
    assert "gc_thresh3=4096" in note and "gc_thresh2=2048" in note and "gc_thresh1=1024" in note
    assert "gc_thresh3=2048" in arp_table_note(RunSpec.parse("mesh", 40), limit)  # dense: few peers, many entries
    limit.write_text("4096\n")
    assert arp_table_note(RunSpec.parse("cycle", 1000), limit) is None
    assert arp_table_note(RunSpec.parse("cycle", 1000), tmp_path / "absent") is None  # not Linux: nothing to say
