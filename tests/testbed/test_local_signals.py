"""`p2p run --backend local` takes its peers with it: SIGTERM cleans up as Ctrl-C does, and a
SIGKILLed runner's peers (a SIGSTOPped one too) die with it (PR_SET_PDEATHSIG)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from testbed import local as local_mod

P2P = str(Path(sys.executable).with_name("p2p"))

pytestmark = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="peers found through /proc")


def peers_of(runs: Path) -> dict[int, list[str]]:
    """pid -> argv of every live `python -m peer` whose --log-dir is under ``runs``."""
    found = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            argv = (entry / "cmdline").read_bytes().decode(errors="replace").split("\0")
            state = next(line for line in (entry / "status").read_text().splitlines() if line.startswith("State:"))
        except (OSError, StopIteration):
            continue
        if "Z" in state.split()[1]:
            continue  # a zombie is dead; only its parent's wait is missing
        if "peer" in argv and "--log-dir" in argv:
            log_dir = argv[argv.index("--log-dir") + 1]
            if log_dir.startswith(str(runs) + "/"):
                found[int(entry.name)] = argv
    return found


def wait_for(what, timeout: float, step: float = 0.05):
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        got = what()
        if got:
            return got
        time.sleep(step)
    return what()


@pytest.fixture
def runner_proc(tmp_path):
    """Start `p2p run --backend local` on a mesh-5 that runs for a long while (every frame
    delayed 5 s; peer 1 frozen from 0.3 s); yield (process, runs dir) once peer 1 is paused.
    Whatever of ours survives the test is killed by pid."""
    runs = tmp_path / "runs"
    cmd = [P2P, "run", "--backend", "local", "-t", "mesh", "-n", "5", "--out", str(runs), "--latency", "5",
           "--idle", "60", "--no-plots", "--fault", "pause:1@0.3"]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, start_new_session=True)
    try:
        faults = runs / "latest" / "faults.jsonl"
        paused = wait_for(lambda: faults.exists() and '"pause:1@0.3"' in faults.read_text(), 30)
        assert paused, f"the run did not get to its pause: {proc.poll()}"
        assert len(peers_of(runs)) == 5
        yield proc, runs
    finally:
        for pid in peers_of(runs):
            os.kill(pid, signal.SIGKILL)
        if proc.poll() is None:
            proc.kill()
        proc.wait()


def test_sigterm_stops_every_peer_as_ctrl_c_does(runner_proc):
    proc, runs = runner_proc
    stopped_state = {pid: Path(f"/proc/{pid}/status").read_text() for pid in peers_of(runs)}
    assert any("stopped" in s for s in stopped_state.values())  # peer 1 is frozen
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(timeout=15) == 130  # `p2p: interrupted`, after stopping the peers
    assert "interrupted" in proc.stdout.read().decode()
    assert peers_of(runs) == {}


def test_sigkill_of_the_runner_takes_its_peers_even_a_paused_one(runner_proc):
    proc, runs = runner_proc
    peers = peers_of(runs)
    assert any("stopped" in Path(f"/proc/{pid}/status").read_text() for pid in peers)
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=5)
    assert wait_for(lambda: not peers_of(runs), 5), f"orphaned peers: {peers_of(runs)}"


def test_sigterm_handler_is_installed_only_during_the_run(tmp_path):
    from generator.spec import PeerOptions, RunSpec
    from testbed.base import Progress, prepare_run

    spec = RunSpec.parse("mesh", 3, options=PeerOptions(idle=0.5))
    plan = prepare_run(spec, tmp_path, None)
    seen = []
    orig = local_mod.LocalRunner.execute

    def spy(self, plan, progress):
        seen.append(signal.getsignal(signal.SIGTERM))
        return orig(self, plan, progress)

    before = signal.getsignal(signal.SIGTERM)
    try:
        local_mod.LocalRunner.execute = spy
        local_mod.LocalRunner().run(plan, Progress(interval=60))
    finally:
        local_mod.LocalRunner.execute = orig
    assert seen[0] not in (before, signal.SIG_DFL, None) and callable(seen[0])
    with pytest.raises(KeyboardInterrupt):
        seen[0](signal.SIGTERM, None)
    assert signal.getsignal(signal.SIGTERM) is before


def test_a_peer_started_by_a_dead_parent_exits_at_once():
    """The race the preexec closes: the runner died before PR_SET_PDEATHSIG was armed (the
    child's parent is then no longer the runner), so the child ends before it execs."""
    preexec = local_mod._die_with_parent(parent=os.getpid() + 1_000_000)  # "the runner" is not our parent
    assert preexec is not None
    assert subprocess.run(["sleep", "30"], preexec_fn=preexec, timeout=10).returncode == 1
    ok = local_mod._die_with_parent()
    assert subprocess.run(["true"], preexec_fn=ok, timeout=10).returncode == 0
