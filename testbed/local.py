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
from testbed.base import Progress, RunnerError, RunPlan, RunResult, Runner, read_progress

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
        try:
            order = list(plan.peers)
            if self.order_seed is not None:
                random.Random(self.order_seed).shuffle(order)
            for i, peer in enumerate(order):
                if i and self.stagger:
                    time.sleep(self.stagger)
                sock = sockets[peer.id]
                args = plan.peer_args(peer, lambda nb: f"127.0.0.1:{ports[nb]}", str(plan.log_dir))
                cmd = [self.python, "-m", "peer", "--listen-fd", str(sock.fileno()), *args]
                stderr = open(plan.log_dir / f"{peer.id}.stderr.txt", "wb")
                try:
                    procs[peer.id] = subprocess.Popen(
                        cmd, pass_fds=(sock.fileno(),), env=env, stdin=subprocess.DEVNULL,
                        stdout=stderr, stderr=stderr, start_new_session=True,
                    )
                except OSError as e:
                    raise RunnerError(f"cannot start peer {peer.id}: {e}") from e
                finally:
                    stderr.close()
                sock.close()  # the child holds its own copy
                progress.update(f"local: started {len(procs)}/{n} peers")
            deadline = started + plan.spec.options.max_runtime + 30
            while True:
                alive = [p for p, proc in procs.items() if proc.poll() is None]
                if not alive:
                    break
                if time.monotonic() > deadline:
                    raise RunnerError(f"peers {alive[:10]} still running after the run deadline; stopped them")
                finished, delivered = read_progress(plan.log_dir, n)
                progress.update(
                    f"local {plan.spec.name}: {n - len(alive)}/{n} peers exited, {delivered:,} deliveries, "
                    f"{time.monotonic() - started:.1f} s"
                )
                time.sleep(self.poll)
        finally:
            for s in sockets:
                s.close()
            _stop(procs)
            progress.done()
        return RunResult(
            exit_codes={p: proc.returncode for p, proc in procs.items()},
            duration=time.monotonic() - started,
            backend=self.name,
        )


def _listening_socket() -> socket.socket:
    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    s.bind(("127.0.0.1", 0))
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
