"""faults.jsonl records what happened; the fault clock starts when every peer is up; delivery
triggers fire from the message logs' own line count (local runs, and compose's `_wait` on fakes)."""

from __future__ import annotations

import dataclasses
import io
import json
import sys
import threading
import time
from pathlib import Path

import pytest

from generator.expect import expect_for
from generator.faults import Fault
from generator.spec import PeerOptions, RunSpec
from testbed import compose as compose_mod
from testbed import local as local_mod
from testbed.base import Progress, RunnerError, prepare_run
from testbed.faults import FAULT_LOG, FaultScheduler
from testbed.local import LocalRunner, LocalTimeouts

KEYS = {"t", "fault", "action", "peers", "edges", "elapsed", "deliveries"}


def records(run_dir: Path) -> list[dict]:
    return [json.loads(line) for line in (run_dir / FAULT_LOG).read_text().splitlines()]


def fired(run_dir: Path) -> list[dict]:
    return [r for r in records(run_dir) if "fault" in r]


def lines_in_logs(log_dir: Path, n: int) -> int:
    return sum((log_dir / f"{p}.txt").read_bytes().count(b"\n") for p in range(n) if (log_dir / f"{p}.txt").exists())


def events(log_dir: Path, peer: int) -> list[dict]:
    return [json.loads(x) for x in (log_dir / f"{peer}.events.jsonl").read_text().splitlines() if x.strip()]


# ---- the scheduler on its own ------------------------------------------------------------


class FakeDriver:
    def __init__(self):
        self.calls: list[tuple[str, int]] = []

    def __getattr__(self, action):
        if action in ("kill", "pause", "resume", "restart"):
            return lambda peer: self.calls.append((action, peer))
        raise AttributeError(action)


class FakeClock:
    def __init__(self, now: float = 100.0):
        self.now = now

    def __call__(self) -> float:
        return self.now


def scheduler(tmp_path, *faults, clock=None):
    (tmp_path / "logs").mkdir(exist_ok=True)
    driver = FakeDriver()
    s = FaultScheduler(tuple(Fault.parse(f) for f in faults), tmp_path, driver, clock=clock or FakeClock())
    return s, driver


def test_records_carry_what_fired_when_and_at_which_count(tmp_path):
    clock = FakeClock(100.0)
    s, driver = scheduler(tmp_path, "partition:0-1@0", "pause:2@0.5", "kill:3@deliveries=1000",
                          "heal:0-1@2", "restart:4@1", clock=clock)
    s.poll(delivered=5000)  # before the clock started nothing fires, however many deliveries
    assert driver.calls == []
    clock.now = 200.0
    s.start_clock()
    clock.now = 200.5004
    s.poll(delivered=999)
    clock.now = 200.7
    s.poll(delivered=1017)
    clock.now = 201.25
    s.poll(delivered=1500)
    s.poll(delivered=1600)  # a restart fires once per fault entry
    clock.now = 205.0
    s.poll(delivered=2000)
    assert driver.calls == [("pause", 2), ("kill", 3), ("restart", 4)]
    assert s.done
    recs = records(tmp_path)
    assert set(recs[0]) == KEYS and recs[0]["fault"] == "partition:0-1@0"  # in place before any peer starts
    assert recs[0]["edges"] == [[0, 1]] and recs[0]["peers"] == [] and recs[0]["elapsed"] == 0
    assert recs[0]["deliveries"] == 0
    assert set(recs[1]) == {"t", "clock"} and recs[1]["clock"] == "start"
    pause, kill, restart, heal = recs[2:]
    assert pause == {**pause, "fault": "pause:2@0.5", "action": "pause", "peers": [2], "edges": [],
                     "elapsed": 0.5, "deliveries": 999}
    assert set(pause) == KEYS  # "trigger" only for delivery-triggered faults
    assert kill == {**kill, "fault": "kill:3@deliveries=1000", "action": "kill", "peers": [3], "elapsed": 0.7,
                    "deliveries": 1017, "trigger": 1000}
    assert set(kill) == KEYS | {"trigger"}
    assert restart["fault"] == "restart:4@1" and restart["elapsed"] == 1.25 and restart["deliveries"] == 1500
    assert heal["fault"] == "heal:0-1@2" and heal["elapsed"] == 5.0 and heal["edges"] == [[0, 1]]
    assert all(isinstance(r["t"], float) and abs(r["t"] - time.time()) < 60 for r in recs)
    assert json.loads((tmp_path / "logs" / "control.json").read_text()) == {"blocked": []}


def test_kills_at_start_are_recorded_at_zero_once_all_their_peers_were_killed(tmp_path):
    s, driver = scheduler(tmp_path, "kill:1,2@0", "kill:3@0", "kill:1@deliveries=10")
    s.due_at_start(1)
    s.due_at_start(0)
    assert driver.calls == [("kill", 1)] and not (tmp_path / FAULT_LOG).exists()
    s.due_at_start(2)
    s.due_at_start(3, running=False)  # a backend that never started peer 3: recorded, nothing killed
    assert driver.calls == [("kill", 1), ("kill", 2)]
    recs = records(tmp_path)
    assert [r["fault"] for r in recs] == ["kill:1,2@0", "kill:3@0"]
    assert all(r["elapsed"] == 0 and r["deliveries"] == 0 and "trigger" not in r for r in recs)
    assert not s.done and s.needs_deliveries  # kill:1@deliveries=10 is still pending ...
    s.start_clock()
    s.start_clock()  # ... the clock starts once
    assert sum("clock" in r for r in records(tmp_path)) == 1


def test_a_fault_that_never_fired_has_no_record(tmp_path):
    clock = FakeClock()
    s, driver = scheduler(tmp_path, "pause:1@10", "kill:2@deliveries=100", clock=clock)
    s.start_clock()
    for _i in range(5):
        clock.now += 1
        s.poll(delivered=99)
    assert driver.calls == [] and not s.done
    assert s.next_due() == pytest.approx(5.0)
    assert [r for r in records(tmp_path) if "fault" in r] == []


# ---- local runs ---------------------------------------------------------------------------


def run_local(tmp_path, topology, n, faults, runner=None, stream=None, **opts):
    spec = RunSpec.parse(topology, n, faults=tuple(Fault.parse(f) for f in faults),
                         options=PeerOptions(**{"link_deadline": 2.0, "idle": 1.0, **opts}))
    prediction = expect_for(spec, 2_000_000, False, Progress(stream=io.StringIO()).message)
    plan = prepare_run(spec, tmp_path, prediction)
    result = (runner or LocalRunner()).run(plan, Progress(stream=stream or io.StringIO()))
    return plan, result


def test_local_fault_clock_starts_when_every_peer_listens(tmp_path):
    plan, result = run_local(tmp_path, "mesh", 5, ["pause:1@0", "resume:1@0.3"])
    recs = records(plan.run_dir)
    assert "clock" in recs[0] and recs[0]["clock"] == "start"
    listened = [next(e["t"] for e in events(plan.log_dir, p) if e["ev"] == "listen") for p in range(5)]
    assert max(listened) <= recs[0]["t"]  # time 0: every peer is up, not merely spawned
    pause, resume = recs[1:]
    assert pause["fault"] == "pause:1@0" and 0 <= pause["elapsed"] < 0.1
    assert resume["fault"] == "resume:1@0.3" and 0.3 <= resume["elapsed"] < 0.4
    for r in (pause, resume):  # elapsed is on the clock that started at the clock record
        assert r["t"] - recs[0]["t"] == pytest.approx(r["elapsed"], abs=0.01)
    assert result.failed_peers == []


def test_local_kill_at_start_restart_once_and_unfired_faults(tmp_path):
    plan, result = run_local(tmp_path, "mesh", 5, ["kill:4@0", "restart:2@0.2", "kill:1@deliveries=100000000"])
    recs = records(plan.run_dir)
    assert sum(r.get("clock") == "start" for r in recs) == 1
    assert [r["fault"] for r in fired(plan.run_dir)] == ["kill:4@0", "restart:2@0.2"]
    kill, restart = fired(plan.run_dir)
    assert kill["elapsed"] == 0 and kill["deliveries"] == 0 and kill["peers"] == [4] and "trigger" not in kill
    assert restart["action"] == "restart" and restart["elapsed"] >= 0.2 and restart["peers"] == [2]
    assert sum(e["ev"] == "start" for e in events(plan.log_dir, 2)) == 2
    assert result.exit_codes[4] == -9


@pytest.mark.parametrize("topology,n,trigger", [("mesh", 7, 3000), ("mesh", 8, 20000)])
def test_local_delivery_trigger_fires_at_the_count_the_logs_held(tmp_path, monkeypatch, topology, n, trigger):
    """Recorded deliveries >= trigger, and they are what the message logs held when the peer was
    signalled, give or take the lines written between the count and the signal."""
    at_signal: list[int] = []
    kill = local_mod._SignalDriver.kill

    def counting_kill(self, peer):
        at_signal.append(lines_in_logs(self.plan.log_dir, self.plan.spec.n))
        kill(self, peer)

    monkeypatch.setattr(local_mod._SignalDriver, "kill", counting_kill)
    plan, result = run_local(tmp_path, topology, n, [f"kill:3@deliveries={trigger}"])
    (rec,) = fired(plan.run_dir)
    assert rec["trigger"] == trigger and rec["action"] == "kill"
    # How far apart the count and the signal are is a matter of scheduling (a benchmark's
    # figure: bench/fault_trigger.py), not of correctness: only the order is asserted here.
    assert trigger <= rec["deliveries"] <= at_signal[0]
    assert result.exit_codes[3] == -9


def wrapper(tmp_path, peer_line: str) -> str:
    """A stand-in for the Python interpreter that runs real peers but ``peer_line`` for peer 2."""
    path = tmp_path / "python-wrapper"
    path.write_text(f'#!/bin/sh\ncase " $* " in *" --id 2 "*) {peer_line};; esac\nexec {sys.executable} "$@"\n')
    path.chmod(0o755)
    return str(path)


def test_a_peer_that_exits_before_it_listens_is_named_and_not_waited_for(tmp_path):
    out = io.StringIO()
    runner = LocalRunner(python=wrapper(tmp_path, "exit 3"))
    plan, result = run_local(tmp_path, "mesh", 4, ["pause:0@0.1", "resume:0@0.2"], runner=runner, stream=out)
    assert "peers [2] exited before they listened" in out.getvalue()
    assert result.exit_codes[2] == 3
    recs = records(plan.run_dir)
    assert recs[0]["clock"] == "start" and [r["fault"] for r in recs[1:]] == ["pause:0@0.1", "resume:0@0.2"]


def test_a_peer_that_never_listens_is_named_after_the_deadline(tmp_path):
    runner = LocalRunner(python=wrapper(tmp_path, "exec sleep 60"), timeouts=LocalTimeouts(up=1.0, up_per_peer=0.0))
    t = time.monotonic()
    with pytest.raises(RunnerError, match=r"peers \[2\] never came up \(no `listen` event within 1 s\)"):
        run_local(tmp_path, "mesh", 4, ["pause:0@5"], runner=runner)
    assert time.monotonic() - t < 15
    assert not (tmp_path / "latest" / FAULT_LOG).exists()  # the clock never started, nothing fired


# ---- compose: _wait on fakes ----------------------------------------------------------------


class FakeUp:
    returncode = 0

    def poll(self):
        return 0


class FakeWatch:
    """Every container running until the test says they exited."""

    def __init__(self, ids):
        self.ids, self.exited = ids, threading.Event()

    def states(self, now, force=False):
        return {p: "exited" if self.exited.is_set() else "running" for p in self.ids}


def test_compose_wait_starts_the_clock_at_the_barrier_and_counts_the_logs_between_polls(tmp_path, monkeypatch):
    spec = RunSpec.parse("mesh", 5, faults=(Fault.parse("kill:4@0"), Fault.parse("kill:1@deliveries=500")),
                         options=PeerOptions(idle=1.0, link_deadline=2.0))
    plan = prepare_run(spec, tmp_path, None, run_id="t-clock")
    plan = dataclasses.replace(plan, peers=tuple(p for p in plan.peers if p.id != 4))  # as _run does
    watch = FakeWatch([0, 1, 2, 3])
    fired_at: list[tuple[int, float]] = []

    class Driver:
        def __init__(self, runner, run_id):
            pass

        def kill(self, peer):
            fired_at.append((peer, time.monotonic()))
            watch.exited.set()

    monkeypatch.setattr(compose_mod, "_ContainerDriver", Driver)
    runner = compose_mod.ComposeRunner(None, poll=2.0)  # containers looked at every 2 s only
    writes: list[float] = []

    def peers_deliver():
        time.sleep(0.3)
        for p in range(4):  # the barrier fell; 600 deliveries land at once, in the message logs only
            with open(plan.log_dir / f"{p}.txt", "ab") as f:
                f.write(b'{"id":0,"hops":[0]}\n' * 150)
        writes.append(time.monotonic())

    threading.Thread(target=peers_deliver, daemon=True).start()
    runner._wait(plan, FakeUp(), tmp_path / "compose.log", time.monotonic(), Progress(stream=io.StringIO()), watch)
    assert (plan.log_dir / ".start").exists()
    assert fired_at[0][0] == 1 and fired_at[0][1] - writes[0] < 0.2  # not at the next 2-s look
    recs = records(plan.run_dir)
    assert recs[0]["fault"] == "kill:4@0" and recs[0]["elapsed"] == 0 and recs[0]["deliveries"] == 0
    assert recs[1]["clock"] == "start"
    assert recs[2]["fault"] == "kill:1@deliveries=500" and recs[2]["deliveries"] == 600 and recs[2]["trigger"] == 500
    assert 0.25 <= recs[2]["elapsed"] < 0.6
    assert len(recs) == 3


def test_a_flap_is_expanded_into_each_down_and_up_on_its_schedule(tmp_path):
    clock = FakeClock(100.0)
    s, driver = scheduler(tmp_path, "flap:0-1,2-3@1,period=1,count=2,down=0.25", clock=clock)
    s.start_clock()
    control = tmp_path / "logs" / "control.json"
    seen = []
    # polled late (every 0.4 s): each step fires at the first poll at or after its due time
    for now in (100.4, 100.8, 101.2, 101.6, 102.0, 102.4, 102.8):
        clock.now = now
        assert (s.next_due() is None) == s.done
        s.poll(delivered=int(now))
        seen.append(json.loads(control.read_text())["blocked"] if control.exists() else None)
    assert s.done and s.next_due() is None and driver.calls == []
    steps = [(r["phase"], r["cycle"], r["elapsed"]) for r in fired(tmp_path)]
    # due at 1, 1.25, 2, 2.25 (from the scheduled start, not from the late poll)
    assert steps == [("down", 1, 1.2), ("up", 1, 1.6), ("down", 2, 2.0), ("up", 2, 2.4)]
    assert all(r["fault"] == "flap:0-1,2-3@1,period=1,count=2,down=0.25" and r["edges"] == [[0, 1], [2, 3]]
               for r in fired(tmp_path))
    assert seen == [None, None, [[0, 1], [2, 3]], [], [[0, 1], [2, 3]], [], []]


def test_a_delivery_triggered_flap_starts_when_the_count_is_reached(tmp_path):
    clock = FakeClock(0.0)
    s, _ = scheduler(tmp_path, "flap:0-1@deliveries=100,period=2,count=2", clock=clock)
    s.start_clock()
    clock.now = 3.0
    s.poll(delivered=99)
    assert fired(tmp_path) == []
    s.poll(delivered=150)
    assert s.next_due() == 1.0  # the up, period/2 after the down
    for now in (4.0, 5.0, 6.0):
        clock.now = now
        s.poll(delivered=200)
    recs = fired(tmp_path)
    assert [(r["phase"], r["elapsed"], r["trigger"]) for r in recs] == [
        ("down", 3.0, 100), ("up", 4.0, 100), ("down", 5.0, 100), ("up", 6.0, 100)]
    assert recs[0]["deliveries"] == 150 and s.done


def test_shape_faults_accumulate_their_keys_per_edge_in_control_json(tmp_path):
    clock = FakeClock(0.0)
    s, _ = scheduler(tmp_path, "shape:0-1:latency=0.2,loss=0.1@0", "shape:1-0,2-3:loss=0.5@1", clock=clock)
    control = tmp_path / "logs" / "control.json"
    # a shape at 0 is in place before the peers start, like a partition at 0
    assert json.loads(control.read_text()) == {"blocked": [], "shapes": {"0-1": {"latency": 0.2, "loss": 0.1}}}
    s.start_clock()
    clock.now = 1.0
    s.poll(delivered=0)
    assert json.loads(control.read_text()) == {"blocked": [], "shapes": {
        "0-1": {"latency": 0.2, "loss": 0.5}, "2-3": {"loss": 0.5}}}
    assert [r["action"] for r in fired(tmp_path)] == ["shape", "shape"] and s.done
