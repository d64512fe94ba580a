"""The backend registry and the run lifecycle every runner shares (no engine, no peers)."""

from __future__ import annotations

import argparse
import io
import subprocess
import sys

import pytest

from generator.spec import RunSpec
from testbed.base import Progress, Runner, RunnerError, RunResult, prepare_run
from testbed.cli import build_parser
from testbed.runners import BACKENDS, backend_choices
from testbed.swarm import TaskInfo, judge_tasks, overdue_message


def backend_option(parser: argparse.ArgumentParser, command: str) -> tuple[str, ...]:
    sub = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    action = next(a for a in sub.choices[command]._actions if "--backend" in a.option_strings)
    return tuple(action.choices)


@pytest.mark.parametrize("command", ["run", "sweep"])
def test_the_backend_choices_are_the_registry(command):
    assert backend_option(build_parser(), command) == ("auto", *BACKENDS) == backend_choices()
    assert set(BACKENDS) >= {"local", "compose", "swarm"}


def test_every_registered_backend_names_a_runner():
    for backend in BACKENDS.values():
        cls = backend.runner_class()
        assert issubclass(cls, Runner) and cls.name == backend.name


def test_the_local_backend_never_imports_docker():
    code = ("import sys; from testbed.base import Progress; from testbed.runners import choose_runner; "
            "r = choose_runner('local', Progress()); print(r.name, 'docker' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.split() == ["local", "False"]


class Scripted(Runner):
    """A runner whose steps do what the test says, recording the lifecycle's calls."""

    name = "scripted"
    engine_errors = (ConnectionError,)

    def __init__(self, error: BaseException | None = None, problem: str | None = None) -> None:
        self.error, self.problem, self.calls = error, problem, []

    def execute(self, plan, progress):
        self.calls.append("execute")
        if self.error is not None:
            raise self.error
        return RunResult({0: 0}, 1.0, self.name)

    def clean_up(self, plan, progress):
        self.calls.append("clean_up")
        return self.problem

    def interrupted(self, plan):
        return f"removing {plan.run_id}"

    def on_failure(self, plan, progress, error):
        self.calls.append("on_failure")
        raise OSError("the hook's own trouble is never the error")

    def completed(self, plan, result, progress):
        self.calls.append("completed")
        return result


@pytest.fixture
def plan(tmp_path):
    return prepare_run(RunSpec.parse("line", 2), tmp_path, None, run_id="t-life")


def test_a_completed_run_is_cleaned_and_carries_the_clean_up_problem(plan):
    runner = Scripted(problem="network x left")
    result = runner.run(plan, Progress(stream=io.StringIO()))
    assert runner.calls == ["execute", "clean_up", "completed"]
    assert result.cleanup_problem == "network x left" and result.exit_codes == {0: 0}


def test_ctrl_c_is_said_cleaned_and_raised_with_the_clean_up_problem_beside_it(plan):
    runner = Scripted(error=KeyboardInterrupt(), problem="network x left")
    out = io.StringIO()
    with pytest.raises(KeyboardInterrupt):
        runner.run(plan, Progress(stream=out))
    assert runner.calls == ["execute", "on_failure", "clean_up"]
    assert out.getvalue() == "interrupted: removing t-life...\nnetwork x left\n"


def test_an_engine_error_becomes_a_runner_error_naming_the_run(plan):
    with pytest.raises(RunnerError, match="Docker engine error during run t-life: gone") as caught:
        Scripted(error=ConnectionError("gone")).run(plan, Progress(stream=io.StringIO()))
    assert isinstance(caught.value.__cause__, ConnectionError)
    with pytest.raises(ValueError):  # anything else goes through as it is
        Scripted(error=ValueError("bad")).run(plan, Progress(stream=io.StringIO()))


def task(state: str, exit_code: int | None = 0, error: str = "") -> TaskInfo:
    return TaskInfo(state=state, exit_code=exit_code, error=error, node="n1")


def test_judge_tasks_sorts_peers_into_started_ended_and_never_ran():
    peers = {0: task("running"), 1: task("complete"), 2: task("rejected", None, "No such image")}
    snap = judge_tasks([0, 1, 2, 3], peers, task("failed", None))
    assert snap.states == {0: "running", 1: "complete", 2: "rejected", 3: ""}
    assert snap.started == [0, 1, 2] and snap.ended == [1, 2]
    assert sorted(snap.rejected) == [-1, 2]  # -1: the collector


def test_overdue_message_names_the_late_tasks_then_the_run_deadline():
    peers = {0: task("running"), 1: task("pending", None, "no suitable node")}
    snap = judge_tasks([0, 1], peers, None)
    assert overdue_message(snap, peers, now=5, t0=0, start_deadline=10, run_deadline=20, image="img") is None
    late = overdue_message(snap, peers, now=11, t0=0, start_deadline=10, run_deadline=20, image="img")
    assert late.startswith("1 peer task(s) not started within 10 s (peer 1: pending no suitable node)")
    started = judge_tasks([0, 1], {0: task("running"), 1: task("complete")}, None)
    assert overdue_message(started, peers, now=21, t0=0, start_deadline=10, run_deadline=20, image="img") == (
        "peers [0] still not done 20 s after the deploy; stopped them")
