"""Real containers: the compose backend and plain `docker compose up` give the exact v1 counts.

Needs a Docker engine, the `docker compose` plugin and the peer image (built here by
docker/build-image.sh when its sources changed). Skipped without an engine, except
under CI=true, where that is a failure. Every test's objects carry p2p.run=<random
run id>; a fixture removes them whatever happens and asserts none is left.
"""

from __future__ import annotations

import io
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from generator.predict import predict
from generator.spec import RunSpec
from testbed.base import Progress, prepare_run
from testbed.engine import list_labelled
from testbed.rendering import render_run

pytestmark = [pytest.mark.docker, pytest.mark.slow]

REPO_ROOT = Path(__file__).resolve().parents[2]


def wait_for(cond, timeout: float, what: str, interval: float = 0.1):
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        value = cond()
        if value:
            return value
        time.sleep(interval)
    raise AssertionError(f"timed out after {timeout:g} s waiting for {what}")


def observed(log_dir: Path, n: int) -> dict[int, tuple[int, int]]:
    """Per peer: (deliveries, bytes) from <id>.txt, bytes = Σ (len(line) + 4)."""
    out = {}
    for p in range(n):
        lines = (log_dir / f"{p}.txt").read_bytes().splitlines()
        out[p] = (len(lines), sum(len(line) + 4 for line in lines))
    return out


def assert_exact(log_dir: Path, spec: RunSpec) -> None:
    pred = predict(spec.graph(), spec.topology)
    seen = observed(log_dir, spec.n)
    assert sum(d for d, _ in seen.values()) == pred.deliveries
    assert sum(b for _, b in seen.values()) == pred.bytes
    for p, (d, b) in seen.items():
        flow = pred.received(p)
        assert (d, b) == (flow.frames, flow.bytes), f"peer {p}"


@pytest.mark.parametrize("topology", ["cycle", "mesh", "starfish"])
def test_compose_runner_exact_counts(runner, run_ids, tmp_path, topology):
    spec = RunSpec.parse(topology, 5)
    pred = predict(spec.graph(), spec.topology)
    plan = prepare_run(spec, tmp_path / "runs", pred, run_id=run_ids(topology))
    result = runner.run(plan, Progress(stream=io.StringIO()))
    assert result.backend == "compose"
    assert result.exit_codes == {p: 0 for p in range(5)}, result
    assert_exact(plan.log_dir, spec)
    for p in range(5):
        assert (plan.log_dir / f"{p}.stderr.txt").exists()
    assert pred.deliveries == {"cycle": 40, "mesh": 320, "starfish": 40}[topology]  # docs/design.md, "Deliveries and predictions"
    # The runner cleaned up by itself (the fixture's sweep is only the safety net).
    assert list_labelled(runner.client, plan.run_id) == []


def test_plain_docker_compose_up(runner, run_ids, tmp_path):
    """`p2p render` then a bare `docker compose up` in that directory: returns by itself, exact counts."""
    spec = RunSpec.parse("mesh", 5)
    run_id = run_ids("plain")
    render_run(spec, predict(spec.graph(), spec.topology), root=tmp_path, run_id=run_id, project=f"p2p-{run_id}")
    env = {k: v for k, v in os.environ.items() if not k.startswith("COMPOSE_")}
    try:
        up = subprocess.run(["docker", "compose", "up"], cwd=tmp_path, env=env, capture_output=True, text=True,
                            timeout=300)
        assert up.returncode == 0, up.stdout + up.stderr
        states = {c.attrs["State"]["Status"]: c.attrs["State"]["ExitCode"]
                  for c in runner.client.containers.list(all=True, filters={"label": f"p2p.run={run_id}"})}
        assert states == {"exited": 0}, states
        latest = tmp_path / "runs" / "latest"
        assert os.readlink(latest) == run_id
        assert_exact(latest / "logs", spec)
        # A second plain `up` of the same file must not append to this run's logs: every peer
        # refuses, naming its events log, and the logs stay exactly those of the first run.
        before = {p.name: p.read_bytes() for p in (latest / "logs").glob("*.txt")}
        again = subprocess.run(["docker", "compose", "up"], cwd=tmp_path, env=env, capture_output=True, text=True,
                               timeout=300)
        assert "already holds a summary record" in again.stdout + again.stderr
        codes = [c.attrs["State"]["ExitCode"]
                 for c in runner.client.containers.list(all=True, filters={"label": f"p2p.run={run_id}"})]
        assert codes == [1] * spec.n
        assert {p.name: p.read_bytes() for p in (latest / "logs").glob("*.txt")} == before
        assert_exact(latest / "logs", spec)
    finally:
        subprocess.run(["docker", "compose", "down", "-v"], cwd=tmp_path, env=env, capture_output=True, timeout=300)
    assert list_labelled(runner.client, run_id) == []


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM], ids=["SIGINT", "SIGTERM"])
def test_interrupt_removes_everything(runner, run_ids, tmp_path, sig):
    """Ctrl-C (or a kill) while the peers run: the runner stops and removes every labelled object."""
    run_id = run_ids(sig.name.lower())
    script = f"""
import sys
from pathlib import Path
from generator.spec import PeerOptions, RunSpec
from testbed.base import Progress, prepare_run
from testbed.compose import ComposeRunner
spec = RunSpec.parse("cycle", 5, options=PeerOptions(idle=300, max_runtime=300))
plan = prepare_run(spec, Path({str(tmp_path / 'runs')!r}), None, run_id={run_id!r})
ComposeRunner.connect(build_script=None).run(plan, Progress())
"""
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(REPO_ROOT), os.environ.get("PYTHONPATH")]))}
    proc = subprocess.Popen([sys.executable, "-c", script], env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                            text=True)
    try:
        def running() -> bool:
            if proc.poll() is not None:
                raise AssertionError(f"runner exited early ({proc.returncode}): {proc.stdout.read()}")
            return len(runner.client.containers.list(filters={"label": f"p2p.run={run_id}", "status": "running"})) == 5

        wait_for(running, 120, "5 running containers")
        proc.send_signal(sig)
        out, _ = proc.communicate(timeout=180)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
    assert proc.returncode != 0
    assert "KeyboardInterrupt" in out or "interrupted" in out, out
    assert list_labelled(runner.client, run_id) == [], out


def test_p2p_run_backend_compose(runner, run_ids, tmp_path, monkeypatch):
    """The whole CLI path: `p2p run --backend compose` (needs the analysis package)."""
    try:
        from analysis import run_analysis  # noqa: F401
    except ImportError as e:
        pytest.skip(f"analysis package not available yet: {e}")
    from testbed import cli

    monkeypatch.setattr("testbed.base.new_run_id", lambda spec: run_ids("cli"))
    rc = cli.main(["run", "--backend", "compose", "-t", "starfish", "-n", "5", "--out", str(tmp_path / "runs"),
                   "--no-plots"])
    assert rc == 0
    assert_exact(tmp_path / "runs" / "latest" / "logs", RunSpec.parse("starfish", 5))
