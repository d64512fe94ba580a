"""Local backend: every peer is its own OS process on 127.0.0.1.

The runner binds each peer's listening socket itself (port 0, so the OS picks a
free port) and hands it to the child: no port can be taken between choosing and
listening, and every neighbour address is known before any peer starts.
"""

from __future__ import annotations

import os
import random
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import peer as peer_package
from testbed.base import PeerPlan, Progress, RunnerError, RunPlan, RunResult, Runner, read_progress
from testbed.faults import FaultScheduler

# The directory that holds the ``peer`` package, so ``python -m peer`` works from any cwd.
PEER_ROOT = str(Path(peer_package.__file__).resolve().parent.parent)
STOP_GRACE = 5.0


class LocalRunner(Runner):
    """Start ``python -m peer`` once per peer and wait for all of them to exit."""

    name = "local"

    def __init__(
        self, python: str = sys.executable, poll: float = 0.05, stagger: float = 0.0, order_seed: int | None = None
    ) -> None:
        """``stagger`` seconds between peer starts, in an order shuffled by ``order_seed``
        (None: id order); used to show that late starters lose nothing."""
        self.python = python
        self.poll = poll
        self.stagger = stagger
        self.order_seed = order_seed

    def run(self, plan: RunPlan, progress: Progress) -> RunResult:
        n = plan.spec.n
        sockets = [_listening_socket() for _ in range(n)]
        ports = {p: s.getsockname()[1] for p, s in enumerate(sockets)}
        planned = {peer.id for peer in plan.peers}
        for p, s in enumerate(sockets):
            if p not in planned:
                s.close()  # a peer left out of the plan refuses connections, like one that never started
        env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [PEER_ROOT, os.environ.get("PYTHONPATH")]))}
        procs: dict[int, subprocess.Popen] = {}
        started = time.monotonic()
        driver = _SignalDriver(self, plan, procs, ports, env)
        faults = FaultScheduler(plan.spec.faults, plan.run_dir, driver, progress.message)
        try:
            order = list(plan.peers)
            if self.order_seed is not None:
                random.Random(self.order_seed).shuffle(order)
            for i, peer in enumerate(order):
                if i and self.stagger:
                    time.sleep(self.stagger)
                procs[peer.id] = self._spawn(plan, peer, sockets[peer.id], ports, env)
                sockets[peer.id].close()  # the child holds its own copy
                faults.due_at_start(peer.id)
                progress.update(f"local: started {len(procs)}/{n} peers")
            deadline = started + plan.spec.options.max_runtime_for(plan.spec.n) + 30
            while True:
                alive = [p for p, proc in procs.items() if proc.poll() is None]
                if not alive:
                    break
                if time.monotonic() > deadline:
                    raise RunnerError(f"peers {alive[:10]} still running after the run deadline; stopped them")
                finished, delivered = read_progress(plan.log_dir, n)
                faults.poll(time.monotonic() - started, delivered)
                progress.update(
                    f"local {plan.spec.name}: {n - len(alive)}/{n} peers exited, {delivered:,} deliveries, "
                    f"{time.monotonic() - started:.1f} s"
                )
                time.sleep(self.poll)
        finally:
            for s in sockets:
                s.close()
            driver.resume_all()  # a frozen peer cannot handle SIGTERM
            _stop(procs)
            progress.done()
        return RunResult(
            exit_codes={p: proc.returncode for p, proc in procs.items()},
            duration=time.monotonic() - started,
            backend=self.name,
        )


    def _spawn(self, plan: RunPlan, peer: PeerPlan, sock: socket.socket, ports: dict[int, int],
               env: dict[str, str]) -> subprocess.Popen:
        args = plan.peer_args(peer, lambda nb: f"127.0.0.1:{ports[nb]}", str(plan.log_dir))
        cmd = [self.python, "-m", "peer", "--listen-fd", str(sock.fileno()), *args]
        with open(plan.log_dir / f"{peer.id}.stderr.txt", "ab") as stderr:
            try:
                return subprocess.Popen(
                    cmd, pass_fds=(sock.fileno(),), env=env, stdin=subprocess.DEVNULL,
                    stdout=stderr, stderr=stderr, start_new_session=True,
                )
            except OSError as e:
                raise RunnerError(f"cannot start peer {peer.id}: {e}") from e


class _SignalDriver:
    """Faults for local processes: SIGKILL, SIGSTOP, SIGCONT, and a fresh start on the same port."""

    def __init__(self, runner: LocalRunner, plan: RunPlan, procs: dict[int, subprocess.Popen],
                 ports: dict[int, int], env: dict[str, str]) -> None:
        self.runner, self.plan, self.procs, self.ports, self.env = runner, plan, procs, ports, env
        self.paused: set[int] = set()

    def _signal(self, peer: int, sig: signal.Signals) -> None:
        proc = self.procs.get(peer)
        if proc is not None and proc.poll() is None:
            proc.send_signal(sig)

    def kill(self, peer: int) -> None:
        self._signal(peer, signal.SIGKILL)
        if peer in self.procs:
            self.procs[peer].wait()

    def pause(self, peer: int) -> None:
        self._signal(peer, signal.SIGSTOP)
        self.paused.add(peer)

    def resume(self, peer: int) -> None:
        self._signal(peer, signal.SIGCONT)
        self.paused.discard(peer)

    def resume_all(self) -> None:
        for peer in list(self.paused):
            self.resume(peer)

    def restart(self, peer: int) -> None:
        self.kill(peer)
        sock = _listening_socket(self.ports[peer])
        try:
            plan_peer = next(p for p in self.plan.peers if p.id == peer)
            self.procs[peer] = self.runner._spawn(self.plan, plan_peer, sock, self.ports, self.env)
        finally:
            sock.close()


def _listening_socket(port: int = 0) -> socket.socket:
    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    s.bind(("127.0.0.1", port))
    s.listen(128)
    return s


def _stop(procs: dict[int, subprocess.Popen]) -> None:
    """Terminate our own still-running children: SIGTERM, then SIGKILL after a grace period."""
    alive = [proc for proc in procs.values() if proc.poll() is None]
    for proc in alive:
        proc.send_signal(signal.SIGTERM)
    end = time.monotonic() + STOP_GRACE
    for proc in alive:
        try:
            proc.wait(timeout=max(0.0, end - time.monotonic()))
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
